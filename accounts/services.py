"""Business operations on accounts: credit, API keys, IP rules and throttles."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import cache, caches
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, PositiveIntegerField, Q, When
from django.utils import timezone
from django_redis import get_redis_connection
from django_redis.cache import RedisCache

from accounts import columns, errors, metrics
from accounts.lib import ipnet, redisscript, sqlnames, tokens
from accounts.models import Account, ApiKey, LedgerEntry, LoginThrottle, User


class Charged(Protocol):
    """What credit needs of a message (the messaging app's `Message` fits): the ledger
    names it, the refund gives its cost back to its account."""

    @property
    def pk(self) -> Any: ...
    @property
    def account_id(self) -> int: ...
    @property
    def cost(self) -> int: ...


class Owned(Protocol):
    """A row of one account, such as the devices app's `PhoneList` (a key's default list)."""

    @property
    def pk(self) -> Any: ...
    @property
    def account_id(self) -> int: ...


API_KEY_PREFIX = "pf_live"
API_KEY_CACHE_SECONDS = 300
# The per-key rate limit counts calls per clock minute.
CALL_WINDOW_SECONDS = 60
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


def set_account_active(*, account: Account, active: bool) -> bool:
    """Switches the account on or off; True if that changed it. Off, its API keys stop at
    once (their cached entries are dropped now and again after commit, so a request that
    read the key meanwhile cannot keep it cached), debits refuse it, and its users' panel
    pages and sign-in refuse them. Its phones: `devices.services.deactivate_account`."""
    changed = bool(Account.objects.filter(pk=account.pk, is_active=not active).update(is_active=active))
    account.is_active = active
    if changed and not active:
        names = [
            _key_cache_name(digest)
            for digest in ApiKey.objects.filter(account_id=account.pk).values_list("digest", flat=True)
        ]
        cache.delete_many(names)
        transaction.on_commit(lambda: cache.delete_many(names))
    return changed


# --- Credit ---------------------------------------------------------------------


# Credit coming in (a top-up, a refund): the balance after it and what is still owed.
_ADD_CREDIT_SQL = (
    "UPDATE {Account} SET {Account.balance} = {Account.balance} + %s"
    " WHERE {Account.id} = %s RETURNING {Account.balance}, {Account.debt}"
)


@functools.cache
def _sql(template: str, vendor: str, **arguments: str) -> str:
    """`template` with the accounts models' table and column names (formatted once)."""
    quote = connection.ops.quote_name
    return sqlnames.sql(template, quote=quote, Account=Account, LedgerEntry=LedgerEntry, **arguments)


def _add_credit(*, account_id: int, amount: int) -> tuple[int, int]:
    """Adds `amount` (positive) to the balance in one UPDATE, which holds the account's row
    until the transaction ends; returns the balance and the debt after it."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_ADD_CREDIT_SQL, connection.vendor), [amount, account_id])
        balance, debt = cursor.fetchone()
    return int(balance), int(debt)


def _repay_debt(*, account_id: int, balance: int, debt: int, user: User | None = None) -> None:
    """Inside the transaction that just added credit (the row is held): repays what the
    balance covers of the debt, with its `repayment` entry."""
    repaid = min(balance, debt)
    if repaid <= 0:
        return
    Account.objects.filter(pk=account_id).update(balance=F("balance") - repaid, debt=F("debt") - repaid)
    left = debt - repaid
    LedgerEntry.objects.create(
        account_id=account_id,
        kind=LedgerEntry.Kind.REPAYMENT,
        amount=-repaid,
        debt_change=-repaid,
        balance_after=balance - repaid,
        reason="Repays the debt" + (f"; {left} credits still owed" if left else ""),
        created_by=user,
    )


def top_up_credit(*, account: Account, amount: int, reason: str = "Top-up", user: User | None = None) -> LedgerEntry:
    """Adds credit and books it; a debt is repaid from it first (a `repayment` entry).
    Returns the top-up entry; raises InvalidParameter for a non-positive amount."""
    if amount <= 0:
        raise errors.InvalidParameter("A top-up must be a positive number of credits.")
    with transaction.atomic():
        balance, debt = _add_credit(account_id=account.pk, amount=amount)
        entry = LedgerEntry.objects.create(
            account_id=account.pk,
            kind=LedgerEntry.Kind.TOPUP,
            amount=amount,
            balance_after=balance,
            reason=reason,
            created_by=user,
        )
        _repay_debt(account_id=account.pk, balance=balance, debt=debt, user=user)
        return entry


# One conditional UPDATE takes credit, only where the balance covers it, nothing is owed
# (a debt stops sending until credit coming in repays it) and the day's spending stays
# within the cap (counted on the row itself, so concurrent debits cannot pass the cap
# either). `{amount}` is an SQL expression: a parameter, or parts × the account's price.
# In SET, every column reads the row as it was before the UPDATE.
_DEBIT_SQL = """
UPDATE {Account} SET
    {Account.balance} = {Account.balance} - {amount},
    {Account.spent_that_day} = {spent_today} + {amount},
    {Account.spent_on} = %(today)s
