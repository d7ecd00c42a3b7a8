"""SMSGate Android phones: enrolment, sign-in, device tokens, presence, jobs, reports
and the phone's signed webhooks.

A list's *private token* is an `EnrolmentToken`. Anonymous sign-up with it also creates
a login/password pair for the same list, stored as another `EnrolmentToken` whose
prefix is `login:<LOGIN>` and whose digest covers login and password, so more phones
can join by Basic sign-in or by a one-time code without a model of their own.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import columns, errors
from accounts import services as account_services
from accounts.lib import safejson, tokens
from devices import services as device_services
from devices.models import Device, EnrolmentToken, PhoneList
from devices.smsgate import wire
from messaging.models import InboundSms, Message
from messaging.services import dispatch, inbox, offers

logger = logging.getLogger(__name__)

ENROLMENT_TOKEN_PREFIX = "pf_mobile"
LOGIN_PREFIX = "login:"
LOGIN_CHARS = string.ascii_uppercase
PASSWORD_CHARS = string.ascii_lowercase
CODE_TTL = timedelta(seconds=60)
FETCH_LIMIT = 10
# Messages the app knows to cancel locally arrived in v1.67.0.
CANCEL_SUPPORT_VERSION = (1, 67, 0)
# Events every app version with webhook signing (v1.33+) knows; unknown names break its sync.
WEBHOOK_EVENTS = ("sms:received", "sms:sent", "sms:delivered", "sms:failed", "system:ping")
WEBHOOK_DEDUPE_SECONDS = 7 * 24 * 3600
# How the app's settings say "no limit" (its MessagesSettings.Period.Disabled).
NO_RATE_LIMIT = {"limit_period": "Disabled", "limit_value": 0}
# The shortest password the reference server accepts on a change.
MIN_PASSWORD_LENGTH = 14
# Wrong logins, one-time codes and current passwords, as for PINs: per address (IPv6: per
# /64) and from everywhere together (codes are 6 digits: 300 wrong an hour in all).
SIGN_IN_THROTTLE = account_services.ThrottlePolicy(
    max_failures=10, window=timedelta(minutes=10), first_lockout=timedelta(minutes=5), max_lockout=timedelta(days=1)
)
SIGN_IN_GLOBAL_THROTTLE = account_services.ThrottlePolicy(
    max_failures=300,
    window=timedelta(hours=1),
    first_lockout=timedelta(minutes=5),
    max_lockout=timedelta(hours=6),
    holds_slots=False,
)
SIGN_IN_GLOBAL_SCOPE = "smsgate:global"


class InvalidDeviceToken(errors.DomainError):
    """Unknown, revoked, disabled or removed device token: the app re-registers on 401."""

    default_message = "Unknown device token."


class InvalidCredentials(errors.DomainError):
    """Wrong private token, login/password or one-time code."""

    default_message = "Wrong private token, login or code."


@dataclass(frozen=True)
class Registration:
    """What `POST /device` answers: the password only when it was just created."""

    device: Device
    token: str
    login: str
    password: str | None


def _digest(secret: str) -> str:
    return tokens.token_digest(secret, settings.API_KEY_SECRET)


def _login_digest(login: str, password: str) -> str:
    return _digest(f"{LOGIN_PREFIX}{login.upper()}:{password}")


# --- Enrolment tokens and sign-in ---------------------------------------------------


def create_enrolment_token(*, phone_list: PhoneList) -> tuple[EnrolmentToken, str]:
    """A new private token for the list; returns the row and the secret (shown once)."""
    secret = tokens.generate_token(ENROLMENT_TOKEN_PREFIX)
    row = EnrolmentToken.objects.create(
        phone_list=phone_list, prefix=secret[: len(ENROLMENT_TOKEN_PREFIX) + 5], digest=_digest(secret)
    )
    return row, secret


def list_private_tokens(*, phone_list: PhoneList) -> list[EnrolmentToken]:
    """The list's private tokens (active and revoked), without the login credentials that
    share the table (prefix `login:`), newest first."""
    rows = EnrolmentToken.objects.filter(phone_list=phone_list).exclude(prefix__startswith=LOGIN_PREFIX)
    return list(rows.order_by("-created_at", "-id"))


def revoke_enrolment_token(*, token: EnrolmentToken) -> None:
    """Stops the token (or login) enrolling phones; phones already enrolled keep working."""
    EnrolmentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _active_credential(digest: str) -> EnrolmentToken:
    found = (
        EnrolmentToken.objects.select_related("phone_list")
        .filter(digest=digest, revoked_at__isnull=True, phone_list__account__is_active=True)
        .first()
    )
    if found is None:
        raise InvalidCredentials()
    return found


def resolve_private_token(*, secret: str) -> EnrolmentToken:
    """The list's active private token; raises InvalidCredentials (a checksum typo costs no query)."""
    if not tokens.has_valid_checksum(secret, ENROLMENT_TOKEN_PREFIX):
        raise InvalidCredentials()
    return _active_credential(_digest(secret))


