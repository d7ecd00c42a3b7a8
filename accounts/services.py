"""Business operations on accounts: credit, API keys, IP rules and throttles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts import errors
from accounts.lib import ipnet, tokens
from accounts.models import Account, ApiKey, LedgerEntry, LoginThrottle, User

if TYPE_CHECKING:
    from devices.models import PhoneList
    from messaging.models import Message

API_KEY_PREFIX = "pf_live"
API_KEY_CACHE_SECONDS = 300
LAST_USED_RESOLUTION = timedelta(minutes=1)


# --- Accounts -------------------------------------------------------------------


def create_account(*, email: str, name: str = "", password: str | None = None, credit: int = 0) -> tuple[Account, User]:
    """A new account with one user (its owner); `credit` is booked as a top-up."""
    with transaction.atomic():
        account = Account.objects.create(name=name or email)
        user = User(username=email, email=email, account=account)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        if credit:
            top_up_credit(account=account, amount=credit, reason="Initial credit")
    return account, user


# --- Credit ---------------------------------------------------------------------


def _change_balance(*, account_id: int, delta: int) -> int | None:
    """Add `delta` to the balance in one conditional UPDATE; the new balance, or None
    when a debit would take it below zero (another request got there first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_account SET balance = balance + %s WHERE id = %s AND balance + %s >= 0 RETURNING balance",
            [delta, account_id, delta],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def top_up_credit(*, account: Account, amount: int, reason: str = "Top-up", user: User | None = None) -> LedgerEntry:
    """Adds credit and books it; raises InvalidParameter for a non-positive amount."""
    if amount <= 0:
        raise errors.InvalidParameter("A top-up must be a positive number of credits.")
    with transaction.atomic():
        balance = _change_balance(account_id=account.pk, delta=amount)
        assert balance is not None
        return LedgerEntry.objects.create(
            account_id=account.pk,
            kind=LedgerEntry.Kind.TOPUP,
            amount=amount,
            balance_after=balance,
            reason=reason,
            created_by=user,
        )


def _check_daily_cap(*, account: Account, amount: int) -> None:
    if account.daily_spend_cap is None:
        return
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    spent = -(
        LedgerEntry.objects.filter(account_id=account.pk, kind=LedgerEntry.Kind.DEBIT, created_at__gte=start).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    if spent + amount > account.daily_spend_cap:
        raise errors.SpendingCapReached()


def debit_credit(*, account: Account, amount: int, message: Message | None = None, reason: str = "") -> LedgerEntry:
    """Takes `amount` credits in one conditional UPDATE and books the debit in the same
    transaction. Raises InsufficientCredit (nothing taken) when the balance is short."""
    _check_daily_cap(account=account, amount=amount)
    with transaction.atomic():
        balance = _change_balance(account_id=account.pk, delta=-amount)
        if balance is None:
            raise errors.InsufficientCredit(
                balance=str(Account.objects.values_list("balance", flat=True).get(pk=account.pk))
            )
        return LedgerEntry.objects.create(
            account_id=account.pk,
            kind=LedgerEntry.Kind.DEBIT,
            amount=-amount,
            balance_after=balance,
            reason=reason or "SMS",
            message=message,
        )


def debit_credit_for_messages(*, account: Account, messages: list[Message], reason: str = "Bulk send") -> int:
    """Takes the cost of all `messages` at once (one UPDATE) and books one debit per
    message. Raises InsufficientCredit when the balance does not cover them all."""
    total = sum(m.cost for m in messages)
    _check_daily_cap(account=account, amount=total)
    with transaction.atomic():
        balance = _change_balance(account_id=account.pk, delta=-total)
        if balance is None:
            raise errors.InsufficientCredit()
        running = balance + total
        entries = []
        for message in messages:
            running -= message.cost
            entries.append(
                LedgerEntry(
                    account_id=account.pk,
                    kind=LedgerEntry.Kind.DEBIT,
                    amount=-message.cost,
                    balance_after=running,
                    reason=reason,
                    message=message,
                )
            )
        LedgerEntry.objects.bulk_create(entries, batch_size=1000)
    return balance


def refund_credit(*, message: Message, reason: str) -> LedgerEntry | None:
    """Gives a message's cost back, exactly once (a unique constraint guards it).
    Returns the refund entry, or None when it was refunded before or cost nothing."""
    if message.cost <= 0:
        return None
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                account_id=message.account_id,
                kind=LedgerEntry.Kind.REFUND,
                amount=message.cost,
                balance_after=0,
                reason=reason,
                message=message,
            )
            balance = _change_balance(account_id=message.account_id, delta=message.cost)
            assert balance is not None
            LedgerEntry.objects.filter(pk=entry.pk).update(balance_after=balance)
            entry.balance_after = balance
            return entry
    except IntegrityError:
        return None  # refunded before: the unique (message, refund) constraint held


def reverse_refund(*, message: Message, reason: str) -> LedgerEntry | None:
    """Charges a refunded message again, because it was really sent after all (R21).
    May take the balance only to zero; returns None if there was no refund to reverse."""
    if not LedgerEntry.objects.filter(message=message, kind=LedgerEntry.Kind.REFUND).exists():
        return None
    try:
        with transaction.atomic():
            balance = _change_balance(account_id=message.account_id, delta=-message.cost)
            amount = message.cost
            if balance is None:
                # Not enough left: take what there is (never below zero) and say so.
                current = (
                    Account.objects.select_for_update().values_list("balance", flat=True).get(pk=message.account_id)
                )
                amount = int(current)
                balance = _change_balance(account_id=message.account_id, delta=-amount)
                assert balance is not None
                reason = f"{reason} (only {amount} credits were left)"
            return LedgerEntry.objects.create(
                account_id=message.account_id,
                kind=LedgerEntry.Kind.REVERSAL,
                amount=-amount,
                balance_after=balance,
                reason=reason,
                message=message,
            )
    except IntegrityError:
        return None


# --- API keys -------------------------------------------------------------------


@dataclass(frozen=True)
class AuthenticatedKey:
    """What the hot path needs to know about a key, cached by digest."""

    id: int
    account_id: int
    name: str
    allowed_ips: tuple[str, ...]
    cors_origins: tuple[str, ...]
    default_list_id: int | None
    rate_limit_per_minute: int | None


def _key_cache_name(digest: str) -> str:
    return f"apikey:{digest}"


def create_api_key(
    *,
    account: Account,
    name: str,
    allowed_ips: list[str] | None = None,
    cors_origins: list[str] | None = None,
    default_list: PhoneList | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is shown this once and never stored.
    Raises InvalidParameter for a bad IP rule or origin."""
    if default_list is not None and default_list.account_id != account.pk:
        raise errors.TargetNotFound()
    secret = tokens.generate_token(API_KEY_PREFIX)
    key = ApiKey.objects.create(
        account=account,
        name=name or "API",
        prefix=secret[: len(API_KEY_PREFIX) + 5],
        digest=tokens.token_digest(secret, settings.API_KEY_SECRET),
        allowed_ips=clean_ip_rules(allowed_ips or []),
        cors_origins=clean_origins(cors_origins or []),
        default_list=default_list,
    )
    return key, secret


def update_api_key(
    *,
    key: ApiKey,
    name: str | None = None,
    allowed_ips: list[str] | None = None,
    cors_origins: list[str] | None = None,
    default_list: PhoneList | bool | None = False,
    rate_limit_per_minute: int | bool | None = False,
) -> ApiKey:
    """Changes a key's settings (False = leave as is); takes effect on the next request."""
    fields = []
    if name is not None:
        key.name = name
        fields.append("name")
    if allowed_ips is not None:
        key.allowed_ips = clean_ip_rules(allowed_ips)
        fields.append("allowed_ips")
    if cors_origins is not None:
        key.cors_origins = clean_origins(cors_origins)
        fields.append("cors_origins")
    if default_list is not False:
        if (
            default_list is not None
            and not isinstance(default_list, bool)
            and default_list.account_id != key.account_id
        ):
            raise errors.TargetNotFound()
        key.default_list = default_list if not isinstance(default_list, bool) else None
        fields.append("default_list")
    if rate_limit_per_minute is not False:
        key.rate_limit_per_minute = None if isinstance(rate_limit_per_minute, bool) else rate_limit_per_minute
        fields.append("rate_limit_per_minute")
    if fields:
        key.save(update_fields=fields)
        cache.delete(_key_cache_name(key.digest))
    return key


def revoke_api_key(*, key: ApiKey) -> None:
    """Revokes the key at once (its cache entry goes too)."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    cache.delete(_key_cache_name(key.digest))


def authenticate_api_key(*, secret: str | None) -> AuthenticatedKey:
    """The active key for this secret, from the cache when possible.
    Raises InvalidApiKey; a checksum typo is refused without a database query."""
    if not secret or not tokens.has_valid_checksum(secret, API_KEY_PREFIX):
        raise errors.InvalidApiKey()
    digest = tokens.token_digest(secret, settings.API_KEY_SECRET)
    cache_name = _key_cache_name(digest)
    found = cache.get(cache_name)
    if found is None:
        row = (
            ApiKey.objects.filter(digest=digest, revoked_at__isnull=True, account__is_active=True)
            .values_list(
                "id", "account_id", "name", "allowed_ips", "cors_origins", "default_list_id", "rate_limit_per_minute"
            )
            .first()
        )
        if row is None:
            raise errors.InvalidApiKey()
        found = AuthenticatedKey(row[0], row[1], row[2], tuple(row[3]), tuple(row[4]), row[5], row[6])
        cache.set(cache_name, found, API_KEY_CACHE_SECONDS)
    if cache.add(f"apikey-used:{found.id}", 1, int(LAST_USED_RESOLUTION.total_seconds())):
        ApiKey.objects.filter(pk=found.id).update(last_used_at=timezone.now())
    return found


def check_ip(*, key: AuthenticatedKey, ip: str) -> int:
    """The SPEC status code that lets the call through: 1 (IP on the allow-list) or 2
    (the key allows any IP). Raises IpNotAllowed."""
    if not key.allowed_ips:
        return 2
    if ipnet.address_allowed(ip, key.allowed_ips):
        return 1
    raise errors.IpNotAllowed()


def clean_ip_rules(values: list[str]) -> list[str]:
    """Canonical CIDR strings; raises InvalidParameter naming the bad entry."""
    try:
        return ipnet.normalise_networks(values)
    except ValueError as exc:
        raise errors.InvalidParameter(str(exc)) from exc


def clean_origins(values: list[str]) -> list[str]:
    """Origins such as ``https://shop.example`` (scheme://host[:port], no path)."""
    cleaned: list[str] = []
    for value in values:
        origin = value.strip().rstrip("/")
        if not origin:
            continue
        if origin != "*":
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise errors.InvalidParameter(f"{value!r} is not an origin like https://example.com")
        if origin not in cleaned:
            cleaned.append(origin)
    return cleaned


# --- Throttles for guessable secrets (PINs, passwords) ---------------------------


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: timedelta
    first_lockout: timedelta
    max_lockout: timedelta


def check_throttle(*, scope: str) -> None:
    """Raises RateLimited while the scope is locked out."""
    locked_until = LoginThrottle.objects.filter(scope=scope).values_list("locked_until", flat=True).first()
    now = timezone.now()
    if locked_until and locked_until > now:
        raise errors.RateLimited(
            "Too many wrong attempts; try again later.", retry_after=int((locked_until - now).total_seconds()) + 1
        )


def reserve_attempt(*, scope: str, policy: ThrottlePolicy) -> None:
    """Counts an attempt before it is evaluated, atomically, so concurrent guesses cannot
    all slip through; raises RateLimited when the scope is locked or the window is full."""
    check_throttle(scope=scope)
    now = timezone.now()
    LoginThrottle.objects.get_or_create(scope=scope, defaults={"window_started_at": now})
    LoginThrottle.objects.filter(scope=scope, window_started_at__lt=now - policy.window).exclude(
        locked_until__gt=now
    ).update(failures=0, window_started_at=now)
    # One conditional UPDATE: only callers under the limit get a slot.
    got_slot = LoginThrottle.objects.filter(scope=scope, failures__lt=policy.max_failures).update(
        failures=F("failures") + 1
    )
    if not got_slot:
        row = LoginThrottle.objects.get(scope=scope)
        lockout = min(policy.first_lockout * (2**row.lockouts), policy.max_lockout)
        LoginThrottle.objects.filter(pk=row.pk).exclude(locked_until__gt=now).update(
            locked_until=now + lockout, lockouts=F("lockouts") + 1
        )
        raise errors.RateLimited("Too many wrong attempts; try again later.", retry_after=int(lockout.total_seconds()))


def release_attempt(*, scope: str) -> None:
    """Gives back a reserved attempt that turned out to be right."""
    LoginThrottle.objects.filter(scope=scope, failures__gt=0).update(failures=F("failures") - 1)