WHERE {Account.id} = %(account)s AND {Account.is_active}
  AND {Account.balance} >= {amount} AND {Account.debt} = 0
  AND ({Account.daily_spend_cap} IS NULL OR {spent_today} + {amount} <= {Account.daily_spend_cap})
RETURNING {Account.balance} AS balance, {Account.price_per_part} AS price_per_part
"""
# What the account spent today before this debit (the counter restarts each UTC day).
_SPENT_TODAY = "(CASE WHEN {Account.spent_on} = %(today)s THEN {Account.spent_that_day} ELSE 0 END)"
# Parts × price, in 64 bits: a bulk send of 10,000 ten-part messages at a high price would
# pass a 32-bit integer.
PARTS_PRICE = "CAST(%(parts)s AS BIGINT) * {Account.price_per_part}"


def _debit_sql(*, amount: str) -> str:
    """The debit UPDATE taking `amount` (an SQL expression of `_DEBIT_SQL`'s parameters)."""
    vendor = connection.vendor
    return _sql(_DEBIT_SQL, vendor, amount=_sql(amount, vendor), spent_today=_sql(_SPENT_TODAY, vendor))


@dataclass(frozen=True)
class Debit:
    """What a debit took: the balance left and the price per part it was charged at."""

    balance: int
    price_per_part: int


def _today() -> date:
    return timezone.now().date()


def _refusal(
    *, account_id: int, today: date, amount: int | None = None, parts: int | None = None
) -> errors.DomainError:
    """Why a debit was refused: read after the fact, so only the wording can be off by a race."""
    state = Account.objects.values(
        "is_active", "balance", "debt", "price_per_part", "daily_spend_cap", "spent_on", "spent_that_day"
    ).get(pk=account_id)
    if not state["is_active"]:
        return errors.InvalidApiKey("This account has been deactivated.")
    if state["debt"] > 0:
        return errors.InsufficientCredit(
            f"The account owes {state['debt']} credits for messages that were sent after they had been"
            " refunded; sending resumes once it is repaid (a top-up repays it first).",
            balance=str(state["balance"]),
            debt=str(state["debt"]),
        )
    wanted = amount if amount is not None else (parts or 0) * state["price_per_part"]
    spent = state["spent_that_day"] if state["spent_on"] == today else 0
    if state["daily_spend_cap"] is not None and spent + wanted > state["daily_spend_cap"]:
        return errors.SpendingCapReached()
    return errors.InsufficientCredit(balance=str(state["balance"]))


def _take_credit(*, account_id: int, amount: int | None = None, parts: int | None = None) -> Debit:
    """Takes `amount` credits, or `parts` × the account's price, in one conditional UPDATE.
    Raises SpendingCapReached or InsufficientCredit (nothing taken)."""
    today = _today()
    expression = "CAST(%(amount)s AS BIGINT)" if amount is not None else PARTS_PRICE
    with connection.cursor() as cursor:
        cursor.execute(
            _debit_sql(amount=expression),
            {"amount": amount, "parts": parts, "today": today, "account": account_id},
        )
        row = cursor.fetchone()
    if row is None:
        raise _refusal(account_id=account_id, today=today, amount=amount, parts=parts)
    return Debit(int(row[0]), int(row[1]))


# The debit entries of charged messages (their rows follow: VALUES or a SELECT).
_BOOK_DEBITS_SQL = (
    "INSERT INTO {LedgerEntry} ({LedgerEntry.account}, {LedgerEntry.kind}, {LedgerEntry.amount},"
    " {LedgerEntry.balance_after}, {LedgerEntry.reason}, {LedgerEntry.message}, {LedgerEntry.created_at})"
)


def charge_in_one_statement(
    *, account_id: int, parts: int, reason: str, insert_sql: str, insert_params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """PostgreSQL: takes `parts` × the account's price, runs the caller's INSERT of what is
    charged for, and books one debit entry per inserted row, all in one statement (no
    transaction round trips, and the balance row is locked only while it runs).

    `insert_sql` reads the CTE `debit(balance, price_per_part)` (one row only when the
    credit was taken: select FROM it, so nothing is inserted otherwise) and returns
    `id, cost` first. Returns its rows, each followed by the balance left. Raises
    InsufficientCredit or SpendingCapReached (nothing taken, nothing inserted)."""
    today = _today()
    statement = f"""
        WITH debit AS ({_debit_sql(amount=PARTS_PRICE)}),
        charged AS ({insert_sql}),
        booked AS (
            {_sql(_BOOK_DEBITS_SQL, connection.vendor)}
            SELECT %(account)s, %(debit_kind)s, -charged.cost,
                   debit.balance + SUM(charged.cost) OVER () - SUM(charged.cost) OVER (ORDER BY charged.id),
                   %(reason)s, charged.id, %(now)s
            FROM charged, debit
        )
        SELECT charged.*, debit.balance FROM charged, debit
    """  # noqa: S608 (SQL text from this module and the caller; every value is a parameter)
    params = {
        **insert_params,
        "parts": parts,
        "today": today,
        "account": account_id,
        "debit_kind": LedgerEntry.Kind.DEBIT.value,  # a plain str: psycopg adapts an enum's subclass slowly
        "reason": reason,
        "now": timezone.now(),
    }
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if not rows:
        raise _refusal(account_id=account_id, today=today, parts=parts)
    metrics.count_debits(entries=len(rows), credits=sum(row[1] for row in rows))
    return rows


def debit_credit(*, account: Account, amount: int, message: Charged | None = None, reason: str = "") -> LedgerEntry:
    """Takes `amount` credits in one conditional UPDATE and books the debit in the same
    transaction. Raises InsufficientCredit or SpendingCapReached (nothing taken)."""
    with transaction.atomic():
        debit = _take_credit(account_id=account.pk, amount=amount)
        entry = LedgerEntry.objects.create(
            account_id=account.pk,
            kind=LedgerEntry.Kind.DEBIT,
            amount=-amount,
            balance_after=debit.balance,
            reason=reason or "SMS",
            message_id=message.pk if message is not None else None,
        )
    metrics.count_debits(entries=1, credits=amount)
    return entry


def charge_for_parts(*, account_id: int, parts: int) -> Debit:
    """Takes `parts` × the account's price per part in one conditional UPDATE; call inside
    the transaction that stores what is charged, then `book_message_debits`. Raises
    InsufficientCredit or SpendingCapReached (nothing taken)."""
    return _take_credit(account_id=account_id, parts=parts)


def book_message_debits(*, account_id: int, messages: Sequence[Charged], balance: int, reason: str) -> None:
    """Books one debit entry per stored message (their costs were taken by `charge_for_parts`,
    leaving `balance`), with the running balance after each. (PostgreSQL does this inside
    `charge_in_one_statement`.)"""
    now = timezone.now()
    running = balance + sum(m.cost for m in messages)
    rows = []
    for message in messages:
        running -= message.cost
        rows.append((account_id, LedgerEntry.Kind.DEBIT, -message.cost, running, reason, message.pk, now))
    with connection.cursor() as cursor:
        cursor.executemany(_sql(_BOOK_DEBITS_SQL, connection.vendor) + " VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    metrics.count_debits(entries=len(rows), credits=sum(m.cost for m in messages))


def refund_credit(*, message: Charged, reason: str) -> LedgerEntry | None:
    """Gives a message's cost back, exactly once (a unique constraint guards it); a debt is
    repaid from it first. Returns the refund entry, or None when it was refunded before or cost nothing."""
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
                message_id=message.pk,
            )
            balance, debt = _add_credit(account_id=message.account_id, amount=message.cost)
            LedgerEntry.objects.filter(pk=entry.pk).update(balance_after=balance)
            entry.balance_after = balance
            _repay_debt(account_id=message.account_id, balance=balance, debt=debt)
            return entry
    except IntegrityError:
        return None  # refunded before: the unique (message, refund) constraint held


def reverse_refund(*, message: Charged, reason: str) -> LedgerEntry | None:
    """Charges a refunded message again, because it was really sent after all: its cost
    comes from the balance, and what the balance no longer covers is owed (`debt`), which
    stops sending until a top-up repays it. The balance never goes below zero, and a sent
    message is always paid for (R32). Returns the reversal entry, or None if there was no
    refund to reverse (or it was reversed before)."""
    if not LedgerEntry.objects.filter(message_id=message.pk, kind=LedgerEntry.Kind.REFUND).exists():
        return None
    try:
        with transaction.atomic():
            # Locked: how much is taken and how much owed depends on the balance as it is now.
            balance = Account.objects.select_for_update().values_list("balance", flat=True).get(pk=message.account_id)
            taken = min(int(balance), message.cost)
            owed = message.cost - taken
            Account.objects.filter(pk=message.account_id).update(balance=F("balance") - taken, debt=F("debt") + owed)
            return LedgerEntry.objects.create(
                account_id=message.account_id,
                kind=LedgerEntry.Kind.REVERSAL,
                amount=-taken,
                debt_change=owed,
                balance_after=balance - taken,
                reason=f"{reason} ({owed} credits owed until the next top-up)" if owed else reason,
                message_id=message.pk,
            )
    except IntegrityError:
        return None  # reversed before: the unique (message, reversal) constraint held


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
    # The default list's token, default country and default TTL, cached with the key so a
    # send to it needs no other lookup (a change to the list drops the key's entry).
    default_list: tuple[str, str, int] | None = None


def _key_cache_name(digest: str) -> str:
    return f"apikey:{digest}"


def create_api_key(
    *,
    account: Account,
    name: str,
    allowed_ips: list[str] | None = None,
    cors_origins: list[str] | None = None,
    default_list: Owned | None = None,
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
        default_list_id=default_list.pk if default_list is not None else None,
    )
    return key, secret


def update_api_key(
    *,
    key: ApiKey,
    name: str | None = None,
    allowed_ips: list[str] | None = None,
    cors_origins: list[str] | None = None,
    default_list: Owned | bool | None = False,
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
        key.default_list_id = default_list.pk if default_list and not isinstance(default_list, bool) else None
        fields.append("default_list")
    if rate_limit_per_minute is not False:
        if not isinstance(rate_limit_per_minute, bool) and rate_limit_per_minute is not None:
            columns.check_integer(rate_limit_per_minute, ApiKey, "rate_limit_per_minute", param="rate_limit_per_minute")
        key.rate_limit_per_minute = None if isinstance(rate_limit_per_minute, bool) else rate_limit_per_minute
        fields.append("rate_limit_per_minute")
    if fields:
        key.save(update_fields=fields)
        cache.delete(_key_cache_name(key.digest))
    return key


def forget_keys_of_list(*, phone_list_id: int) -> None:
    """Drops the cached keys whose default list this is (their entries carry its settings)."""
    digests = ApiKey.objects.filter(default_list_id=phone_list_id).values_list("digest", flat=True)
    cache.delete_many([_key_cache_name(digest) for digest in digests])


def revoke_api_key(*, key: ApiKey) -> None:
    """Revokes the key at once (its cache entry goes too)."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    cache.delete(_key_cache_name(key.digest))


@dataclass(frozen=True)
class ApiCall:
    """An authenticated API call: its key, and the key's calls so far in this clock minute
    (this one included), for the per-key rate limit."""

    key: AuthenticatedKey
    calls_this_minute: int


# One Redis command per API call: count the call in this minute's window (the window's
# counter expires after it), mark the key used (at most once per LAST_USED_RESOLUTION),
# and read the cached key.
_CALL_SCRIPT = """
local calls = redis.call('INCR', KEYS[2])
if calls == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
local first_use = redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[2])
return {redis.call('GET', KEYS[1]), calls, first_use and 1 or 0}
"""


_call_script = redisscript.ThreadScript(_CALL_SCRIPT)


def _call_state(digest: str) -> tuple[AuthenticatedKey | None, int, bool]:
    """One cache round trip per API call: the cached key (None when not cached), the calls
    counted for this digest in this minute, and whether this is its first call within
    LAST_USED_RESOLUTION. With Redis it is one script (EVALSHA)."""
    names = (
        _key_cache_name(digest),
        f"apicalls:{digest}:{int(time.time() // CALL_WINDOW_SECONDS)}",
        f"apikey-used:{digest}",
    )
    used_seconds = int(LAST_USED_RESOLUTION.total_seconds())
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        raw, count, first_use = _call_script(
            get_redis_connection("default").connection_pool,
            keys=[backend.make_key(name) for name in names],
            args=[CALL_WINDOW_SECONDS + 10, used_seconds],
        )
        found = _decoded_key(raw) if raw is not None else None
        return found, int(count), bool(first_use)
    found = cache.get(names[0])
    if cache.add(names[1], 1, CALL_WINDOW_SECONDS + 10):
        count = 1
    else:
        try:
            count = cache.incr(names[1])
        except ValueError:  # expired between add and incr
            cache.add(names[1], 1, CALL_WINDOW_SECONDS + 10)
            count = 1
    return found, count, cache.add(names[2], 1, used_seconds)


@functools.lru_cache(maxsize=1024)
def _decoded_key(raw: bytes) -> AuthenticatedKey:
    """A cached key as Redis holds it, decoded once per process: the same bytes always
    decode to the same (frozen) key, and a changed or dropped entry is other bytes or none,
    so nothing here outlives Redis's copy. Unpickling it on every call cost about as much
    CPU as the call's round trip to Redis."""
    found: AuthenticatedKey = caches["default"].client.decode(raw)  # type: ignore[attr-defined]
    return found


def authenticate_api_call(*, secret: str | None) -> ApiCall:
    """The active key for this secret (cached), and the call counted against its rate.
    Raises InvalidApiKey; a checksum typo is refused without a query or a cache call."""
    if not secret or not tokens.has_valid_checksum(secret, API_KEY_PREFIX):
        raise errors.InvalidApiKey()
    return _counted_call(tokens.token_digest(secret, settings.API_KEY_SECRET))


def authenticate_api_call_by_id(*, key_id: int) -> ApiCall:
    """As `authenticate_api_call`, for a key known by its id (a credential issued to the key,
    such as an SMSGate access token): the same checks, cache and rate count, plus one query
    for the key's digest. Raises InvalidApiKey when the key is revoked or gone."""
    digest = (
        ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True, account__is_active=True)
        .values_list("digest", flat=True)
        .first()
    )
    if digest is None:
        raise errors.InvalidApiKey()
    return _counted_call(digest)


def _counted_call(digest: str) -> ApiCall:
    found, count, first_use = _call_state(digest)
    if found is None:
        row = (
            ApiKey.objects.filter(digest=digest, revoked_at__isnull=True, account__is_active=True)
            .values_list(
                "id",
                "account_id",
                "name",
                "allowed_ips",
                "cors_origins",
                "default_list_id",
                "rate_limit_per_minute",
                "default_list__token",
                "default_list__default_country",
                "default_list__default_ttl_seconds",
            )
            .first()
        )
        if row is None:
            raise errors.InvalidApiKey()
        default_list = (row[7], row[8], row[9]) if row[5] is not None else None
        found = AuthenticatedKey(row[0], row[1], row[2], tuple(row[3]), tuple(row[4]), row[5], row[6], default_list)
        cache.set(_key_cache_name(digest), found, API_KEY_CACHE_SECONDS)
    if first_use:
        ApiKey.objects.filter(pk=found.id).update(last_used_at=timezone.now())
    return ApiCall(found, count)


def count_call_this_minute(*, name: str) -> int:
    """Counts one call of `name` (a credential that is not an API key, such as an SMSGate
    list login) in this clock minute's window and returns the count, this call included:
    the same window as an API key's rate limit (`enforce_rate_limit` reads it)."""
    window = f"calls:{name}:{int(time.time() // CALL_WINDOW_SECONDS)}"
    if cache.add(window, 1, CALL_WINDOW_SECONDS + 10):
        return 1
    try:
        return int(cache.incr(window))
    except ValueError:  # expired between add and incr
        cache.add(window, 1, CALL_WINDOW_SECONDS + 10)
        return 1


def authenticate_api_key(*, secret: str | None) -> AuthenticatedKey:
    """The active key for this secret (see `authenticate_api_call`). Raises InvalidApiKey."""
    return authenticate_api_call(secret=secret).key


def check_ip(*, key: AuthenticatedKey, ip: str) -> int:
    """The API status code (docs/api.md) that lets the call through: 1 (IP on the allow-list) or 2
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


# --- Throttles for guessable secrets (PINs, passwords, codes) ---------------------
#
# A scope (an address, a username, everyone) may have at most `max_failures` wrong attempts
# in a window; the attempt that reaches it locks the scope out, for a time that doubles
# with each lockout up to `max_lockout`. Only wrong attempts count: a right one never brings
# anyone closer to a lockout. So that concurrent guesses cannot all be evaluated before the
# first is counted, an attempt holds a slot while it is checked (`pending`): at most
# `max_failures - failures` attempts are checked at once, and the others wait for a slot
# (briefly; then "busy", never a lockout).


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: timedelta
    first_lockout: timedelta
    max_lockout: timedelta
    # False for a scope every attempt shares (everyone's): it only counts wrong attempts and
    # locks, without slots, so right attempts never write its one row (a hot spot). The
    # per-address scope checked with it still bounds how many are checked at once.
    holds_slots: bool = True


_COUNT = PositiveIntegerField()
# How long an attempt waits for a slot while others of its scope are being checked.
THROTTLE_WAIT_SECONDS = 10.0


def check_throttle(*, scope: str) -> None:
    """Raises RateLimited while the scope is locked out."""
    locked_until = LoginThrottle.objects.filter(scope=scope).values_list("locked_until", flat=True).first()
    now = timezone.now()
    if locked_until and locked_until > now:
        raise errors.RateLimited(
            "Too many wrong attempts; try again later.", retry_after=math.ceil((locked_until - now).total_seconds())
        )


def _not_locked(now: datetime) -> Q:
    return Q(locked_until__isnull=True) | Q(locked_until__lte=now)


def _open_window(*, scope: str, policy: ThrottlePolicy, now: datetime) -> None:
    """The scope's row, with its window started again if it has passed."""
    LoginThrottle.objects.get_or_create(scope=scope, defaults={"window_started_at": now})
    # A window that has passed starts again (a slot still held then is forgotten: that
    # only matters when a process died holding it); lockouts stop growing after a quiet spell.
    LoginThrottle.objects.filter(_not_locked(now), scope=scope, window_started_at__lt=now - policy.window).update(
        failures=0,
        pending=0,
        window_started_at=now,
        lockouts=Case(
            When(locked_until__lt=now - policy.max_lockout, then=0), default=F("lockouts"), output_field=_COUNT
        ),
    )


def _take_slot(*, scope: str, policy: ThrottlePolicy) -> bool:
    """One try at a slot for checking an attempt; raises RateLimited while locked out."""
    check_throttle(scope=scope)
    now = timezone.now()
    _open_window(scope=scope, policy=policy, now=now)
    # One conditional UPDATE: only attempts that cannot pass the limit get a slot.
    return bool(
        LoginThrottle.objects.filter(_not_locked(now), scope=scope)
        .filter(failures__lt=policy.max_failures - F("pending"))
        .update(pending=F("pending") + 1)
    )


def reserve_attempt(*, scope: str, policy: ThrottlePolicy) -> None:
    """Holds a slot for checking one attempt (give it back with `settle_attempt`), waiting
    while other attempts of the scope hold every slot. Raises RateLimited while the scope
    is locked out, or (with a short Retry-After, no lockout) when no slot came free.
    A policy without slots (`holds_slots=False`) is only checked for a lockout."""
    if not policy.holds_slots:
        check_throttle(scope=scope)
        return
    deadline = time.monotonic() + THROTTLE_WAIT_SECONDS
    pause = 0.005
    while not _take_slot(scope=scope, policy=policy):
        if time.monotonic() + pause > deadline:
            raise errors.RateLimited("Too many attempts at once; try again in a moment.", retry_after=1)
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.2)