def _guarded(kind: str, ip: str, check: Callable[[], EnrolmentToken]) -> EnrolmentToken:
    """Checks a guessable sign-in attempt holding a throttle slot per address and globally;
    only a wrong one (InvalidCredentials) counts."""
    scopes = [
        (account_services.address_scope(f"smsgate-{kind}", ip), SIGN_IN_THROTTLE),
        (SIGN_IN_GLOBAL_SCOPE, SIGN_IN_GLOBAL_THROTTLE),
    ]
    with account_services.guarded_attempt(scopes, wrong=(InvalidCredentials,)):
        return check()


def resolve_login(*, login: str, password: str, ip: str) -> EnrolmentToken:
    """The active login credential; raises InvalidCredentials, or RateLimited after
    too many wrong attempts from one address."""
    return _guarded("login", ip, lambda: _active_credential(_login_digest(login, password)))


def issue_login_code(*, credential: EnrolmentToken) -> tuple[str, datetime]:
    """A one-time code (valid 60 s) that enrols one phone into the credential's list."""
    valid_until = timezone.now() + CODE_TTL
    while True:
        code = f"{secrets.randbelow(10**6):06d}"
        # The cache's own expiry only cleans up; validity is checked against our clock.
        entry = (credential.pk, valid_until.timestamp())
        if cache.add(f"smsgate:code:{code}", entry, int(CODE_TTL.total_seconds()) + 60):
            return code, valid_until


def resolve_login_code(*, code: str, ip: str) -> EnrolmentToken:
    """The credential behind a one-time code, consuming it; raises InvalidCredentials
    or RateLimited."""

    def check() -> EnrolmentToken:
        name = f"smsgate:code:{code.strip()}"
        entry = cache.get(name)
        # delete() answers False when another request consumed the code first.
        if entry is None or not cache.delete(name):
            raise InvalidCredentials()
        credential_id, valid_until = entry
        if timezone.now().timestamp() > valid_until:
            raise InvalidCredentials()
        found = (
            EnrolmentToken.objects.select_related("phone_list")
            .filter(pk=credential_id, phone_list__account__is_active=True)
            .first()
        )
        if found is None or found.revoked_at is not None:
            raise InvalidCredentials()
        return found

    return _guarded("code", ip, check)


def change_password(*, device: Device, current: str, new: str, ip: str) -> None:
    """Gives the login of the phone's list whose password is `current` the password `new`.
    Raises InvalidCredentials (wrong current password: the app shows the failure),
    InvalidParameter for a new password under MIN_PASSWORD_LENGTH, or RateLimited."""
    if len(new) < MIN_PASSWORD_LENGTH:
        raise errors.InvalidParameter(f"The new password needs at least {MIN_PASSWORD_LENGTH} characters.")

    def check() -> EnrolmentToken:
        logins = EnrolmentToken.objects.filter(
            phone_list_id=device.phone_list_id, prefix__startswith=LOGIN_PREFIX, revoked_at__isnull=True
        )
        for credential in logins:
            if hmac.compare_digest(credential.digest, _login_digest(_login_of(credential) or "", current)):
                return credential
        raise InvalidCredentials()

    credential = _guarded("password", ip, check)
    login = _login_of(credential) or ""
    # Only if it was not changed meanwhile: two changes at once cannot both win.
    changed = EnrolmentToken.objects.filter(pk=credential.pk, digest=credential.digest).update(
        digest=_login_digest(login, new)
    )
    if not changed:
        raise InvalidCredentials()


