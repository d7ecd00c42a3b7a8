"""Accepting messages (one, or a bulk batch) and cancelling them.

The checks run in the order of concern docs/api.md gives: target (code 6), number present (7),
text present (8), every other parameter (5), then credit (9). Credit for all parts is
taken by one conditional UPDATE in the transaction that inserts the message; phones
hear about it only after commit.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts import errors
from accounts import services as account_services
from accounts.lib import tokens
from accounts.services import AuthenticatedKey
from devices import selectors as device_selectors
from messaging import metrics, selectors
from messaging.lib import numbers, segments
from messaging.models import Message, MessageEvent
from messaging.services import callbacks, offers

MESSAGE_ID_PREFIX = "msg"
BATCH_ID_PREFIX = "bat"
# limits; each is refused with code 5 (HTTP 400).
MAX_PARTS = 10
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_SCHEDULE_AHEAD = timedelta(days=30)
MAX_SIM = 4
MAX_REF_LENGTH = 255
MAX_BULK_ROWS = 10_000
BULK_BATCH_SIZE = 1000


@dataclass(slots=True)
class NewMessage:
    """A message being accepted: what its new row gets from Python; `pk` and `cost` are
    set when it is stored. Not a model instance: building one cost more than the database
    work of storing the row (bench/send.py, bulk), and nothing here needs the ORM's."""

    public_id: str
    account_id: int
    api_key_id: int | None
    phone_list_id: int | None
    pinned_device_id: int | None
    to: str
    text: str
    parts: int
    encoding: str
    sim: int | None
    ref: str
    batch_id: str
    send_at: datetime
    expires_at: datetime
    created_at: datetime
    # A verification's real text, sealed; `text` then holds the masked copy (Message.sealed_text).
    sealed_text: str = ""
    pk: int | None = None
    cost: int = 0


@dataclass
class AcceptedMessage:
    """An accepted message and the phones its offer went to (empty when none is online
    or it is scheduled for later)."""

    message: NewMessage
    records: list[device_selectors.OnlineDevice]


@dataclass(frozen=True)
class BulkRow:
    to: str
    text: str = ""
    ref: str = ""
    # Why the row as sent could not be read (reported for this row only, code 5).
    problem: str = ""


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based, as a spreadsheet shows it
    error: errors.DomainError


class NoValidRecipients(errors.InvalidParameter):
    """Not one row of a bulk request could be accepted (code 5)."""

    def __init__(self, row_errors: list[RowError]) -> None:
        super().__init__("No recipient could be accepted.")
        self.row_errors = row_errors


@dataclass
class BulkResult:
    batch_id: str
    messages: list[NewMessage] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def parts(self) -> int:
        return sum(m.parts for m in self.messages)

    @property
    def cost(self) -> int:
        return sum(m.cost for m in self.messages)


@dataclass(frozen=True)
class Options:
    """The checked optional parameters shared by every message of a request."""

    sim: int | None
    send_at: datetime
    expires_at: datetime


# --- Checks -------------------------------------------------------------------


def resolve_target(*, key: AuthenticatedKey, list_token: str | None, device_id: str | None) -> selectors.SendTarget:
    """The list or pinned phone to send through; raises TargetNotFound (code 6)."""
    return selectors.get_send_target(
        key=key,
        account_id=key.account_id,
        list_token=(list_token or "").strip(),
        device_id=(device_id or "").strip(),
    )


def check_required(*, to: str | None, text: str | None) -> None:
    """Raises MissingTo (code 7) or MissingMsg (code 8), in that order."""
    if not to or not to.strip():
        raise errors.MissingTo()
    if not text or not text.strip():
        raise errors.MissingMsg()


def check_options(
    *, target: selectors.SendTarget, sim: int | None, ttl: int | None, send_at: datetime | None
) -> Options:
    """The optional parameters checked against the limits; raises InvalidParameter."""
    now = timezone.now()
    if sim is not None and not 1 <= sim <= MAX_SIM:
        raise errors.InvalidParameter(f"`sim` must be between 1 and {MAX_SIM}.")
    if ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
        raise errors.InvalidParameter(f"`ttl` must be between 1 and {MAX_TTL_SECONDS} seconds.")
    if send_at is not None and send_at > now + MAX_SCHEDULE_AHEAD:
        raise errors.InvalidParameter(f"`send_at` may be at most {MAX_SCHEDULE_AHEAD.days} days ahead.")
    start = max(send_at or now, now)
    lifetime = ttl if ttl is not None else target.phone_list.default_ttl_seconds
    return Options(sim=sim, send_at=start, expires_at=start + timedelta(seconds=lifetime))