def settle_attempt(*, scope: str, policy: ThrottlePolicy, wrong: bool) -> None:
    """Gives back the slot of a checked attempt. A wrong one is counted, and the one that
    reaches the limit locks the scope out; the count starts again when the lockout ends,
    so a lockout ends when it says it does."""
    if not wrong:
        if policy.holds_slots:
            LoginThrottle.objects.filter(scope=scope, pending__gt=0).update(pending=F("pending") - 1)
        return
    if not policy.holds_slots:
        _open_window(scope=scope, policy=policy, now=timezone.now())
    LoginThrottle.objects.filter(scope=scope).update(
        pending=Case(When(pending__gt=0, then=F("pending") - 1), default=0, output_field=_COUNT),
        failures=F("failures") + 1,
    )
    now = timezone.now()
    row = LoginThrottle.objects.filter(scope=scope).values("failures", "lockouts").first()
    if row is None or row["failures"] < policy.max_failures:
        return
    lockout = min(policy.first_lockout * (2 ** row["lockouts"]), policy.max_lockout)
    # Only the attempt that reached the limit locks (the count is reset with it).
    LoginThrottle.objects.filter(_not_locked(now), scope=scope, failures__gte=policy.max_failures).update(
        locked_until=now + lockout, window_started_at=now + lockout, failures=0, lockouts=F("lockouts") + 1
    )


