"""Verifications (one-time codes by SMS): start one, check a code, end the overdue ones,
and each API key's limits against SMS pumping.

A start is a normal send: its SMS goes through `accept.queue_message` (credit, the list or
pinned phone, offers, callbacks) like any other. The code is in clear only in this
process's memory and in the `assign` frame of the one phone that sends it: the database
keeps a keyed digest of it (`Verification.code_digest`) and the message row keeps the text
with the code masked, beside the real text sealed with the server's key until the
verification ends (messaging/lib/otp.py, docs/api.md "Verify").
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from accounts import errors
from accounts.lib import tokens
from accounts.models import ApiKey
from accounts.services import AuthenticatedKey
from devices.models import PhoneList
from ipn import services as ipn_services
from messaging import selectors
from messaging.lib import numbers, otp
from messaging.models import Message, Verification, VerificationCheck, VerificationPolicy
from messaging.services import accept, callbacks

logger = logging.getLogger(__name__)

VERIFICATION_ID_PREFIX = "ver"
MIN_LENGTH, MAX_LENGTH, DEFAULT_LENGTH = 4, 10, 6
MIN_TTL_SECONDS, MAX_TTL_SECONDS, DEFAULT_TTL_SECONDS = 60, 1800, 600
MAX_TEMPLATE_LENGTH = 300
HOUR = timedelta(hours=1)

Status = Verification.Status
Outcome = VerificationCheck.Outcome


@dataclass(frozen=True)
class Started:
    """A new verification and its accepted SMS."""

    verification: Verification
    accepted: accept.AcceptedMessage


@dataclass(frozen=True)
class Checked:
    """A check's answer, and the verification as the check left it."""

    verification: Verification
    outcome: str


@dataclass(frozen=True)
class Limits:
    """One key's limits against SMS pumping (VerificationPolicy, or its defaults)."""

    countries: tuple[str, ...] = ()
    per_hour: int = VerificationPolicy.DEFAULT_PER_HOUR
    number_interval_seconds: int = VerificationPolicy.DEFAULT_NUMBER_INTERVAL_SECONDS
    number_per_hour: int = VerificationPolicy.DEFAULT_NUMBER_PER_HOUR


# --- Keys ----------------------------------------------------------------------------


@functools.cache
def _keys(secret: str) -> tuple[bytes, bytes]:
    return otp.derive_key(secret, "verify-code-digest"), otp.derive_key(secret, "verify-seal")


def _digest_key() -> bytes:
    return _keys(settings.VERIFY_SECRET)[0]


def _seal_key() -> bytes:
    return _keys(settings.VERIFY_SECRET)[1]


def text_for_phone(*, message_id: str, sealed_text: str) -> str:
    """A verification SMS's real text, for the phone that sends it. If it cannot be opened
    (VERIFY_SECRET changed since), the phone sends the masked text rather than nothing:
    that code could not be checked anyway."""
    try:
        return otp.unseal(_seal_key(), sealed_text, message_id)
    except otp.Unsealable:
        logger.warning("message %s: its sealed text cannot be opened (was VERIFY_SECRET changed?)", message_id)
        return Message.objects.filter(public_id=message_id).values_list("text", flat=True).first() or ""


# --- Policy --------------------------------------------------------------------------


def limits_for_key(*, api_key_id: int) -> Limits:
    """The key's limits: its policy row, or the defaults."""
    policy = VerificationPolicy.objects.filter(api_key_id=api_key_id).first()
    if policy is None:
        return Limits()
    return Limits(tuple(policy.countries), policy.per_hour, policy.number_interval_seconds, policy.number_per_hour)


def set_verification_policy(
    *, api_key: ApiKey, countries: list[str], per_hour: int, number_interval_seconds: int, number_per_hour: int
) -> VerificationPolicy:
    """Stores the key's limits. Raises InvalidParameter for a country that is not a two-letter
    code or a limit out of range."""
    cleaned = sorted({code.strip().upper() for code in countries if code.strip()})
    bad = [code for code in cleaned if code not in numbers.COUNTRIES]
    if bad:
        raise errors.InvalidParameter(
            f"Countries are two-letter codes such as IT; not {', '.join(bad)}.", param="countries"
        )
    if not (1 <= per_hour <= 100_000 and 1 <= number_per_hour <= 100 and 0 <= number_interval_seconds <= 3600):
        raise errors.InvalidParameter(
            "Limits: 1–100,000 verifications an hour per key, 1–100 an hour per number, 0–3,600 s between two."
        )
    policy, _created = VerificationPolicy.objects.update_or_create(
        api_key=api_key,
        defaults={
            "countries": cleaned,
            "per_hour": per_hour,
            "number_interval_seconds": number_interval_seconds,
            "number_per_hour": number_per_hour,
        },
    )
    return policy