def _check_ref(ref: str) -> str:
    if len(ref) > MAX_REF_LENGTH:
        raise errors.InvalidParameter(f"`ref` may be at most {MAX_REF_LENGTH} characters.", param="ref")
    return ref


def build_message(
    *,
    key: AuthenticatedKey,
    target: selectors.SendTarget,
    to: str,
    text: str,
    ref: str,
    options: Options,
    batch_id: str = "",
) -> NewMessage:
    """An unsaved message (priced when it is stored); raises InvalidParameter for a bad
    number, a text of more than MAX_PARTS parts or a too long `ref`."""
    try:
        number = numbers.normalise_number(to, target.phone_list.default_country)
    except numbers.InvalidNumber as exc:
        raise errors.InvalidParameter(str(exc), param="to")
    counted = segments.count_segments(text)
    if counted.parts > MAX_PARTS:
        raise errors.InvalidParameter(
            f"`msg` needs {counted.parts} SMS parts; at most {MAX_PARTS} are allowed in one message.", param="msg"
        )
    return NewMessage(
        public_id=tokens.public_id(MESSAGE_ID_PREFIX),
        account_id=key.account_id,
        api_key_id=key.id,
        phone_list_id=target.phone_list.id,
        pinned_device_id=target.device_id,
        to=number,
        text=text,
        parts=counted.parts,
        encoding=counted.encoding,
        sim=options.sim,
        ref=_check_ref(ref),
        batch_id=batch_id,
        send_at=options.send_at,
        expires_at=options.expires_at,
        created_at=timezone.now(),
    )


def store_messages(
    *, account_id: int, messages: list[NewMessage], reason: str, records_of: selectors.SendTarget | None = None
) -> list[device_selectors.OnlineDevice]:
    """Takes the credit for all parts of `messages` (one conditional UPDATE), prices them,
    inserts them and books one debit each, atomically: one statement on PostgreSQL, one
    transaction elsewhere. Sets each message's pk and cost. With `records_of` (one message),
    also returns the target's phones online now, read in that same statement. Raises
    InsufficientCredit or SpendingCapReached, and then nothing is stored or taken."""
    parts = sum(m.parts for m in messages)
    if connection.vendor == "postgresql":
        insert_sql, insert_params = _charged_insert(messages, records_of=records_of)
        rows = account_services.charge_in_one_statement(
            account_id=account_id, parts=parts, reason=reason, insert_sql=insert_sql, insert_params=insert_params
        )
        stored = {row[2]: row for row in rows}  # by public_id
        for message in messages:
            message.pk, message.cost = stored[message.public_id][:2]
        metrics.count_accepted(count=len(messages))
        if records_of is None:
            return []
        return [device_selectors.OnlineDevice(public_id, name) for public_id, name in rows[0][3]]
    with transaction.atomic():
        debit = account_services.charge_for_parts(account_id=account_id, parts=parts)
        instances = []
        for message in messages:
            message.cost = message.parts * debit.price_per_part
            fields = {name: getattr(message, name) for name in _new_message_fields()}
            instances.append(Message(**fields, cost=message.cost))
        Message.objects.bulk_create(instances, batch_size=BULK_BATCH_SIZE)
        for message, instance in zip(messages, instances, strict=True):
            message.pk = instance.pk
        account_services.book_message_debits(
            account_id=account_id, messages=instances, balance=debit.balance, reason=reason
        )
    metrics.count_accepted(count=len(messages))
    if records_of is None:
        return []
    return device_selectors.online_devices(phone_list_id=records_of.phone_list.id, device_id=records_of.device_id)


@functools.cache
def _new_message_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(NewMessage) if f.name not in ("pk", "cost"))


