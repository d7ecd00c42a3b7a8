"""IPN operations: endpoint settings, writing events into the outbox (in the caller's
transaction), test events and replays. Delivery itself is in `ipn/delivery.py`."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts import errors
from accounts.lib import tokens
from accounts.models import Account
from ipn import delivery, selectors
from ipn.lib import safehttp, signing
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent, SmsGateWebhook

# Event types (docs/ipn.md). The app an event is about builds its body (`Callback`).
MESSAGE_SENT, MESSAGE_DELIVERED = "message.sent", "message.delivered"
MESSAGE_FAILED, MESSAGE_EXPIRED = "message.failed", "message.expired"
SMS_RECEIVED = "sms.received"
VERIFY_APPROVED, VERIFY_EXPIRED = "verify.approved", "verify.expired"
TEST_EVENT = "test"
ALL_EVENT_TYPES = [
    MESSAGE_SENT,
    MESSAGE_DELIVERED,
    MESSAGE_FAILED,
    MESSAGE_EXPIRED,
    SMS_RECEIVED,
    VERIFY_APPROVED,
    VERIFY_EXPIRED,
]
# Bodies are capped; long texts are cut to fit.
MAX_BODY_BYTES = 20_000
SECRET_GRACE_PERIOD = delivery.SECRET_GRACE_PERIOD

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# GenioSms format: which of our events exist there, and as which `ipn_type`. Its form
# describes one SMS (`id_smsout`, `ipn_type` SENT or DELIVERY): received SMS and
# verification outcomes have no place in it, and GenioSms receivers would read a
# verification's event as another report of its SMS (docs/ipn.md).
GENIOSMS_IPN_TYPES = {MESSAGE_SENT: "SENT", MESSAGE_DELIVERED: "DELIVERY", MESSAGE_FAILED: "SENT"}
# The GenioSms `status_code` of a success (Android's RESULT_OK).
ANDROID_RESULT_OK = "-1"


class Callback(Protocol):
    """An event as the app that owns its subject builds it (messaging, for messages and
    received SMS); ipn picks the format the account chose and stores the bytes."""

    @property
    def type(self) -> str: ...
    @property
    def account_id(self) -> int: ...
    @property
    def message_id(self) -> int | None: ...
    @property
    def text_field(self) -> str:
        """The `data` field cut to keep a JSON body under MAX_BODY_BYTES."""
        ...

    def standard_data(self) -> dict[str, Any]:
        """The `data` object of the Standard Webhooks body."""
        ...

    def geniosms_fields(self) -> dict[str, str]:
        """The GenioSms form (only asked for the types in GENIOSMS_IPN_TYPES)."""
        ...

    @property
    def smsgate_event(self) -> str | None:
        """SMSGate's name of this event (`sms:sent`…), or None when SMSGate has none."""
        ...

    def smsgate_scope(self) -> tuple[int | None, int | None]:
        """(list id, phone id) of the event: which SMSGate webhooks it is for."""
        ...

    def smsgate_payload(self) -> tuple[str, dict[str, Any]]:
        """(the phone's public id, the `payload` object) of SMSGate's envelope."""
        ...


# --- Endpoint settings ----------------------------------------------------------


def get_or_create_endpoint(*, account: Account) -> IpnEndpoint:
    """The account's IPN settings, created (disabled, with a fresh secret) on first use."""
    return endpoint_of(account_id=account.pk)


def endpoint_of(*, account_id: int) -> IpnEndpoint:
    """`get_or_create_endpoint` for callers that hold only the account's id."""
    found = IpnEndpoint.objects.filter(account_id=account_id).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return IpnEndpoint.objects.create(account_id=account_id, secret=signing.generate_secret())
    except IntegrityError:  # another request created it first
        return IpnEndpoint.objects.get(account_id=account_id)