def _create_login(*, phone_list: PhoneList) -> tuple[str, str]:
    login = "".join(secrets.choice(LOGIN_CHARS) for _ in range(6))
    password = "".join(secrets.choice(PASSWORD_CHARS) for _ in range(14))
    EnrolmentToken.objects.create(
        phone_list=phone_list, prefix=f"{LOGIN_PREFIX}{login}", digest=_login_digest(login, password)
    )
    return login, password


def _login_of(credential: EnrolmentToken) -> str | None:
    return credential.prefix.removeprefix(LOGIN_PREFIX) if credential.prefix.startswith(LOGIN_PREFIX) else None


# --- Devices --------------------------------------------------------------------------


def _clean_sims(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    keys = ("slotIndex", "simNumber", "phoneNumber", "carrierName", "iccid")
    return [{k: item[k] for k in keys if k in item} for item in value if isinstance(item, dict)]


def register_device(
    *, credential: EnrolmentToken, name: str, sims: object = None, app_version: str = ""
) -> Registration:
    """Creates an SMSGate phone in the credential's list. Sign-up with a private token
    also creates a login/password for the list (the password is returned only then)."""
    phone_list = credential.phone_list
    with transaction.atomic():
        device, token = device_services.create_device(
            phone_list=phone_list,
            name=name or "Android phone",
            model=name,
            sims=_clean_sims(sims),
            kind=Device.Kind.SMSGATE,
        )
        device.app_version = app_version[:40]
        device.webhook_signing_key = secrets.token_urlsafe(24)
        device.last_seen_at = timezone.now()
        device.save(update_fields=["app_version", "webhook_signing_key", "last_seen_at"])
        login = _login_of(credential)
        password = None
        if login is None:
            login, password = _create_login(phone_list=phone_list)
    return Registration(device=device, token=token, login=login, password=password)


def authenticate_device_token(*, token: str | None) -> Device:
    """The active SMSGate phone with this token, marked as seen now; raises InvalidDeviceToken."""
    if not token or not tokens.has_valid_checksum(token, device_services.DEVICE_TOKEN_PREFIX):
        raise InvalidDeviceToken()
    device = (
        Device.objects.select_related("phone_list")
        .filter(
            token_digest=device_services.device_token_digest(token),
            kind=Device.Kind.SMSGATE,
            is_enabled=True,
            removed_at__isnull=True,
            account__is_active=True,
        )
        .first()
    )
    if device is None:
        raise InvalidDeviceToken()
    device.last_seen_at = timezone.now()
    Device.objects.filter(pk=device.pk).update(last_seen_at=device.last_seen_at)
    return device


def update_device(*, device: Device, name: object = None, sims: object = None, app_version: str = "") -> None:
    """Refreshes what the phone tells us at every start (`PATCH /device`)."""
    fields = []
    if isinstance(name, str) and name:
        device.name = name[:100]
        fields.append("name")
    if sims is not None:
        device.sims = _clean_sims(sims)
        fields.append("sims")
    if app_version and app_version != device.app_version:
        device.app_version = app_version[:40]
        fields.append("app_version")
    if fields:
        device.save(update_fields=fields)


# --- Presence of the event stream ------------------------------------------------------


def mark_stream_open(*, device: Device, channel_name: str) -> str:
    """The phone holds its event stream open: online now. Returns the channel of the
    stream it replaces ("" if none), which the caller asks to close."""
    return device_services.mark_connected(device_id=device.pk, channel_name=channel_name)


def refresh_stream(*, device: Device, channel_name: str) -> bool:
    """Keeps an open stream's presence lease fresh; returns whether queued work
    waits for the phone, so a lost offer is caught up on the next keep-alive."""
    device_services.touch_device(device_id=device.pk, channel_name=channel_name)
    return _has_waiting_work(device=device)


def mark_stream_closed(*, device: Device, channel_name: str) -> None:
    """The stream ended; offline unless a newer stream of the same phone took over."""
    device_services.mark_disconnected(device_id=device.pk, channel_name=channel_name)


def rotate_signing_key(*, device: Device) -> str:
    """A new webhook signing key for the phone, pushed to it through `SettingsUpdated`."""
    device.webhook_signing_key = secrets.token_urlsafe(24)
    device.save(update_fields=["webhook_signing_key"])
    transaction.on_commit(lambda: device_services.notify_settings_updated(device_id=device.pk))
    return device.webhook_signing_key


# --- What the phone reads: settings and webhooks ----------------------------------------


def device_settings(*, device: Device) -> dict[str, dict[str, Any]]:
    """The `GET /settings` sections: the phone's signing key, SSE-only wake-ups and the
    phone's per-minute cap (its own or its list's; the server enforces the hour and day caps
    on its own). Never `cloud_url`: that would move the phone to another server."""
    rate = device.caps["minute"]
    return {
        "webhooks": {"signing_key": device.webhook_signing_key, "internet_required": True},
        "gateway": {"notification_channel": "SSE_ONLY"},
        # Always both fields: the app imports only the keys present, so a limit that was
        # removed must be sent as disabled or the phone keeps the old one.
        "messages": {"limit_period": "PerMinute", "limit_value": rate} if rate else NO_RATE_LIMIT,
    }


def device_webhooks(*, device: Device, receiver_url: str) -> list[dict[str, str]]:
    """The `GET /webhooks` registrations: every event the phone emits, to our receiver."""
    return [{"id": "pf-" + event.replace(":", "-"), "url": receiver_url, "event": event} for event in WEBHOOK_EVENTS]


# --- Jobs and reports ----------------------------------------------------------------------


def fetch_jobs(*, device: Device) -> list[Message]:
    """The phone's open assignments plus newly claimed work (fetching is claiming), oldest
    first. The app asks with `order=lifo` by default (its processing-order setting); the
    queue is served oldest first whatever it asks, as for every other phone."""
    return dispatch.claim_next_messages(device=device, limit=FETCH_LIMIT, order="fifo")


def _extend_lease(*, device: Device, message_id: str) -> None:
    # The phone has it in hand (Processed): give it a fresh lease so it is not re-offered
    # to another phone while this one works through its local queue.
    lease = timedelta(seconds=device.phone_list.lease_seconds)
    Message.objects.filter(public_id=message_id, device=device, status=Message.Status.ASSIGNED).update(
        lease_expires_at=timezone.now() + lease
    )


def apply_state_patch(*, device: Device, patch: dict[str, Any], app_version: tuple[int, ...]) -> None:
    """Maps one `PATCH /message` item onto the lifecycle; unknown ids and repeats are no-ops."""
    message_id = patch.get("id")
    state = patch.get("state")
    if not isinstance(message_id, str) or not isinstance(state, str):
        return
    raw_states = patch.get("states")
    states: dict[str, Any] = raw_states if isinstance(raw_states, dict) else {}
    at = wire.parse_datetime(states.get(state))
    if state in ("Pending", "Processed", "Cancelling"):
        _extend_lease(device=device, message_id=message_id)
    elif state == "Sent":
        dispatch.report_message(device=device, message_id=message_id, status="sent", at=at)
    elif state == "Delivered":
        # A phone may skip the Sent patch (it only PATCHes the latest snapshot).
        sent_at = wire.parse_datetime(states.get("Sent"))
        dispatch.report_message(device=device, message_id=message_id, status="sent", at=sent_at or at)
        dispatch.report_message(device=device, message_id=message_id, status="delivered", at=at)
    elif state == "Failed":
        dispatch.report_message(device=device, message_id=message_id, status="failed", error=_patch_error(patch), at=at)
    elif state == "Cancelled" and app_version >= CANCEL_SUPPORT_VERSION:
        dispatch.report_message(
            device=device, message_id=message_id, status="failed", error="Cancelled on the phone", at=at
        )


def _patch_error(patch: dict[str, Any]) -> str:
    recipients = patch.get("recipients")
    found = [r.get("error") for r in recipients if isinstance(r, dict)] if isinstance(recipients, list) else []
    return ("; ".join(error for error in found if isinstance(error, str)) or "Failed on the phone")[:500]


def report_states(*, device: Device, patches: list[Any], app_version: tuple[int, ...]) -> None:
    """Applies a `PATCH /message` body. The app does not page (one batch per wake-up), so
    when the phone has finished its batch and more work waits, it is woken again."""
    finished = False
    for patch in patches:
        if isinstance(patch, dict):
            apply_state_patch(device=device, patch=patch, app_version=app_version)
            finished = finished or patch.get("state") in ("Sent", "Delivered", "Failed", "Cancelled")
    if finished and not _holds_work(device=device) and _has_waiting_work(device=device):
        offers.announce_work(device_ids={device.pk})


def _holds_work(*, device: Device) -> bool:
    return Message.objects.filter(device=device, status=Message.Status.ASSIGNED).exists()


def _has_waiting_work(*, device: Device) -> bool:
    now = timezone.now()
    return Message.objects.filter(
        Q(phone_list_id=device.phone_list_id, pinned_device__isnull=True) | Q(pinned_device_id=device.pk),
        status=Message.Status.QUEUED,
        send_at__lte=now,
        expires_at__gt=now,
    ).exists()


# --- The phone's signed webhooks ------------------------------------------------------------


def receive_webhook(*, device_public_id: str, body: bytes, timestamp: str, signature: str) -> bool:
    """Verifies and applies one webhook the phone sent (`X-Signature`/`X-Timestamp` over the
    raw body). Returns False for an unknown phone, a bad or stale signature, or a body that
    is not an event; a repeated event id is accepted and ignored."""
    device = (
        Device.objects.select_related("phone_list")
        .filter(public_id=device_public_id, kind=Device.Kind.SMSGATE, is_enabled=True, removed_at__isnull=True)
        .first()
    )
    if device is None or not wire.verify_webhook_signature(
        key=device.webhook_signing_key,
        body=body,
        timestamp=timestamp,
        signature=signature,
        now=timezone.now().timestamp(),
    ):
        return False
    try:
        envelope = safejson.loads(body)
    except ValueError:
        return False
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), dict):
        return False
    dedupe_name = f"smsgate:hook:{device.pk}:{envelope.get('id')}"
    if envelope.get("id") and cache.get(dedupe_name):
        return True
    _apply_webhook(device=device, event=str(envelope.get("event", "")), payload=envelope["payload"])
    if envelope.get("id"):
        # Marked only after it was applied, so a crash mid-way lets the phone's retry through.
        cache.set(dedupe_name, 1, WEBHOOK_DEDUPE_SECONDS)
    return True