@functools.cache
def _insert_columns() -> tuple[tuple[str, ...], str, list[Any], list[str]]:
    """The columns of a new message row that Python sets (all but id and cost): the
    attributes of NewMessage, and for every other column its model default (the same for
    every new row). Returns the attribute names, the quoted column list (attributes first,
    then defaulted columns, then cost), the defaults in that order, and the PostgreSQL
    array type of each attribute's column."""
    fields = {f.attname: f for f in Message._meta.concrete_fields if not f.primary_key and f.name != "cost"}
    names = _new_message_fields()
    defaulted = [f for attname, f in fields.items() if attname not in names]
    columns = [connection.ops.quote_name(str(fields[name].column)) for name in names]
    columns += [connection.ops.quote_name(str(f.column)) for f in defaulted]
    # Plain values (a status is a TextChoices member, which psycopg adapts slowly: it looks
    # its dumper up through the enum's classes on every statement).
    defaults = [_plain(f.get_default()) for f in defaulted]
    return names, ", ".join([*columns, "cost"]), defaults, [f"{fields[name].db_type(connection)}[]" for name in names]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _charged_insert(
    messages: list[NewMessage], *, records_of: selectors.SendTarget | None = None
) -> tuple[str, dict[str, Any]]:
    """The INSERT of `messages` for `charge_in_one_statement`: each row's cost is its parts
    × the price the debit was taken at, and rows exist only if the debit was taken (FROM
    debit). A column with one value for every row (a single message's, or a bulk's list,
    times and options) is one parameter; the others are one array each, read with
    `unnest` (the ORM's per-value preparation, and psycopg's per-element array dumping,
    cost more than the database work). RETURNING id, cost, public_id, and with
    `records_of` the online phones as a JSON array."""
    names = _insert_columns()[0]
    params: dict[str, Any] = dict(_insert_defaults())
    shape = []
    for i, name in enumerate(names):
        if len(messages) == 1:
            column = [getattr(messages[0], name)]
        else:
            column = [getattr(m, name) for m in messages]
        first = column[0]
        if len(column) == 1 or column.count(first) == len(column):  # one value for all rows
            # NULL in the text rather than a parameter: still one prepared statement per shape.
            shape.append(_NULL if first is None else _ONE)
            if first is not None:
                params[_PARAMS[i]] = first
        else:
            params[_PARAMS[i]] = column
            shape.append(_ARRAY)
    online_sql = None
    if records_of is not None:
        online_sql, online_params = device_selectors.online_devices_query(
            phone_list_id=records_of.phone_list.id, device_id=records_of.device_id
        )
        params.update(online_params)
    return _insert_sql(tuple(shape), online_sql), params


# How a column of `_charged_insert` gets its value: NULL, one parameter, or an array.
_NULL, _ONE, _ARRAY = 0, 1, 2
_PARAMS = tuple(f"m{i}" for i in range(len(_new_message_fields())))


@functools.cache
def _insert_defaults() -> tuple[tuple[str, Any], ...]:
    return tuple((f"d{i}", value) for i, value in enumerate(_insert_columns()[2]) if value is not None)


@functools.lru_cache(maxsize=64)
def _insert_sql(shape: tuple[int, ...], online_sql: str | None) -> str:
    """The text of `_charged_insert`'s statement for one shape of its columns (built once:
    a single send always has the same few shapes)."""
    names, columns, defaults, array_types = _insert_columns()
    returning = "RETURNING id, cost, public_id"
    if online_sql is not None:
        returning += (
            ", (SELECT coalesce(json_agg(json_build_array(o.public_id, o.name)), '[]')"  # noqa: S608
            f" FROM ({online_sql}) AS o)"
        )
    values, arrays, aliases = [], [], []
    for i, how in enumerate(shape):
        if how == _ARRAY:
            arrays.append(f"%(m{i})s::{array_types[i]}")
            aliases.append(f"c{i}")
            values.append(f"c{i}")
        else:
            values.append("NULL" if how == _NULL else f"%(m{i})s")
    parts = values[names.index("parts")]
    values += ["NULL" if value is None else f"%(d{i})s" for i, value in enumerate(defaults)]
    selected = ", ".join([*values, f"{parts} * debit.price_per_part"])
    source = f"unnest({', '.join(arrays)}) AS u({', '.join(aliases)}), debit" if arrays else "debit"
    table = Message._meta.db_table
    return f"INSERT INTO {table} ({columns}) SELECT {selected} FROM {source} {returning}"  # noqa: S608 (model columns only)


def _offer_after_commit(message: NewMessage) -> None:
    # At once when no transaction is open (the message is stored); else after its commit.
    # Scheduled messages are announced by the worker when their time comes.
    if message.send_at <= timezone.now():
        transaction.on_commit(lambda: offers.offer_message(message=message))


# --- Single sends ----------------------------------------------------------------


def accept_message(
    *,
    key: AuthenticatedKey,
    list_token: str | None,
    device_id: str | None,
    to: str,
    text: str,
    sim: int | None = None,
    ttl: int | None = None,
    send_at: datetime | None = None,
    ref: str = "",
) -> AcceptedMessage:
    """Queues one message, takes its credit and offers it to the phones after commit.
    Raises TargetNotFound, MissingTo, MissingMsg, InvalidParameter, InsufficientCredit
    or SpendingCapReached (in the order docs/api.md gives); nothing is stored or taken then."""
    target = resolve_target(key=key, list_token=list_token, device_id=device_id)
    check_required(to=to, text=text)
    options = check_options(target=target, sim=sim, ttl=ttl, send_at=send_at)
    message = build_message(key=key, target=target, to=to, text=text, ref=ref, options=options)
    return queue_message(key=key, target=target, message=message)


