"""IPN operations: endpoint settings, writing events into the outbox (in the caller's
transaction), test events and replays. Delivery itself is in `ipn/delivery.py`."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts import errors
from accounts.lib import tokens
from accounts.models import Account
from ipn import delivery, selectors
from ipn.lib import safehttp, signing
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent
from messaging.models import InboundSms, Message

# Event types (SPEC): message.sent, message.delivered, message.failed, message.expired, sms.received.
MESSAGE_EVENT_TYPES = {
    Message.Status.SENT: "message.sent",
    Message.Status.DELIVERED: "message.delivered",
    Message.Status.FAILED: "message.failed",
    Message.Status.EXPIRED: "message.expired",
}
SMS_RECEIVED = "sms.received"
TEST_EVENT = "test"
ALL_EVENT_TYPES = [*MESSAGE_EVENT_TYPES.values(), SMS_RECEIVED]
# Bodies are capped; long texts are cut to fit (R3).
MAX_BODY_BYTES = 20_000
SECRET_GRACE_PERIOD = delivery.SECRET_GRACE_PERIOD

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# GenioSms format: which of our events exist there, and as which `ipn_type`.
GENIOSMS_IPN_TYPES = {"message.sent": "SENT", "message.delivered": "DELIVERY", "message.failed": "SENT"}
# Android SmsManager result codes, sent as `status_code` when a phone reports a failure.
ANDROID_ERROR_CODES = {
    "GENERIC_FAILURE": 1,
    "RADIO_OFF": 2,
    "NULL_PDU": 3,
    "NO_SERVICE": 4,
    "LIMIT_EXCEEDED": 5,
    "FDN_CHECK_FAILURE": 6,
    "SHORT_CODE_NOT_ALLOWED": 7,
    "SHORT_CODE_NEVER_ALLOWED": 8,
}
ANDROID_RESULT_OK = "-1"


# --- Endpoint settings ----------------------------------------------------------


def get_or_create_endpoint(*, account: Account) -> IpnEndpoint:
    """The account's IPN settings, created (disabled, with a fresh secret) on first use."""
    found = IpnEndpoint.objects.filter(account=account).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return IpnEndpoint.objects.create(account=account, secret=signing.generate_secret())
    except IntegrityError:  # another request created it first
        return IpnEndpoint.objects.get(account=account)


def validate_url(url: str) -> str:
    """The URL, stripped, if callbacks may go there; raises InvalidParameter (R10)."""
    url = url.strip()
    if not url:
        return ""
    if len(url) > 1000:
        raise errors.InvalidParameter("The IPN URL is too long (1000 characters at most).")
    try:
        safehttp.check_url(url, allow_private=settings.IPN_ALLOW_PRIVATE_NETWORKS)
    except safehttp.AddressRefused as exc:
        raise errors.InvalidParameter(f"The IPN URL is not allowed: {exc}.")
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
    """Replaces the signing secret; the old one keeps signing beside it for 24 h (R4)."""
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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def serialise_body(payload: dict[str, Any]) -> str:
    """Compact UTF-8 JSON, serialised once (R3)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _cut(text: str, nbytes: int) -> str:
    """The text shortened by at least nbytes of UTF-8, on a character boundary."""
    raw = text.encode()
    return raw[: max(0, len(raw) - nbytes)].decode(errors="ignore")


def fit_json(payload: dict[str, Any], text_field: str = "msg") -> str:
    """The JSON body, with data[text_field] cut (and `truncated` set) when it would pass the cap."""
    body = serialise_body(payload)
    while len(body.encode()) > MAX_BODY_BYTES and payload["data"].get(text_field):
        data = payload["data"]
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


def message_event_data(message: Message) -> dict[str, Any]:
    """The `data` object of a message event (SPEC), with the message's current status (R11)."""
    device = message.device
    return {
        "message_id": message.public_id,
        "ref": message.ref,
        "to": message.to,
        "status": message.status,
        "device_id": device.public_id if device else None,
        "device_name": device.name if device else None,
        "parts": message.parts,
        "error": message.error or None,
        "sent_at": _iso(message.sent_at),
        "delivered_at": _iso(message.delivered_at),
    }


def request_code(message_id: str) -> str:
    """GenioSms `request_code`: 8 digits, stable for one message (the same on SENT and DELIVERY)."""
    return str(int(hashlib.sha256(message_id.encode()).hexdigest(), 16) % 10**8).zfill(8)


def android_error_code(error: str) -> str:
    """The Android SmsManager code a phone's error text names (`RESULT_ERROR_RADIO_OFF`,
    `radio off`, `2`…); 1 (generic failure) when it names none."""
    name = re.sub(r"[\s-]+", "_", error.strip().upper())
    for key, code in ANDROID_ERROR_CODES.items():
        if key in name:
            return str(code)
    number = re.search(r"\b(\d{1,3})\b", error)
    return number.group(1) if number else str(ANDROID_ERROR_CODES["GENERIC_FAILURE"])