def _apply_webhook(*, device: Device, event: str, payload: dict[str, Any]) -> None:
    Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now())
    message_id = payload.get("messageId")
    if event == "sms:received":
        sender = payload.get("sender") or payload.get("phoneNumber") or ""
        inbox.record_incoming_sms(
            device=device,
            sender=str(sender),
            text=str(payload.get("message", "")),
            received_at=wire.parse_datetime(payload.get("receivedAt")) or timezone.now(),
            sim=_sim_number(payload),
        )
    elif event == "sms:sent" and isinstance(message_id, str):
        at = wire.parse_datetime(payload.get("sentAt"))
        dispatch.report_message(device=device, message_id=message_id, status="sent", at=at)
    elif event == "sms:delivered" and isinstance(message_id, str):
        at = wire.parse_datetime(payload.get("deliveredAt"))
        dispatch.report_message(device=device, message_id=message_id, status="delivered", at=at)
    elif event == "sms:failed" and isinstance(message_id, str):
        at = wire.parse_datetime(payload.get("failedAt"))
        reason = str(payload.get("reason") or "Failed on the phone")[:500]
        dispatch.report_message(device=device, message_id=message_id, status="failed", error=reason, at=at)
    elif event == "system:ping":
        battery = _battery_level(payload)
        if battery is not None:
            Device.objects.filter(pk=device.pk).update(battery=battery)
    else:
        logger.info("ignoring SMSGate webhook event %r from %s", event, device.public_id)


def _sim_number(payload: dict[str, Any]) -> int | None:
    """The SIM an SMS came in on; a number its column cannot hold is refused (InvalidParameter)."""
    value = payload.get("simNumber")
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return columns.check_integer(value, InboundSms, "sim", param="simNumber")


def _battery_level(payload: dict[str, Any]) -> int | None:
    health = payload.get("health")
    checks = health.get("checks") if isinstance(health, dict) else None
    level = checks.get("battery:level") if isinstance(checks, dict) else None
    value = level.get("observedValue") if isinstance(level, dict) else None
    if isinstance(value, int | float) and 0 <= value <= 100:
        return int(value)
    return None