@contextlib.contextmanager
def guarded_attempt(
    scopes: Sequence[tuple[str, ThrottlePolicy]], *, wrong: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Runs the check in the `with` block holding a slot in every scope (in order). An
    exception of a `wrong` type counts as a wrong attempt in each; anything else (success,
    another error) gives the slots back. Raises RateLimited as `reserve_attempt` does."""
    held: list[tuple[str, ThrottlePolicy]] = []
    try:
        for scope, policy in scopes:
            reserve_attempt(scope=scope, policy=policy)
            held.append((scope, policy))
    except errors.RateLimited:
        for scope, policy in held:
            settle_attempt(scope=scope, policy=policy, wrong=False)
        raise
    is_wrong = False
    try:
        yield
    except wrong:
        is_wrong = True
        raise
    finally:
        for scope, policy in held:
            settle_attempt(scope=scope, policy=policy, wrong=is_wrong)


def count_request(*, scope: str, limit: int, window: timedelta) -> None:
    """Counts one request of the scope in its window (every one counts, right or wrong);
    raises RateLimited, until the window ends, once `limit` were counted."""
    now = timezone.now()
    LoginThrottle.objects.get_or_create(scope=scope, defaults={"window_started_at": now})
    LoginThrottle.objects.filter(scope=scope, window_started_at__lte=now - window).update(
        failures=0, window_started_at=now
    )
    if not LoginThrottle.objects.filter(scope=scope, failures__lt=limit).update(failures=F("failures") + 1):
        started = LoginThrottle.objects.values_list("window_started_at", flat=True).get(scope=scope)
        wait = max(int((started + window - now).total_seconds()) + 1, 1)
        raise errors.RateLimited("Too many requests; try again later.", retry_after=wait)


def address_scope(prefix: str, client_ip: str) -> str:
    """A throttle scope per client address; IPv6 addresses count per /64 (one subscriber
    gets a whole /64, so counting single addresses would not limit anyone)."""
    parsed = ipnet.parse_address(client_ip)
    if parsed is None:
        return f"{prefix}:{client_ip[:60]}"
    if parsed.version == 6:
        return f"{prefix}:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"{prefix}:{parsed}"