def validate_url(url: str) -> str:
    """The URL, stripped, if callbacks may go there; raises InvalidParameter."""
    url = url.strip()
    if not url:
        return ""
    if len(url) > 1000:
        raise errors.InvalidParameter("The IPN URL is too long (1000 characters at most).")
    try:
        safehttp.check_url(url, allow_private=settings.IPN_ALLOW_PRIVATE_NETWORKS)
    except safehttp.ForbiddenAddress as exc:
        raise errors.InvalidParameter(
            f"The IPN URL is not allowed: {exc}; {delivery.PRIVATE_NETWORKS_HINT}.", param="url"
        )
    except safehttp.AddressRefused as exc:
        raise errors.InvalidParameter(f"The IPN URL is not allowed: {exc}.", param="url")
    return url


def validate_events(events: list[str]) -> list[str]:
    """The event types, checked and de-duplicated; an empty list means all."""
    unknown = [name for name in events if name not in ALL_EVENT_TYPES]
    if unknown:
        raise errors.InvalidParameter(f"Unknown event types: {', '.join(map(str, unknown))}.")
    return [name for name in ALL_EVENT_TYPES if name in events]


def update_endpoint(
    *,
    account: Account,
    url: str | None = None,
    enabled: bool | None = None,
    events: list[str] | None = None,
    format: str | None = None,
) -> IpnEndpoint:
    """Changes the given settings (None leaves one as it is) and returns the endpoint.

    Enabling it, or changing its URL, clears an automatic disable. Raises InvalidParameter.
    """
    endpoint = get_or_create_endpoint(account=account)
    fields: dict[str, Any] = {}
    if url is not None:
        fields["url"] = validate_url(url)
    if events is not None:
        fields["events"] = validate_events(events)
    if format is not None:
        if format not in IpnEndpoint.Format.values:
            raise errors.InvalidParameter("`format` must be `standard` or `geniosms`.")
        fields["format"] = format
    if enabled is not None:
        fields["enabled"] = enabled
    if fields.get("enabled", endpoint.enabled) and not fields.get("url", endpoint.url):
        raise errors.InvalidParameter("Set an IPN URL before enabling callbacks.")
    if enabled or ("url" in fields and fields["url"] != endpoint.url):
        fields.update(disabled_at=None, disabled_reason="", failing_since=None)
    for name, value in fields.items():
        setattr(endpoint, name, value)
    endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


def rotate_secret(*, account: Account) -> IpnEndpoint:
    """Replaces the signing secret; the old one keeps signing beside it for 24 h."""
    endpoint = get_or_create_endpoint(account=account)
    now = timezone.now()
    # Only one previous secret is kept: rotating again within the day drops the older one.
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + SECRET_GRACE_PERIOD
    endpoint.secret = signing.generate_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return endpoint


def _wants(endpoint: IpnEndpoint | None, event_type: str) -> bool:
    if endpoint is None or not endpoint.enabled or not endpoint.url:
        return False
    if endpoint.format == IpnEndpoint.Format.GENIOSMS and event_type not in GENIOSMS_IPN_TYPES:
        return False
    return not endpoint.events or event_type in endpoint.events


# --- Bodies -------------------------------------------------------------------------


def iso_time(value: datetime | None) -> str | None:
    """A time as callback bodies write it: UTC, milliseconds, `Z`."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def serialise_body(payload: dict[str, Any]) -> str:
    """Compact UTF-8 JSON, serialised once."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _cut(text: str, nbytes: int) -> str:
    """The text shortened by at least nbytes of UTF-8, on a character boundary."""
    raw = text.encode()
    return raw[: max(0, len(raw) - nbytes)].decode(errors="ignore")


def fit_json(payload: dict[str, Any], text_field: str = "msg", container: str = "data") -> str:
    """The JSON body, with payload[container][text_field] cut (and `truncated` set) when it
    would pass the cap."""
    body = serialise_body(payload)
    while len(body.encode()) > MAX_BODY_BYTES and payload[container].get(text_field):
        data = payload[container]
        data[text_field] = _cut(data[text_field], len(body.encode()) - MAX_BODY_BYTES + 16)
        data["truncated"] = True
        body = serialise_body(payload)
    return body