# --- Start -----------------------------------------------------------------------------


def _in_range(name: str, value: int | None, low: int, high: int, default: int, unit: str) -> int:
    if value is None:
        return default
    if not low <= value <= high:
        raise errors.InvalidParameter(f"`{name}` must be {low} to {high} {unit}.", param=name)
    return value


def _template(template: str | None, target: selectors.SendTarget) -> str:
    if template is None:
        listed = PhoneList.objects.filter(pk=target.phone_list.id).values_list("verify_template", flat=True).first()
        template = listed or "Your code is {code}"
    if otp.PLACEHOLDER not in template:
        raise errors.InvalidParameter(
            "`template` must contain {code}: where the code goes in the SMS.", param="template"
        )
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise errors.InvalidParameter(f"`template` may be at most {MAX_TEMPLATE_LENGTH} characters.", param="template")
    return template


def _allowed_number(to: str, target: selectors.SendTarget, limits: Limits) -> str:
    """`to` as E.164, if this key may send codes to its country; raises InvalidParameter."""
    try:
        number = numbers.normalise_number(to, target.phone_list.default_country)
    except numbers.InvalidNumber as exc:
        raise errors.InvalidParameter(str(exc), param="to")
    allowed = limits.countries or (target.phone_list.default_country.upper(),)
    country = numbers.country_of(number)
    if country not in allowed:
        raise errors.InvalidParameter(
            f"This API key may send verification codes only to numbers of {', '.join(allowed)}; "
            f"{number} is a number of {country or 'no known country'}. "
            "Allow more countries for this key on the panel's Verifications page.",
            param="to",
        )
    return number


def _wait_for_slot(rows: QuerySet[Verification], *, limit: int, window: timedelta, now: datetime) -> int | None:
    """Seconds until fewer than `limit` of `rows` were created within `window` before `now`;
    None when that is so already. One row comes back (OFFSET limit-1 on the (api_key, …)
    indexes), however high the limit."""
    recent = rows.filter(created_at__gt=now - window).order_by("-created_at")
    boundary = list(recent.values_list("created_at", flat=True)[limit - 1 : limit])
    if not boundary:
        return None
    # When the limit-th newest leaves the window, one more fits.
    return max(1, math.ceil((boundary[0] + window - now).total_seconds()))


def _check_limits(*, key_id: int, to: str, limits: Limits, now: datetime) -> None:
    """Raises RateLimited (429, code 5) when the number or the key is over its limits."""
    mine = Verification.objects.filter(api_key_id=key_id)
    interval = timedelta(seconds=limits.number_interval_seconds)
    if interval and (wait := _wait_for_slot(mine.filter(to=to), limit=1, window=interval, now=now)):
        raise errors.RateLimited(
            f"A code was sent to {to} less than {limits.number_interval_seconds} seconds ago; "
            f"wait {wait} s before sending another.",
            retry_after=wait,
        )
    if wait := _wait_for_slot(mine.filter(to=to), limit=limits.number_per_hour, window=HOUR, now=now):
        raise errors.RateLimited(
            f"{to} was sent {limits.number_per_hour} codes in the last hour, the most this API key allows; "
            f"try again in {wait} s.",
            retry_after=wait,
        )
    if wait := _wait_for_slot(mine, limit=limits.per_hour, window=HOUR, now=now):
        raise errors.RateLimited(
            f"This API key may start {limits.per_hour} verifications an hour (a guard against SMS pumping); "
            f"try again in {wait} s, or raise its limit on the panel's Verifications page.",
            retry_after=wait,
        )


def _forget_texts(message_ids: list[int]) -> None:
    """Drops the sealed texts of these messages: their verification has ended."""
    Message.objects.filter(pk__in=message_ids).exclude(sealed_text="").update(sealed_text="")