def geniosms_fields(message: Message, event_type: str) -> dict[str, str]:
    """The GenioSms IPN form for a message event (notes/geniosms.md §3.3)."""
    ok = event_type != "message.failed"
    phone_list = message.phone_list or (message.pinned_device.phone_list if message.pinned_device else None)
    return {
        "status": "RESULT_OK" if ok else "RESULT_ERROR",
        "status_code": ANDROID_RESULT_OK if ok else android_error_code(message.error),
        "id_smsout": message.public_id,
        "request_code": request_code(message.public_id),
        "pin": phone_list.pin if phone_list else "",
        "custom": message.ref,
        "ipn_type": GENIOSMS_IPN_TYPES[event_type],
        "from": message.device.phone_number if message.device else "",
        "to": message.to,
        "msg": message.text,
    }


def _message_body(endpoint: IpnEndpoint, message: Message, event_type: str, when: datetime) -> tuple[str, str]:
    if endpoint.format == IpnEndpoint.Format.GENIOSMS:
        return fit_form(geniosms_fields(message, event_type)), FORM
    payload = {"type": event_type, "timestamp": _iso(when), "occurred_at": _iso(when)}
    return fit_json({**payload, "data": message_event_data(message)}, text_field="error"), JSON


# --- The outbox ---------------------------------------------------------------------


def _write(
    *, endpoint: IpnEndpoint, event_type: str, body: str, content_type: str, when: datetime, **extra: Any
) -> IpnEvent:
    """Inserts the outbox row; while the endpoint is disabled it is kept as skipped,
    so that "replay failed since" can send it after re-enabling (R8)."""
    status = IpnEvent.Status.SKIPPED if endpoint.disabled_at else IpnEvent.Status.PENDING
    return IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account_id=endpoint.account_id,
        type=event_type,
        body=body,
        content_type=content_type,
        status=status,
        occurred_at=when,
        created_at=timezone.now(),
        next_attempt_at=timezone.now(),
        schedule_started_at=timezone.now(),
        **extra,
    )


def wants_message_event(*, endpoint: IpnEndpoint | None, status: str) -> bool:
    """True if these IPN settings ask for the event of a message's new `status`."""
    event_type = MESSAGE_EVENT_TYPES.get(status)  # type: ignore[call-overload]
    return event_type is not None and _wants(endpoint, event_type)


def record_message_event(
    *, message: Message, status: str, occurred_at: datetime | None = None, endpoint: IpnEndpoint | None = None
) -> IpnEvent | None:
    """Writes the event for a message's new status into the outbox, if the account wants
    it. Call inside the transaction that changed the status (R5). `endpoint`: the account's
    settings when the caller has read them already. Returns the row or None."""
    event_type = MESSAGE_EVENT_TYPES.get(status)  # type: ignore[call-overload]
    if event_type is None:
        return None
    if endpoint is None:
        endpoint = IpnEndpoint.objects.filter(account_id=message.account_id).first()
    if endpoint is None or not _wants(endpoint, event_type):
        return None
    when = occurred_at or timezone.now()
    body, content_type = _message_body(endpoint, message, event_type, when)
    return _write(
        endpoint=endpoint, event_type=event_type, body=body, content_type=content_type, when=when, message=message
    )


def inbound_event_data(inbound: InboundSms) -> dict[str, Any]:
    """The `data` object of an `sms.received` event."""
    return {
        "id": inbound.public_id,
        "from": inbound.sender,
        "msg": inbound.text,
        "at": _iso(inbound.received_at),
        "device_id": inbound.device.public_id if inbound.device else None,
        "list": inbound.phone_list.token,
        "sim": inbound.sim,
    }


def record_inbound_event(*, inbound: InboundSms) -> IpnEvent | None:
    """Writes an `sms.received` event into the outbox, if the account wants it (never in
    the GenioSms format). Call inside the transaction that stored the SMS (R5)."""
    endpoint = IpnEndpoint.objects.filter(account_id=inbound.account_id).first()
    if endpoint is None or not _wants(endpoint, SMS_RECEIVED):
        return None
    when = inbound.received_at or timezone.now()
    payload = {"type": SMS_RECEIVED, "timestamp": _iso(when), "occurred_at": _iso(when)}
    body = fit_json({**payload, "data": inbound_event_data(inbound)})
    return _write(endpoint=endpoint, event_type=SMS_RECEIVED, body=body, content_type=JSON, when=when)


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
    payload = {"type": TEST_EVENT, "timestamp": _iso(when), "occurred_at": _iso(when), "data": {"message": text}}
    return serialise_body(payload), JSON


# --- Test and replay ----------------------------------------------------------------


def send_test_event(*, account: Account) -> IpnAttempt:
    """Sends a `test` event to the endpoint now (even while disabled) and returns the
    logged attempt. Raises InvalidParameter when no URL is set."""
    endpoint = get_or_create_endpoint(account=account)
    if not endpoint.url:
        raise errors.InvalidParameter("Set an IPN URL first.")
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
    if not endpoint.url:
        raise errors.InvalidParameter("Set an IPN URL first.")
    if not delivery.lock_for_replay(event=event):
        raise errors.Conflict("This event is being delivered right now; try again in a minute.")
    IpnEvent.objects.filter(pk=event.pk).update(replays=F("replays") + 1)
    return delivery.deliver_now(event=event, endpoint=endpoint, is_test=event.type == TEST_EVENT)


def replay_failed_since(*, account: Account, since: datetime) -> int:
    """Queues again every event written since `since` that failed or was skipped while the
    endpoint was disabled; the worker sends each once more, oldest first (R8). Returns how many."""
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