def fit_form(fields: dict[str, str], text_field: str = "msg") -> str:
    """The form-encoded body, with fields[text_field] cut when it would pass the cap."""
    body = urlencode(fields)
    while len(body) > MAX_BODY_BYTES and fields[text_field]:
        # A percent-encoded character takes up to 3 bytes per UTF-8 byte.
        fields[text_field] = _cut(fields[text_field], (len(body) - MAX_BODY_BYTES) // 3 + 4)
        body = urlencode(fields)
    return body


# --- The outbox ---------------------------------------------------------------------


def _new_event(
    *, endpoint: IpnEndpoint, event_type: str, body: str, content_type: str, when: datetime, message_id: int | None
) -> IpnEvent:
    """The outbox row, not saved; while the endpoint is disabled it is kept as skipped,
    so that "replay failed since" can send it after re-enabling."""
    status = IpnEvent.Status.SKIPPED if endpoint.disabled_at else IpnEvent.Status.PENDING
    now = timezone.now()
    return IpnEvent(
        webhook_id=tokens.public_id("evt"),
        account_id=endpoint.account_id,
        type=event_type,
        body=body,
        content_type=content_type,
        status=status,
        occurred_at=when,
        created_at=now,
        next_attempt_at=now,
        schedule_started_at=now,
        message_id=message_id,
    )


def wants_event(*, endpoint: IpnEndpoint | None, event_type: str) -> bool:
    """True if these IPN settings ask for events of `event_type`, or the account has
    SMSGate webhooks (which of them want it is read when the event is written)."""
    return _wants(endpoint, event_type) or (endpoint is not None and endpoint.has_webhooks)


def build_event(
    *, event: Callback, occurred_at: datetime | None = None, endpoint: IpnEndpoint | None = None
) -> IpnEvent | None:
    """The outbox row of `event` in the format its account chose, not saved, if the account
    wants it (else None). `endpoint`: the account's settings when the caller has read them
    already. The caller saves it in the transaction that caused it (`record_event`), and
    writes the account's SMSGate webhook events as `record_event` does when it has any."""
    if endpoint is None:
        endpoint = IpnEndpoint.objects.filter(account_id=event.account_id).first()
    when = occurred_at or timezone.now()
    if endpoint is None or not _wants(endpoint, event.type):
        return None
    if endpoint.format == IpnEndpoint.Format.GENIOSMS:
        body, content_type = fit_form(event.geniosms_fields()), FORM
    else:
        payload = {"type": event.type, "timestamp": iso_time(when), "occurred_at": iso_time(when)}
        body, content_type = fit_json({**payload, "data": event.standard_data()}, text_field=event.text_field), JSON
    return _new_event(
        endpoint=endpoint,
        event_type=event.type,
        body=body,
        content_type=content_type,
        when=when,
        message_id=event.message_id,
    )


def record_event(
    *, event: Callback, occurred_at: datetime | None = None, endpoint: IpnEndpoint | None = None
) -> IpnEvent | None:
    """Writes `event` into the outbox in the format its account chose, if the account wants
    it. Call inside the transaction that caused it. `endpoint`: the account's settings
    when the caller has read them already. Returns the row or None."""
    if endpoint is None:
        endpoint = IpnEndpoint.objects.filter(account_id=event.account_id).first()
    when = occurred_at or timezone.now()
    if endpoint is not None and endpoint.has_webhooks:
        record_smsgate_events(event=event, when=when)
    row = build_event(event=event, occurred_at=when, endpoint=endpoint)
    if row is not None:
        row.save(force_insert=True)
    return row


def test_event_body(endpoint: IpnEndpoint, when: datetime) -> tuple[str, str]:
    """The body of a `test` event in the endpoint's format."""
    text = "Test event from Phonefleet"
    if endpoint.format == IpnEndpoint.Format.GENIOSMS:
        fields = {
            "status": "RESULT_OK",
            "status_code": ANDROID_RESULT_OK,
            "id_smsout": "msg_test",
            "request_code": "00000000",
            "pin": "",
            "custom": "test",
            "ipn_type": "SENT",
            "from": "",
            "to": "",
            "msg": text,
        }
        return urlencode(fields), FORM
    payload = {
        "type": TEST_EVENT,
        "timestamp": iso_time(when),
        "occurred_at": iso_time(when),
        "data": {"message": text},
    }
    return serialise_body(payload), JSON


# --- Test and replay ----------------------------------------------------------------


def send_test_event(*, account: Account, url: str | None = None, format: str | None = None) -> IpnAttempt:
    """Sends a `test` event now (even while disabled) and returns the logged attempt: to
    `url` in `format` when given (what the settings form holds, saved or not; nothing is
    saved), else to the saved ones. Raises InvalidParameter for no URL or a refused one."""
    endpoint = get_or_create_endpoint(account=account)
    if url is not None:
        endpoint.url = validate_url(url)
    if format in IpnEndpoint.Format.values:
        endpoint.format = format
    if not endpoint.url:
        raise errors.InvalidParameter("Set an IPN URL first.", param="url")
    now = timezone.now()
    body, content_type = test_event_body(endpoint, now)
    event = IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account=account,
        type=TEST_EVENT,
        body=body,
        content_type=content_type,
        status=IpnEvent.Status.FAILED,
        occurred_at=now,
        locked_until=now + delivery.lock_duration(),
    )
    return delivery.deliver_now(event=event, endpoint=endpoint, is_test=True)