def queue_message(
    *, key: AuthenticatedKey, target: selectors.SendTarget, message: NewMessage, reason: str = "SMS"
) -> AcceptedMessage:
    """Stores one message made by `build_message`, takes its credit and offers it to the
    phones after commit: the one way a single message is accepted (sends, verifications).
    Raises InsufficientCredit or SpendingCapReached; nothing is stored or taken then."""
    due = message.send_at <= timezone.now()
    # `records`: the phones the offer goes to (none yet for a scheduled message).
    records = store_messages(
        account_id=key.account_id, messages=[message], reason=reason, records_of=target if due else None
    )
    _offer_after_commit(message)
    return AcceptedMessage(message, records)


# --- Bulk -----------------------------------------------------------------------------


def accept_bulk(
    *,
    key: AuthenticatedKey,
    list_token: str | None,
    device_id: str | None,
    rows: list[BulkRow],
    text: str = "",
    sim: int | None = None,
    ttl: int | None = None,
    send_at: datetime | None = None,
) -> BulkResult:
    """Queues one message per valid row (a row's own text wins over `text`), takes the
    credit for all of them at once, and tells the phones after commit. Invalid rows are
    reported, not sent. Raises TargetNotFound, MissingTo (no rows), InvalidParameter
    (too many rows; NoValidRecipients when no row is valid) or InsufficientCredit (nothing queued)."""
    target = resolve_target(key=key, list_token=list_token, device_id=device_id)
    if not rows:
        raise errors.MissingTo("Give at least one recipient.")
    if len(rows) > MAX_BULK_ROWS:
        raise errors.InvalidParameter(f"At most {MAX_BULK_ROWS} recipients per request; this one has {len(rows)}.")
    options = check_options(target=target, sim=sim, ttl=ttl, send_at=send_at)
    result = BulkResult(batch_id=tokens.public_id(BATCH_ID_PREFIX))
    for number, row in enumerate(rows, start=1):
        try:
            if row.problem:
                raise errors.InvalidParameter(row.problem)
            check_required(to=row.to, text=row.text or text)
            message = build_message(
                key=key,
                target=target,
                to=row.to,
                text=row.text or text,
                ref=row.ref,
                options=options,
                batch_id=result.batch_id,
            )
        except errors.DomainError as exc:
            result.errors.append(RowError(number, exc))
            continue
        result.messages.append(message)
    if not result.messages:
        raise NoValidRecipients(result.errors)
    store_messages(account_id=key.account_id, messages=result.messages, reason="Bulk send")
    if options.send_at <= timezone.now():
        lists = set() if target.device_id else {target.phone_list.id}
        devices = {target.device_id} if target.device_id else set()
        transaction.on_commit(lambda: offers.announce_work(phone_list_ids=lists, device_ids=devices))
    return result


# --- Cancel ------------------------------------------------------------------------


def cancel_message(*, account_id: int, message_id: str) -> Message:
    """Cancels a still-queued message and refunds it once. Raises NotFound for an id of
    another account and Conflict (409) when the message has left `queued`."""
    message = selectors.get_message_for_account(account_id=account_id, message_id=message_id)
    if not cancel_if_queued(message=message):
        current = Message.objects.values_list("status", flat=True).get(pk=message.pk)
        raise errors.Conflict(f"Only a queued message can be cancelled; this one is {current}.")
    return message


def cancel_if_queued(*, message: Message, detail: str = "") -> bool:
    """Cancels the message and refunds it once if it is still queued; True if this call
    cancelled it (and `message` now says so), False if it had left `queued`."""
    now = timezone.now()
    with transaction.atomic():
        # A phone may be claiming it right now: whichever UPDATE runs first wins.
        changed = Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
            status=Message.Status.CANCELLED, cancelled_at=now
        )
        if changed:
            MessageEvent.objects.create(message=message, status=Message.Status.CANCELLED, at=now, detail=detail)
            account_services.refund_credit(message=message, reason="Cancelled")
            message.cancelled_at = now
            callbacks.record_cancel_event(message=message)
    if changed:
        message.status, message.cancelled_at = Message.Status.CANCELLED, now
    return bool(changed)
