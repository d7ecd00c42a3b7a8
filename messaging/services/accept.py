"""Accepting messages (one, or a bulk batch) and cancelling them.

The checks run in the SPEC's order of concern: target (code 6), number present (7),
text present (8), every other parameter (5), then credit (9). Credit for all parts is
taken by one conditional UPDATE in the transaction that inserts the message; phones
hear about it only after commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from accounts import errors
from accounts import services as account_services
from accounts.lib import tokens
from accounts.models import Account
from accounts.services import AuthenticatedKey
from devices import selectors as device_selectors
from devices.models import Device
from messaging import selectors
from messaging.lib import numbers, segments
from messaging.models import Message, MessageEvent
from messaging.services import offers

MESSAGE_ID_PREFIX = "msg"
BATCH_ID_PREFIX = "bat"
# R18 limits; each is refused with code 5 (HTTP 400).
MAX_PARTS = 10
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_SCHEDULE_AHEAD = timedelta(days=30)
MAX_SIM = 4
MAX_REF_LENGTH = 255
MAX_BULK_ROWS = 10_000
BULK_BATCH_SIZE = 1000


@dataclass
class AcceptedMessage:
    """An accepted message and the phones its offer went to (empty when none is online
    or it is scheduled for later)."""

    message: Message
    records: list[Device]


@dataclass(frozen=True)
class BulkRow:
    to: str
    text: str = ""
    ref: str = ""


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
    messages: list[Message] = field(default_factory=list)
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
        account_id=key.account_id,
        default_list_id=key.default_list_id,
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
    """The optional parameters checked against the R18 limits; raises InvalidParameter."""
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
        raise errors.InvalidParameter(f"`ref` may be at most {MAX_REF_LENGTH} characters.")
    return ref


def build_message(
    *,
    key: AuthenticatedKey,
    account: Account,
    target: selectors.SendTarget,
    to: str,
    text: str,
    ref: str,
    options: Options,
    batch_id: str = "",
) -> Message:
    """An unsaved, priced message; raises InvalidParameter for a bad number, a text of
    more than MAX_PARTS parts or a too long `ref`."""
    try:
        number = numbers.normalise_number(to, target.phone_list.default_country)
    except numbers.InvalidNumber as exc:
        raise errors.InvalidParameter(str(exc))
    counted = segments.count_segments(text)
    if counted.parts > MAX_PARTS:
        raise errors.InvalidParameter(
            f"`msg` needs {counted.parts} SMS parts; at most {MAX_PARTS} are allowed in one message."
        )
    return Message(
        public_id=tokens.public_id(MESSAGE_ID_PREFIX),
        account_id=account.pk,
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
        cost=counted.parts * account.price_per_part,
        send_at=options.send_at,
        expires_at=options.expires_at,
        created_at=timezone.now(),
    )


def _account(key: AuthenticatedKey) -> Account:
    return Account.objects.only("id", "price_per_part", "daily_spend_cap").get(pk=key.account_id)


def _offer_after_commit(message: Message) -> None:
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
    or SpendingCapReached (in the SPEC's order); nothing is stored or taken then."""
    target = resolve_target(key=key, list_token=list_token, device_id=device_id)
    check_required(to=to, text=text)
    options = check_options(target=target, sim=sim, ttl=ttl, send_at=send_at)
    account = _account(key)
    message = build_message(key=key, account=account, target=target, to=to, text=text, ref=ref, options=options)
    with transaction.atomic():
        message.save(force_insert=True)
        account_services.debit_credit(account=account, amount=message.cost, message=message)
        _offer_after_commit(message)
    if message.send_at > timezone.now():
        return AcceptedMessage(message, [])
    records = device_selectors.online_devices(phone_list_id=target.phone_list.id, device_id=target.device_id)
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
    account = _account(key)
    result = BulkResult(batch_id=tokens.public_id(BATCH_ID_PREFIX))
    for number, row in enumerate(rows, start=1):
        try:
            check_required(to=row.to, text=row.text or text)
            message = build_message(
                key=key,
                account=account,
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
    with transaction.atomic():
        insert_messages(result.messages)
        account_services.debit_credit_for_messages(account=account, messages=result.messages)
        if options.send_at <= timezone.now():
            lists = set() if target.device_id else {target.phone_list.id}
            devices = {target.device_id} if target.device_id else set()
            transaction.on_commit(lambda: offers.announce_work(phone_list_ids=lists, device_ids=devices))
    return result


def insert_messages(messages: list[Message]) -> None:
    """Inserts new messages and sets their primary keys. On PostgreSQL one
    `INSERT … SELECT FROM unnest(arrays)` per batch: bulk_create's per-value preparation
    costs more than the database work at 10,000 rows (bench/send.py)."""
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(messages, batch_size=BULK_BATCH_SIZE)
        return
    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    statement = (
        # Only identifiers from the model are formatted in; every value is a parameter.
        f"INSERT INTO {Message._meta.db_table} ({columns}) SELECT * FROM unnest({arrays}) RETURNING id, public_id"  # noqa: S608
    )
    for start in range(0, len(messages), BULK_BATCH_SIZE * 5):
        batch = messages[start : start + BULK_BATCH_SIZE * 5]
        with connection.cursor() as cursor:
            cursor.execute(statement, [[getattr(m, f.attname) for m in batch] for f in fields])
            ids = dict((public_id, pk) for pk, public_id in cursor.fetchall())
        for message in batch:
            message.pk = ids[message.public_id]
            message._state.adding = False


# --- Cancel ------------------------------------------------------------------------


def cancel_message(*, account_id: int, message_id: str) -> Message:
    """Cancels a still-queued message and refunds it once. Raises NotFound for an id of
    another account and Conflict (409) when the message has left `queued`."""
    message = selectors.get_message_for_account(account_id=account_id, message_id=message_id)
    now = timezone.now()
    with transaction.atomic():
        # A phone may be claiming it right now: whichever UPDATE runs first wins.
        changed = Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
            status=Message.Status.CANCELLED, cancelled_at=now
        )
        if changed:
            MessageEvent.objects.create(message=message, status=Message.Status.CANCELLED, at=now)
            account_services.refund_credit(message=message, reason="Cancelled")
    if not changed:
        current = Message.objects.values_list("status", flat=True).get(pk=message.pk)
        raise errors.Conflict(f"Only a queued message can be cancelled; this one is {current}.")
    message.status, message.cancelled_at = Message.Status.CANCELLED, now
    return message