def replay_event(*, account: Account, webhook_id: str) -> IpnAttempt:
    """Delivers one event again now, with its original `webhook-id`, and returns the
    attempt. Raises NotFound (other accounts' ids too) or Conflict (in flight)."""
    event = selectors.get_event_for_account(account_id=account.pk, webhook_id=webhook_id)
    if event is None:
        raise errors.NotFound("Unknown IPN event.")
    endpoint = get_or_create_endpoint(account=account)
    if not endpoint.url and event.smsgate_webhook_id is None:
        raise errors.InvalidParameter("Set an IPN URL first.")
    if not delivery.lock_for_replay(event=event):
        raise errors.Conflict("This event is being delivered right now; try again in a minute.")
    IpnEvent.objects.filter(pk=event.pk).update(replays=F("replays") + 1)
    return delivery.deliver_now(event=event, endpoint=endpoint, is_test=event.type == TEST_EVENT)


def replay_failed_since(*, account: Account, since: datetime) -> int:
    """Queues again every event written since `since` that failed or was skipped while the
    endpoint was disabled; the worker sends each once more, oldest first. Returns how many."""
    now = timezone.now()
    return (
        IpnEvent.objects.filter(
            account=account,
            created_at__gte=since,
            status__in=[IpnEvent.Status.FAILED, IpnEvent.Status.SKIPPED],
        )
        .exclude(type=TEST_EVENT)
        .update(
            status=IpnEvent.Status.PENDING,
            attempts=0,
            schedule_started_at=now,
            next_attempt_at=now,
            locked_until=None,
            replays=F("replays") + 1,
        )
    )


# --- SMSGate webhooks ---------------------------------------------------------------
#
# Webhooks registered through the SMSGate client API are delivered by the server, through
# the same outbox as IPN (retries, log, replay, the SSRF rules), each in SMSGate's
# envelope `{id, webhookId, event, deviceId, payload}` and signed as the SMSGate app signs
# (`X-Signature`, `X-Timestamp`; ipn/lib/signing.py) with the account's SMSGate key.

SMSGATE_SMS_RECEIVED, SMSGATE_SMS_SENT = "sms:received", "sms:sent"
SMSGATE_SMS_DELIVERED, SMSGATE_SMS_FAILED = "sms:delivered", "sms:failed"
SMSGATE_SMS_CANCELLED = "sms:cancelled"
# The events Phonefleet emits.
SMSGATE_EVENTS = (
    SMSGATE_SMS_RECEIVED,
    SMSGATE_SMS_SENT,
    SMSGATE_SMS_DELIVERED,
    SMSGATE_SMS_FAILED,
    SMSGATE_SMS_CANCELLED,
)
# The other events the official clients name, refused with the reason.
SMSGATE_REFUSED = {
    "sms:data-received": "Phonefleet phones do not pass data SMS on",
    "sms:batch:received": "Phonefleet sends each received SMS as its own `sms:received`",
    "sms:batch:data-received": "Phonefleet phones do not pass data SMS on",
    "mms:received": "Phonefleet phones do not pass MMS on",
    "mms:downloaded": "Phonefleet phones do not pass MMS on",
    "mms:batch:received": "Phonefleet phones do not pass MMS on",
    "mms:batch:downloaded": "Phonefleet phones do not pass MMS on",
    "system:ping": "Phonefleet watches its phones itself (GET /devices shows `lastSeen`; /health)",
    "app:started": "Phonefleet phones are not the SMSGate app's local server",
}
# A client-chosen webhook id: what SMSGate's ids (nanoids, UUIDs) are made of.
SMSGATE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Webhooks per account (OWASP API4: every collection a caller can grow is bounded).
MAX_SMSGATE_WEBHOOKS = 100