def _replace_pending(*, key_id: int, to: str, now: datetime) -> None:
    """Ends this key's pending verification of `to` (its code stops working), and cancels
    its SMS with a refund if no phone has taken it yet."""
    pending = list(
        Verification.objects.filter(api_key_id=key_id, to=to, status=Status.PENDING).values_list("pk", "message_id")
    )
    if not pending:
        return
    Verification.objects.filter(pk__in=[pk for pk, _ in pending]).update(status=Status.REPLACED, ended_at=now)
    message_ids = [message_id for _, message_id in pending if message_id is not None]
    for message in Message.objects.filter(pk__in=message_ids, status=Message.Status.QUEUED):
        accept.cancel_if_queued(message=message, detail="replaced by a newer verification")
    _forget_texts(message_ids)


def start_verification(
    *,
    key: AuthenticatedKey,
    to: str,
    list_token: str | None = None,
    device_id: str | None = None,
    length: int | None = None,
    ttl: int | None = None,
    template: str | None = None,
    ref: str = "",
) -> Started:
    """Sends a fresh code to `to` through the normal accept path. A pending verification of
    the same number and key is replaced: its code stops working, and its SMS is cancelled
    (refunded) if no phone took it yet. Raises TargetNotFound, MissingTo, InvalidParameter
    (length, ttl, template, number, a country the key may not send codes to), RateLimited
    (the number's or the key's limits), InsufficientCredit or SpendingCapReached; nothing
    changes then."""
    target = accept.resolve_target(key=key, list_token=list_token, device_id=device_id)
    if not to or not to.strip():
        raise errors.MissingTo()
    length = _in_range("length", length, MIN_LENGTH, MAX_LENGTH, DEFAULT_LENGTH, "digits")
    ttl = _in_range("ttl", ttl, MIN_TTL_SECONDS, MAX_TTL_SECONDS, DEFAULT_TTL_SECONDS, "seconds")
    template = _template(template, target)
    limits = limits_for_key(api_key_id=key.id)
    number = _allowed_number(to, target, limits)
    options = accept.check_options(target=target, sim=None, ttl=ttl, send_at=None)
    code = otp.generate_code(length)
    message = accept.build_message(
        key=key, target=target, to=number, text=otp.fill(template, code), ref=ref, options=options
    )
    # From here on only the sealed text and the digest hold the code.
    message.sealed_text = otp.seal(_seal_key(), message.text, message.public_id)
    message.text = otp.mask(template, length)
    public_id = tokens.public_id(VERIFICATION_ID_PREFIX)
    digest = otp.code_digest(_digest_key(), public_id, code)
    with transaction.atomic():
        # One start at a time per key: the limits below count rows that a concurrent start
        # of the same key could otherwise add unseen (the key's row lock orders them).
        list(ApiKey.objects.select_for_update().filter(pk=key.id).values_list("pk", flat=True))
        now = timezone.now()
        _check_limits(key_id=key.id, to=number, limits=limits, now=now)
        _replace_pending(key_id=key.id, to=number, now=now)
        accepted = accept.queue_message(key=key, target=target, message=message, reason="Verification")
        verification = Verification.objects.create(
            public_id=public_id,
            account_id=key.account_id,
            api_key_id=key.id,
            message_id=message.pk,
            to=number,
            code_digest=digest,
            length=length,
            ref=message.ref,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    return Started(verification, accepted)


# --- Check -----------------------------------------------------------------------------


def _find(*, key: AuthenticatedKey, verification_id: str, to: str) -> Verification:
    if verification_id.strip():
        return selectors.get_verification_for_account(
            account_id=key.account_id, verification_id=verification_id.strip()
        )
    if not to.strip():
        raise errors.MissingTo("Give the `verification_id`, or the number `to` the code was sent to.")
    country = key.default_list[1] if key.default_list else settings.DEFAULT_COUNTRY
    try:
        number = numbers.normalise_number(to, country)
    except numbers.InvalidNumber as exc:
        raise errors.InvalidParameter(str(exc), param="to")
    return selectors.latest_verification_for_number(api_key_id=key.id, to=number)


def _end(verification: Verification, *, status: str, now: datetime, event_type: str | None) -> None:
    """Bookkeeping of a verification that just left `pending` (inside its transaction):
    its SMS's sealed text goes, and its callback is written."""
    verification.status, verification.ended_at = status, now
    if status == Status.APPROVED:
        verification.approved_at = now
    if verification.message_id is not None:
        _forget_texts([verification.message_id])
    if event_type is not None:
        callbacks.record_verification_event(verification=verification, event_type=event_type)


def _expire(verification: Verification, *, now: datetime) -> bool:
    """Ends a pending verification whose time has run out, once; True if this call did."""
    overdue = Verification.objects.filter(pk=verification.pk, status=Status.PENDING, expires_at__lte=now)
    if not overdue.update(status=Status.EXPIRED, ended_at=now):
        return False
    _end(verification, status=Status.EXPIRED, now=now, event_type=ipn_services.VERIFY_EXPIRED)
    return True


def _decide(verification: Verification, code: str, now: datetime) -> str:
    """The outcome of one check (inside its transaction). Every change is a conditional
    UPDATE of the still-open row, so concurrent checks are ordered by its row lock: at most
    one approves, and at most MAX_ATTEMPTS wrong codes are counted."""
    if verification.status != Status.PENDING:
        return Outcome.TOO_MANY_ATTEMPTS if verification.status == Status.LOCKED else Outcome.EXPIRED
    if verification.expires_at <= now:
        _expire(verification, now=now)
        return Outcome.EXPIRED
    still_open = Verification.objects.filter(
        pk=verification.pk, status=Status.PENDING, expires_at__gt=now, attempts__lt=Verification.MAX_ATTEMPTS
    )
    if otp.code_matches(_digest_key(), verification.public_id, code, verification.code_digest):
        if still_open.update(status=Status.APPROVED, approved_at=now, ended_at=now):
            _end(verification, status=Status.APPROVED, now=now, event_type=ipn_services.VERIFY_APPROVED)
            return Outcome.APPROVED
    else:
        last_try = When(attempts__gte=Verification.MAX_ATTEMPTS - 1, then=Value(Status.LOCKED))
        if still_open.update(
            attempts=F("attempts") + 1,
            status=Case(last_try, default=Value(Status.PENDING)),
            ended_at=Case(When(attempts__gte=Verification.MAX_ATTEMPTS - 1, then=Value(now)), default=None),
        ):
            verification.refresh_from_db(fields=["status", "attempts", "ended_at"])
            if verification.status == Status.LOCKED:
                _end(verification, status=Status.LOCKED, now=now, event_type=None)
                return Outcome.TOO_MANY_ATTEMPTS
            return Outcome.DENIED
    # Another check (or the expiry sweep) changed it first: answer by what it is now.
    verification.refresh_from_db(fields=["status", "attempts", "approved_at", "ended_at"])
    if verification.status == Status.LOCKED:
        return Outcome.TOO_MANY_ATTEMPTS
    if verification.status == Status.PENDING:
        _expire(verification, now=now)  # only its time can have closed it
    return Outcome.EXPIRED


def check_verification(*, key: AuthenticatedKey, code: str, verification_id: str = "", to: str = "") -> Checked:
    """Checks `code` against a verification (by id, or this key's newest for the number `to`)
    and records the check. Outcomes: approved (once per verification), denied (wrong; it
    counts), expired (its time ran out, it was replaced, or it was approved already) and
    too_many_attempts (the fifth wrong code locks it). Raises MissingTo (neither id nor
    number), NotFound, or InvalidParameter (no code; a malformed number)."""
    verification = _find(key=key, verification_id=verification_id, to=to)
    code = code.strip()
    if not code:
        raise errors.InvalidParameter("`code` is missing.", param="code")
    now = timezone.now()
    with transaction.atomic():
        outcome = _decide(verification, code, now)
        VerificationCheck.objects.create(verification=verification, outcome=outcome, at=now)
    return Checked(verification, outcome)


# --- Worker step -------------------------------------------------------------------------


def expire_one_overdue_verification() -> bool:
    """Step: ends one pending verification whose time ran out as `expired` (with its
    `verify.expired` callback). Returns "more work waiting?"."""
    now = timezone.now()
    overdue = Verification.objects.filter(status=Status.PENDING, expires_at__lte=now).order_by("expires_at").first()
    if overdue is None:
        return False
    with transaction.atomic():
        _expire(overdue, now=now)
    return True