def _scoped(*, account_id: int, phone_list_id: int | None) -> Any:
    """The webhooks a caller sees: its list's, or all of the account's for an account-wide caller."""
    hooks = SmsGateWebhook.objects.filter(account_id=account_id)
    return hooks if phone_list_id is None else hooks.filter(phone_list_id=phone_list_id)


def list_smsgate_webhooks(*, account_id: int, phone_list_id: int | None) -> list[SmsGateWebhook]:
    """The caller's SMSGate webhooks (its list's, or the whole account's), oldest first."""
    scoped = _scoped(account_id=account_id, phone_list_id=phone_list_id)
    return list(scoped.select_related("device").order_by("created_at", "id"))


def validate_smsgate_event(event: str) -> str:
    """The event name if Phonefleet emits it; raises InvalidParameter saying why not."""
    if event in SMSGATE_EVENTS:
        return event
    supported = ", ".join(SMSGATE_EVENTS)
    if event in SMSGATE_REFUSED:
        raise errors.InvalidParameter(
            f"`{event}` is not supported: {SMSGATE_REFUSED[event]}. Supported events: {supported}.", param="event"
        )
    raise errors.InvalidParameter(f"Unknown event `{event}`. Supported events: {supported}.", param="event")


def register_smsgate_webhook(
    *,
    account_id: int,
    url: str,
    event: str,
    public_id: str | None = None,
    phone_list_id: int | None = None,
    device_id: int | None = None,
) -> SmsGateWebhook:
    """Registers (or, for an `id` the caller already has, replaces) a webhook and returns
    it. `phone_list_id`: the caller's list (None: account-wide); `device_id`: a phone of
    the caller, already checked. Raises InvalidParameter, or Conflict for an id another
    list of the account uses."""
    event = validate_smsgate_event(event)
    url = validate_url(url)
    if not url:
        raise errors.InvalidParameter("`url` is required.", param="url")
    if public_id is not None and not SMSGATE_ID_PATTERN.fullmatch(public_id):
        raise errors.InvalidParameter("`id`: 1 to 64 letters, digits, `_`, `-`, `.` or `:`.", param="id")
    fields = {"url": url, "event": event, "phone_list_id": phone_list_id, "device_id": device_id}
    # Registering again (SMSGate's way to change a webhook) switches it back on.
    fields.update(disabled_at=None, disabled_reason="", failing_since=None)
    with transaction.atomic():
        endpoint = endpoint_of(account_id=account_id)
        IpnEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()  # one registration at a time
        mine = SmsGateWebhook.objects.filter(account_id=account_id)
        existing = mine.filter(public_id=public_id).first() if public_id else None
        if existing is not None:
            if phone_list_id is not None and existing.phone_list_id != phone_list_id:
                raise errors.Conflict("Another list of this account has a webhook with this `id`.", param="id")
            SmsGateWebhook.objects.filter(pk=existing.pk).update(**fields)
            existing.refresh_from_db()
            return existing
        if mine.count() >= MAX_SMSGATE_WEBHOOKS:
            raise errors.InvalidParameter(f"An account has at most {MAX_SMSGATE_WEBHOOKS} webhooks.")
        hook = SmsGateWebhook.objects.create(
            account_id=account_id, public_id=public_id or tokens.public_id("wh"), **fields
        )
        IpnEndpoint.objects.filter(pk=endpoint.pk).update(has_webhooks=True)
        IpnEndpoint.objects.filter(pk=endpoint.pk, smsgate_signing_key="").update(
            smsgate_signing_key=signing.generate_smsgate_key()
        )
    return hook


def delete_smsgate_webhook(*, account_id: int, phone_list_id: int | None, public_id: str) -> None:
    """Removes one of the caller's webhooks; its undelivered events go with it. Raises NotFound."""
    if not SMSGATE_ID_PATTERN.fullmatch(public_id):
        raise errors.NotFound("Unknown webhook.")  # no such id was ever registered
    with transaction.atomic():
        deleted, _ = _scoped(account_id=account_id, phone_list_id=phone_list_id).filter(public_id=public_id).delete()
        if not deleted:
            raise errors.NotFound("Unknown webhook.")
        others = SmsGateWebhook.objects.filter(account_id=OuterRef("account_id"))
        IpnEndpoint.objects.filter(account_id=account_id).update(has_webhooks=Exists(others))


def smsgate_signing_key(*, account_id: int) -> str:
    """The key SMSGate receivers verify this account's webhooks with (created on first use)."""
    endpoint = endpoint_of(account_id=account_id)
    if not endpoint.smsgate_signing_key:
        IpnEndpoint.objects.filter(pk=endpoint.pk, smsgate_signing_key="").update(
            smsgate_signing_key=signing.generate_smsgate_key()
        )
        endpoint.refresh_from_db(fields=["smsgate_signing_key"])
    return endpoint.smsgate_signing_key


def set_smsgate_signing_key(*, account_id: int, key: str) -> str:
    """Sets the SMSGate signing key (say, the one a receiver already verifies with, from the
    app's Settings → Webhooks); the next attempt of every event signs with it. Raises
    InvalidParameter for an empty or over-long key."""
    key = key.strip()
    if not key or len(key) > 100:
        raise errors.InvalidParameter("`signing_key` must be 1 to 100 characters.", param="signing_key")
    endpoint = endpoint_of(account_id=account_id)
    IpnEndpoint.objects.filter(pk=endpoint.pk).update(smsgate_signing_key=key)
    return key


def smsgate_body(*, event_id: str, hook: SmsGateWebhook, name: str, device_id: str, payload: dict[str, Any]) -> str:
    """SMSGate's envelope, as its app sends it: `id` is the event's (the same on every
    retry: receivers de-duplicate on it), `webhookId` the registration's."""
    envelope = {"id": event_id, "webhookId": hook.public_id, "event": name, "deviceId": device_id, "payload": payload}
    return fit_json(envelope, text_field="message", container="payload")


def record_smsgate_events(*, event: Callback, when: datetime) -> list[IpnEvent]:
    """Writes one outbox row per SMSGate webhook of the account that wants `event` (its
    event name, list and phone). Call inside the transaction that caused it."""
    name = event.smsgate_event
    if name is None:
        return []
    list_id, device_id = event.smsgate_scope()
    hooks = list(
        SmsGateWebhook.objects.filter(account_id=event.account_id, event=name)
        .filter(Q(phone_list__isnull=True) | Q(phone_list_id=list_id))
        .filter(Q(device__isnull=True) | Q(device_id=device_id))
        .only("id", "public_id", "disabled_at")
    )
    if not hooks:
        return []
    device_public_id, payload = event.smsgate_payload()
    now = timezone.now()
    rows = []
    for hook in hooks:
        event_id = tokens.public_id("evt")
        rows.append(
            IpnEvent(
                webhook_id=event_id,
                account_id=event.account_id,
                type=name,
                smsgate_webhook=hook,
                body=smsgate_body(event_id=event_id, hook=hook, name=name, device_id=device_public_id, payload=payload),
                content_type=JSON,
                # Kept while the webhook is switched off, for "replay failed since".
                status=IpnEvent.Status.SKIPPED if hook.disabled_at else IpnEvent.Status.PENDING,
                occurred_at=when,
                created_at=now,
                next_attempt_at=now,
                schedule_started_at=now,
                message_id=event.message_id,
            )
        )
    return IpnEvent.objects.bulk_create(rows)
