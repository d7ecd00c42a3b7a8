"""Who sends what: claims, reports, leases and expiry.

The database decides everything here: a claim is one conditional UPDATE whose row
count says who won, every transition is a conditional UPDATE from the statuses it may
leave, and the channel layer only carries hints. The worker steps at the bottom
each do one unit of work and return "more work waiting?".
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, F, Model, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts import rawsql
from accounts import services as account_services
from accounts.lib import sqlnames, tokens
from accounts.models import Account
from devices import services as device_services
from devices.models import CAP_WINDOWS, Device, PhoneList
from ipn import services as ipn_services
from ipn.models import IpnEndpoint, IpnEvent
from messaging import metrics
from messaging.lib import send_errors
from messaging.models import Message, MessageEvent
from messaging.services import callbacks, offers, verify

logger = logging.getLogger(__name__)

Status = Message.Status

# After this many assignments whose lease lapsed without a report, the message fails.
MAX_ATTEMPTS = 3
# A message that failed phone-side goes to the list's other phones, this many phones in all
# (docs/device-protocol.md, "Failed sends"); then it fails for good and is refunded.
MAX_FAILOVER_PHONES = 3
# The last `send_at` up to which scheduled messages were announced (a hint, see below).
SCHEDULED_WATERMARK_KEY = "dispatch:scheduled-announced-until"
SCHEDULED_LOOKBACK = timedelta(hours=1)

# A report may move a message only out of these statuses. The first tuple is the normal
# path; the second holds the refunded ends that a late `sent`/`delivered` overrules.
REPORT_FROM: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Status.SENT: ((Status.QUEUED, Status.ASSIGNED), (Status.EXPIRED, Status.FAILED, Status.CANCELLED)),
    Status.DELIVERED: (
        (Status.QUEUED, Status.ASSIGNED, Status.SENT),
        (Status.EXPIRED, Status.FAILED, Status.CANCELLED),
    ),
    # Only the current assignee can fail a message, and only before it was sent.
    Status.FAILED: ((Status.ASSIGNED,), ()),
}
REPORT_STATUSES = tuple(REPORT_FROM)


# --- Reads ----------------------------------------------------------------------


def _target_q(device: Device) -> Q:
    """Messages this phone may send: pinned to it, or for its list and not pinned."""
    return Q(pinned_device_id=device.pk) | Q(pinned_device__isnull=True, phone_list_id=device.phone_list_id)


def _failed_by(device: Device) -> Exists:
    """The message was failed by this phone already (a phone-side failure it failed over from)."""
    return Exists(MessageEvent.objects.filter(message=OuterRef("pk"), device_id=device.pk, status=Status.FAILED))


def _paused(device: Device, now: datetime) -> Exists:
    """This phone is paused (read from its row in the same query: a connection's copy may be old)."""
    return Exists(Device.objects.filter(pk=device.pk, paused_until__gt=now))


def open_messages_for_device(*, device: Device, limit: int = 100) -> list[Message]:
    """Queued, due, unexpired messages this phone may claim, oldest first: none while the
    phone is paused, and never one it failed already.

    Every phone connect asks this, and every `state: available` after it, so it is one
    hand-written statement (`_OPEN_WORK_SQL`): Django compiled the equivalent queryset
    (`_open_messages_queryset`, which tests compare it with) anew on each call, 1.6 ms of
    CPU against 0.2 (docs/benchmarks.md, "10,000 phones")."""
    adapt = connection.ops.adapt_datetimefield_value
    params: dict[str, Any] = {
        "device": device.pk,
        "list": device.phone_list_id,
        "queued": Status.QUEUED,
        "failed": Status.FAILED,
        "now": adapt(timezone.now()),
        "limit": limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(_open_work_sql(), params)
        rows = cursor.fetchall()
    return rawsql.instances(Message, _OPEN_WORK_FIELDS, rows)


# `open_messages_for_device`'s statement: the queryset below, as Django writes it.
_OPEN_WORK_SQL = """
SELECT {Message.id}, {Message.public_id}, {Message.phone_list}, {Message.pinned_device}, {Message.to},
    {Message.text}, {Message.parts}, {Message.sim}
FROM {Message}
WHERE ({Message.pinned_device} = %(device)s OR ({Message.phone_list} = %(list)s AND {Message.pinned_device} IS NULL))
  AND {Message.expires_at} > %(now)s AND {Message.send_at} <= %(now)s AND {Message.status} = %(queued)s
  AND NOT EXISTS (SELECT 1 FROM {MessageEvent} WHERE {MessageEvent.device} = %(device)s
                  AND {MessageEvent.message} = {Message}.{Message.id} AND {MessageEvent.status} = %(failed)s)
  AND NOT EXISTS (SELECT 1 FROM {Device} WHERE {Device.paused_until} > %(now)s AND {Device.id} = %(device)s)
ORDER BY {Message.send_at}, {Message.created_at}, {Message.id}
LIMIT %(limit)s
"""
# In the model's field order, as `rawsql.instance` (Model.from_db) needs them.
_OPEN_WORK_FIELDS = ("id", "public_id", "phone_list_id", "pinned_device_id", "to", "text", "parts", "sim")


@functools.cache
def _open_work_sql() -> str:
    return _sql(_OPEN_WORK_SQL)


def _open_messages_queryset(*, device: Device, now: datetime) -> QuerySet[Message]:
    """What `_OPEN_WORK_SQL` selects, as a queryset (tests hold the two side by side)."""
    return (
        Message.objects.filter(_target_q(device), status=Status.QUEUED, send_at__lte=now, expires_at__gt=now)
        .exclude(_failed_by(device))
        .exclude(_paused(device, now))
        .only(*_OPEN_WORK_FIELDS)
        .order_by("send_at", "created_at", "id")
    )


@dataclass(frozen=True)
class CapRoom:
    """How many more assignments a phone may get now under its caps, and when it has room
    again if it has none."""

    left: int | None  # None: no cap applies
    until: datetime | None = None


def may_be_capped(device: Device) -> bool:
    """Whether any cap applies to the phone, by its (possibly cached) settings: a claim of a
    phone with none is one statement; with one, the caps are read fresh under a lock."""
    return any(device.caps.values())


def _locked_caps(device: Device) -> dict[str, int | None]:
    """Inside a transaction: locks the phone's row (so its concurrent claims count one after
    the other and none can pass a cap, even by one) and reads its caps fresh."""
    own = [f"rate_limit_per_{name}" for name in CAP_WINDOWS]
    of_list = [f"phone_list__rate_limit_per_{name}" for name in CAP_WINDOWS]
    row = Device.objects.select_for_update(of=("self",)).filter(pk=device.pk).values_list(*own, *of_list).first()
    if row is None:
        return dict.fromkeys(CAP_WINDOWS)
    count = len(CAP_WINDOWS)
    return {name: row[n] or row[n + count] for n, name in enumerate(CAP_WINDOWS)}


def _assignments(device_id: int) -> QuerySet[MessageEvent]:
    # Timeline rows, not Message.device: a message that moved on to another phone (a lapsed
    # lease, a failover) still counts for each phone it was assigned to.
    return MessageEvent.objects.filter(device_id=device_id, status=Status.ASSIGNED)


def cap_use(*, device_id: int, now: datetime, windows: Iterable[str] = CAP_WINDOWS) -> dict[str, int]:
    """How many assignments the phone got in each of these sliding windows up to `now`."""
    spans = {name: CAP_WINDOWS[name] for name in windows}
    if not spans:
        return {}
    counts = {name: Count("id", filter=Q(at__gt=now - span)) for name, span in spans.items()}
    used: dict[str, int] = _assignments(device_id).filter(at__gt=now - max(spans.values())).aggregate(**counts)
    return used


def _cap_room(*, device: Device, now: datetime) -> CapRoom:
    """Inside a transaction: the phone's room under its caps, its row locked (see above)."""
    caps = {name: limit for name, limit in _locked_caps(device).items() if limit}
    if not caps:
        return CapRoom(None)
    used = cap_use(device_id=device.pk, now=now, windows=caps)
    left = min(limit - used[name] for name, limit in caps.items())
    if left > 0:
        return CapRoom(left)
    # Room again when enough of the window's assignments have slid out of it.
    until = now
    for name, limit in caps.items():
        over = used[name] - limit
        if over >= 0:
            in_window = _assignments(device.pk).filter(at__gt=now - CAP_WINDOWS[name]).order_by("at")
            oldest = in_window.values_list("at", flat=True)[over : over + 1].first()
            until = max(until, (oldest or now) + CAP_WINDOWS[name])
    return CapRoom(0, until)


@functools.cache
def _sql(template: str, **arguments: str) -> str:
    """`template` with the names of the models it names (`{Message.status}`, accounts/lib/sqlnames.py)."""
    models = {
        "Message": Message,
        "MessageEvent": MessageEvent,
        "Device": Device,
        "IpnEndpoint": IpnEndpoint,
        "Account": Account,
        "IpnEvent": IpnEvent,
        "PhoneList": PhoneList,
    }
    return sqlnames.sql(template, quote=connection.ops.quote_name, **models, **arguments)


# A `sent` shows the phone's radio works: its pause after failed sends, if any, ends
# (devices.services.end_pause, as part of a report's one statement on PostgreSQL).
_END_PAUSE_CTE = """
    end_pause AS (
        UPDATE {Device} SET {Device.failures_in_a_row} = 0, {Device.paused_until} = NULL
        WHERE {Device.id} = %(ev_device)s AND {Device.failures_in_a_row} > 0 AND EXISTS (SELECT 1 FROM changed)
    )"""


def _with_timeline(update_sql: str, *, at: str = "%(ev_at)s") -> str:
    """PostgreSQL: `update_sql` (an `UPDATE messaging_message … RETURNING id, …`) and the
    timeline entry of each row it changed, as one statement that returns the UPDATE's rows.
    The entry takes `%(ev_status)s`, `%(ev_device)s`, `%(ev_detail)s`, and its time from
    `at` (a parameter, or a column the UPDATE returns)."""
    timeline = _sql(
        "INSERT INTO {MessageEvent} ({MessageEvent.message}, {MessageEvent.status}, {MessageEvent.device},"
        " {MessageEvent.detail}, {MessageEvent.at})"
    )
    return f"""
        WITH changed AS ({update_sql}),
        timeline AS (
            {timeline}
            SELECT id, %(ev_status)s, %(ev_device)s, %(ev_detail)s, {at} FROM changed
        )
        SELECT * FROM changed
    """  # noqa: S608 (SQL text from this module; every value is a parameter)


def _change_with_event(
    update_sql: str, params: dict[str, Any], *, status: str, device_id: int | None, at: datetime, detail: str = ""
) -> tuple[Any, ...] | None:
    """Runs a conditional `UPDATE messaging_message … RETURNING id, …` and, if it changed a
    row, stores that transition in the timeline; returns the RETURNING row or None.

    On PostgreSQL both go in one statement, atomic without a transaction (one round trip:
    claims and reports are the hot path of every phone); elsewhere in a transaction."""
    if connection.vendor == "postgresql":
        event = {"ev_status": status, "ev_device": device_id, "ev_detail": detail, "ev_at": at}
        with connection.cursor() as cursor:
            cursor.execute(_with_timeline(update_sql), {**params, **event})
            changed: tuple[Any, ...] | None = cursor.fetchone()
            return changed
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(update_sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
        if row is not None:
            MessageEvent.objects.create(message_id=row[0], status=status, device_id=device_id, detail=detail, at=at)
        return row


# --- Claims ---------------------------------------------------------------------

# The claim: one conditional UPDATE, and its row count says who won . The
# message must still be queued, due, unexpired, meant for this phone and not failed by it
# before (failover), the phone enabled, available and not paused, and its account active
# (deactivation stops claims at once). RETURNING gives the assign frame's fields without
# another query.
_CLAIM_SQL = """
UPDATE {Message} SET
    {Message.status} = %(assigned)s, {Message.device} = %(device)s, {Message.assigned_at} = %(now)s,
    {Message.lease_expires_at} = %(lease)s, {Message.attempts} = {Message.attempts} + 1
WHERE {lookup} = %(lookup)s AND {Message.status} = %(queued)s
  AND {Message.send_at} <= %(now)s AND {Message.expires_at} > %(now)s
  AND ({Message.pinned_device} = %(device)s
       OR ({Message.pinned_device} IS NULL AND {Message.phone_list} = %(list)s))
  AND EXISTS (SELECT 1 FROM {Device} WHERE {Device.id} = %(device)s
              AND {Device.is_enabled} AND {Device.removed_at} IS NULL AND {Device.is_available}{uncapped}
              AND {Device.account} IN (SELECT {Account.id} FROM {Account} WHERE {Account.is_active}))
  AND NOT EXISTS (SELECT 1 FROM {Device} WHERE {Device.id} = %(device)s AND {Device.paused_until} > %(now)s)
  AND NOT EXISTS (SELECT 1 FROM {MessageEvent} WHERE {MessageEvent.message} = {Message}.{Message.id}
                  AND {MessageEvent.device} = %(device)s AND {MessageEvent.status} = %(failed)s)
RETURNING {Message.id}, {Message.public_id}, {Message.to}, {Message.text}, {Message.sealed_text},
    {Message.parts}, {Message.sim}, {Message.send_at}, {Message.attempts}
"""
# A claim that skipped the cap count (the phone had no caps when its connection last
# read them) also requires that it still has none, in the same statement: a cap set
# since then refuses the claim until the connection has read it (the fleet's tick), so
# a new cap is never passed, not even for one tick.
_UNCAPPED_SQL = """
              AND {Device.rate_limit_per_minute} IS NULL AND {Device.rate_limit_per_hour} IS NULL
              AND {Device.rate_limit_per_day} IS NULL
              AND {Device.phone_list} IN (SELECT {PhoneList.id} FROM {PhoneList}
                  WHERE {PhoneList.rate_limit_per_minute} IS NULL AND {PhoneList.rate_limit_per_hour} IS NULL
                    AND {PhoneList.rate_limit_per_day} IS NULL)"""
# In the model's field order, as `rawsql.instance` (Model.from_db) needs them.
_CLAIMED_FIELDS = ("id", "public_id", "to", "text", "sealed_text", "parts", "sim", "send_at", "attempts")


@dataclass(frozen=True)
class ClaimResult:
    """A claim's outcome: the message if this phone won it; `capped_until` when the phone
    is at one of its caps (refused for it, or it just took its last room) until then."""

    message: Message | None
    capped_until: datetime | None = None


def claim_message(*, device: Device, message_id: str) -> Message | None:
    """Assigns the message to this phone if it is still open, due, meant for the phone, and
    the phone is enabled, available and under its caps. Returns it (with the fields of the
    `assign` frame loaded, `text` as the phone must send it), or None."""
    return claim_for_phone(device=device, message_id=message_id).message


def claim_for_phone(*, device: Device, message_id: str) -> ClaimResult:
    """`claim_message`, also saying whether the phone is now at one of its caps and until when."""
    now = timezone.now()
    if not may_be_capped(device):
        return ClaimResult(_claim(device=device, lookup=("public_id", message_id), now=now, uncapped=True))
    with transaction.atomic():
        room = _cap_room(device=device, now=now)
        if room.left == 0:
            return ClaimResult(None, room.until)
        message = _claim(device=device, lookup=("public_id", message_id), now=now)
        if message is not None and room.left == 1:
            return ClaimResult(message, _cap_room(device=device, now=now).until)  # that was its last room
        return ClaimResult(message)


def message_is_open(*, message_id: str) -> bool:
    """Whether the message is still queued, due and unexpired: when one phone's claim
    failed, whether another phone's could still win."""
    now = timezone.now()
    return Message.objects.filter(
        public_id=message_id, status=Status.QUEUED, send_at__lte=now, expires_at__gt=now
    ).exists()


def _claim(*, device: Device, lookup: tuple[str, object], now: datetime, uncapped: bool = False) -> Message | None:
    """The claim UPDATE and its timeline entry (atomic); the message, or None. `uncapped`:
    the caller counted no caps, so the phone must (still) have none."""
    adapt = connection.ops.adapt_datetimefield_value
    column, value = lookup
    row = _change_with_event(
        _claim_sql(column, uncapped),
        {
            "assigned": Status.ASSIGNED,
            "queued": Status.QUEUED,
            "failed": Status.FAILED,
            "device": device.pk,
            "list": device.phone_list_id,
            "now": adapt(now),
            "lease": adapt(now + timedelta(seconds=device.phone_list.lease_seconds)),
            "lookup": value,
        },
        status=Status.ASSIGNED,
        device_id=device.pk,
        at=now,
    )
    if row is None:
        return None  # another phone got there first, or it is not open for this phone
    message = rawsql.instance(Message, _CLAIMED_FIELDS, row)
    message.status, message.device, message.assigned_at = Status.ASSIGNED, device, now
    metrics.count_assignment(due_at=message.send_at, assigned_at=now, attempt=message.attempts)
    return _for_phone(message)


@functools.cache
def _claim_sql(column: str, uncapped: bool) -> str:
    # `column` is "public_id" or "id", never input.
    return _sql(_CLAIM_SQL, lookup=_sql(f"{{Message.{column}}}"), uncapped=_sql(_UNCAPPED_SQL) if uncapped else "")


def _for_phone(message: Message) -> Message:
    """The message with `text` as the phone must send it: a verification's stored text has
    its code masked, the real one is sealed (only the phone that holds it gets it)."""
    if message.sealed_text:
        message.text = verify.text_for_phone(message_id=message.public_id, sealed_text=message.sealed_text)
    return message


# A pull-style phone's fair share is counted over at most this many open messages.
FAIR_SHARE_SAMPLE = 1000


def _fair_share(*, device: Device, open_messages: int) -> int:
    """What one poll may claim of `open_messages` so the list's other available phones get
    theirs: ceil(open / available phones), at least 1."""
    phones = Device.objects.online().filter(phone_list_id=device.phone_list_id, is_available=True).count()
    return max(1, -(-open_messages // max(phones, 1)))


def claim_next_messages(*, device: Device, limit: int = 10, order: str = "fifo") -> list[Message]:
    """For pull-style phones (fetching = claiming): the phone's still-leased assignments
    (an idempotent re-fetch) plus newly claimed open messages, up to `limit` in all and up
    to its fair share of the open ones and its caps' room, each with `text` as the phone
    must send it."""
    now = timezone.now()
    held = list(
        Message.objects.filter(device_id=device.pk, status=Status.ASSIGNED, lease_expires_at__gt=now).order_by(
            "assigned_at", "id"
        )[:limit]
    )
    held = [_for_phone(message) for message in held]
    wanted = limit - len(held)
    if wanted <= 0:
        return held
    ordering = ("send_at", "created_at", "id") if order == "fifo" else ("-send_at", "-created_at", "-id")
    claimed: list[int] = []
    with transaction.atomic():
        if may_be_capped(device):
            room = _cap_room(device=device, now=now)
            wanted = min(wanted, room.left if room.left is not None else wanted)
        open_pks = list(
            Message.objects.filter(_target_q(device), status=Status.QUEUED, send_at__lte=now, expires_at__gt=now)
            .exclude(_failed_by(device))
            .exclude(_paused(device, now))
            .order_by(*ordering)
            .values_list("pk", flat=True)[:FAIR_SHARE_SAMPLE]
        )
        wanted = min(wanted, _fair_share(device=device, open_messages=len(open_pks)))
        candidates = open_pks[: wanted * 2]
        for pk in candidates:
            if len(claimed) >= wanted:
                break
            message = _claim(device=device, lookup=("id", pk), now=now)
            if message is not None:
                claimed.append(message.pk)
    by_pk = Message.objects.in_bulk(claimed)
    return held + [_for_phone(by_pk[pk]) for pk in claimed]


# --- Reports --------------------------------------------------------------------
#
# Reports of one message are applied one after the other in the order the phone sent
# them (the consumer runs them so; R29), and whatever that order was, a message never
# reaches `delivered` without a recorded `sent`: a delivery report for a message with no
# `sent` records `sent` first, with its timeline entry, `sent_at` and `message.sent`
# callback written before the delivery's.


@functools.cache
def _report_read() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The report's one read: the message's fields a report and its IPN event need, and the
    account's IPN settings beside them (a LEFT JOIN: None when never set up)."""
    message_fields: tuple[str, ...] = ("id", "public_id", "account_id", "phone_list_id", "pinned_device_id")
    message_fields += ("device_id", "to", "text", "parts", "sim", "ref", "batch_id", "cost", "status", "error")
    message_fields += ("attempts",)
    message_fields += ("created_at", "sent_at", "delivered_at")
    endpoint_fields = ("id", "account_id", "url", "enabled", "events", "format", "disabled_at", "has_webhooks")
    columns = [f"m.{{Message.{name}}}" for name in message_fields]
    columns += [f"e.{{IpnEndpoint.{name}}}" for name in endpoint_fields]
    sql = _sql(
        f"SELECT {', '.join(columns)} FROM {{Message}} m"  # noqa: S608 (model names only)
        " LEFT JOIN {IpnEndpoint} e ON e.{IpnEndpoint.account} = m.{Message.account}"
        " WHERE m.{Message.public_id} = %s AND m.{Message.account} = %s"
    )
    return sql, message_fields, endpoint_fields


def _reporting_message(*, device: Device, message_id: str) -> tuple[Message, IpnEndpoint | None] | None:
    """The message and its account's IPN settings, if this phone holds the message or held
    it before (a late report, R24); None otherwise."""
    sql, message_fields, endpoint_fields = _report_read()
    with connection.cursor() as cursor:
        cursor.execute(sql, [message_id, device.account_id])
        row = cursor.fetchone()
    if row is None:
        return None
    message = rawsql.instance(Message, message_fields, row[: len(message_fields)])
    endpoint_row = row[len(message_fields) :]
    endpoint = rawsql.instance(IpnEndpoint, endpoint_fields, endpoint_row) if endpoint_row[0] is not None else None
    if message.device_id == device.pk:
        return message, endpoint
    held_before = MessageEvent.objects.filter(message=message, device=device, status=Status.ASSIGNED).exists()
    return (message, endpoint) if held_before else None


def _report_fields(*, message: Message, device: Device, status: str, error: str, at: datetime) -> dict[str, Any]:
    if status == Status.SENT:
        return {"sent_at": at, "device": device, "lease_expires_at": None, "error": ""}
    if status == Status.DELIVERED:
        if message.sent_at is None:  # `sent` is recorded with it (see `_apply_report`)
            return {
                **_report_fields(message=message, device=device, status=Status.SENT, error="", at=at),
                "delivered_at": at,
            }
        return {"delivered_at": at, "device": device, "lease_expires_at": None}
    return {"failed_at": at, "error": error[:500] or "The phone reported a failure.", "lease_expires_at": None}


# A report re-reads the message and retries when a concurrent change got in between.
REPORT_TRIES = 3

# Accounts whose callbacks need the general path (GenioSms format, SMSGate webhooks) when
# this process last read their settings (account id → until when, monotonic): their
# reports skip the one-statement report, which would match no row. Only a hint: that
# statement checks the settings itself, so a stale entry costs time (one statement tried
# in vain, or skipped), never a wrong write.
_GENERAL_PATH: dict[int, float] = {}
GENERAL_PATH_HINT_SECONDS = 60.0


def _needs_general_path(account_id: int) -> bool:
    return _GENERAL_PATH.get(account_id, 0.0) > time.monotonic()


def _remember_general_path(account_id: int, *, endpoint: IpnEndpoint | None) -> None:
    if endpoint is not None and (
        endpoint.has_webhooks or (endpoint.enabled and endpoint.format != IpnEndpoint.Format.STANDARD)
    ):
        if len(_GENERAL_PATH) > 10_000:
            _GENERAL_PATH.clear()
        _GENERAL_PATH[account_id] = time.monotonic() + GENERAL_PATH_HINT_SECONDS
    else:
        _GENERAL_PATH.pop(account_id, None)


class ReportNotApplied(RuntimeError):
    """Every try of a report met a concurrent change of the message; nothing was written."""


def report_message(
    *, device: Device, message_id: str, status: str, error: str = "", at: datetime | None = None
) -> Message | None:
    """Records a phone's `sent`/`delivered`/`failed` report. Never moves a message backwards;
    duplicates change nothing; a `delivered` with no recorded `sent` records `sent` first.
    Returns the message (current state), or None if the phone never held it. Raises
    ValueError for another status, ReportNotApplied when the message kept changing under
    every try (the phone reports again: it was not acknowledged)."""
    if status not in REPORT_FROM:
        raise ValueError(f"unknown report status {status!r}")
    metrics.count_report(status=status)
    if status != Status.FAILED and connection.vendor == "postgresql" and not _needs_general_path(device.account_id):
        reported = _report_in_one_statement(device=device, message_id=message_id, status=status, at=at)
        if reported is not None:
            return reported
    for _ in range(REPORT_TRIES):
        found = _reporting_message(device=device, message_id=message_id)
        if found is None:
            return None
        _remember_general_path(device.account_id, endpoint=found[1])
        if _apply_report(*found, device=device, status=status, error=error, at=at):
            return found[0]
    # Not acknowledged, so the phone sends the report again (it keeps it until acked).
    raise ReportNotApplied(f"message {message_id} kept changing while its {status} report was applied")


# The commonest report in one statement (PostgreSQL): `sent` from the phone that holds an
# open message, or `delivered` of a message whose `sent` is recorded, for an account with
# no callbacks or with IPN callbacks in the standard format: the conditional UPDATE, its
# timeline entry and, when the account's IPN settings want the event, its outbox row with
# the body built by the statement itself from the row it changed (byte for byte what
# `callbacks.build_message_event` builds; tests/ipn/test_report_statement.py), atomic on
# its own. The same conditions and fields as `_apply_report` below, written in SQL.
# Anything else (another holder, a `delivered` that must record `sent` first, a status
# the report may not leave, GenioSms callbacks, SMSGate webhooks) matches no row here and
# takes the general path.
_FAST_REPORT_FROM: dict[str, tuple[str, ...]] = {
    Status.SENT: (Status.QUEUED, Status.ASSIGNED),
    Status.DELIVERED: (Status.SENT,),
}


_FAST_REPORT_SQL = """
UPDATE {Message} m SET
    {Message.status} = %(status)s, {Message.device} = %(device)s, {Message.lease_expires_at} = NULL, {stamp}
WHERE m.{Message.public_id} = %(message)s AND m.{Message.account} = %(account)s AND m.{Message.device} = %(device)s
  AND m.{Message.status} IN ({from_statuses})
  AND NOT EXISTS (SELECT 1 FROM {IpnEndpoint} e WHERE e.{IpnEndpoint.account} = m.{Message.account}
                  AND (e.{IpnEndpoint.has_webhooks}
                       OR (e.{IpnEndpoint.enabled} AND e.{IpnEndpoint.format} <> %(standard)s)))
RETURNING m.{Message.id} AS id, m.{Message.public_id} AS public_id, m.{Message.status} AS status,
    GREATEST(m.{Message.created_at}, %(when)s) AS at, m.{Message.account} AS account_id, m.{Message.ref} AS ref,
    m.{Message.to} AS recipient, m.{Message.parts} AS parts, m.{Message.error} AS error,
    m.{Message.sent_at} AS sent_at, m.{Message.delivered_at} AS delivered_at
"""
_FAST_REPORT_STAMPS: dict[str, str] = {
    Status.SENT: "{Message.sent_at} = GREATEST(m.{Message.created_at}, %(when)s), {Message.error} = ''",
    Status.DELIVERED: "{Message.delivered_at} = GREATEST(m.{Message.created_at}, %(when)s)",
}


def _sql_json_time(column: str) -> str:
    """SQL: a time of `changed` as `ipn.services.iso_time` writes it in JSON (UTC,
    milliseconds cut, not rounded, as Python's isoformat does; `Z`), or null."""
    return f"""COALESCE('"' || to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null')"""


def _sql_json(expression: str) -> str:
    """SQL: a text value as JSON (PostgreSQL escapes text as `json.dumps(ensure_ascii=False)`
    does: the same short escapes, other control characters as lowercase \\u00xx), or null."""
    return f"COALESCE(to_json({expression})::text, 'null')"


# The standard body of `callbacks.message_event_data`, in its key order, compact (ipn
# `serialise_body`): the phone's fields come as JSON from Python, the message's from the
# row the UPDATE changed. Each field is bounded far below ipn.services.MAX_BODY_BYTES (the
# longest, `error`, is 500 characters), so the body is never cut.
_FAST_REPORT_BODY = " || ".join(
    [
        "'{\"type\":' || %(ob_type_json)s::text",
        "',\"timestamp\":' || " + _sql_json_time("c.at"),
        "',\"occurred_at\":' || " + _sql_json_time("c.at"),
        '\',"data":{"message_id":\' || ' + _sql_json("c.public_id"),
        "',\"ref\":' || " + _sql_json("c.ref"),
        "',\"to\":' || " + _sql_json("c.recipient"),
        "',\"status\":' || " + _sql_json("c.status"),
        "',\"device_id\":' || %(ob_device_id_json)s::text",
        "',\"device_name\":' || %(ob_device_name_json)s::text",
        "',\"parts\":' || c.parts::text",
        "',\"error\":' || " + _sql_json("NULLIF(c.error, '')"),
        "',\"sent_at\":' || " + _sql_json_time("c.sent_at"),
        "',\"delivered_at\":' || " + _sql_json_time("c.delivered_at"),
        "'}}'",
    ]
)

# The outbox row of `ipn.services.build_event` for an account whose IPN settings want the
# event (`ipn.services._wants`: enabled, a URL, the event among `events` or `events`
# empty; the format is the standard one, see the UPDATE), kept as skipped while the
# endpoint is disabled.
_FAST_REPORT_OUTBOX = """
INSERT INTO {IpnEvent} ({IpnEvent.webhook_id}, {IpnEvent.account}, {IpnEvent.type}, {IpnEvent.message},
    {IpnEvent.body}, {IpnEvent.content_type}, {IpnEvent.status}, {IpnEvent.attempts}, {IpnEvent.schedule_started_at},
    {IpnEvent.replays}, {IpnEvent.next_attempt_at}, {IpnEvent.occurred_at}, {IpnEvent.created_at})
SELECT %(ob_webhook_id)s, c.account_id, %(ob_type)s, c.id, {body}, %(ob_content_type)s,
    CASE WHEN e.{IpnEndpoint.disabled_at} IS NULL THEN %(ob_pending)s ELSE %(ob_skipped)s END,
    0, %(ob_now)s, 0, %(ob_now)s, c.at, %(ob_now)s
FROM changed c JOIN {IpnEndpoint} e ON e.{IpnEndpoint.account} = c.account_id
WHERE e.{IpnEndpoint.enabled} AND e.{IpnEndpoint.url} <> ''
  AND (e.{IpnEndpoint.events} = '[]'::jsonb OR e.{IpnEndpoint.events} @> jsonb_build_array(%(ob_type_wanted)s::text))
"""


@functools.cache
def _fast_report_sql(status: str) -> str:
    """The fast report's UPDATE for `status`, with its timeline entry and outbox row."""
    statuses = ", ".join(f"%(from{index})s" for index in range(len(_FAST_REPORT_FROM[status])))
    update = _sql(_FAST_REPORT_SQL, stamp=_sql(_FAST_REPORT_STAMPS[status]), from_statuses=statuses)
    timeline = _sql(
        "INSERT INTO {MessageEvent} ({MessageEvent.message}, {MessageEvent.status}, {MessageEvent.device},"
        " {MessageEvent.detail}, {MessageEvent.at})"
        " SELECT id, %(ev_status)s, %(ev_device)s, %(ev_detail)s, at FROM changed"
    )
    outbox = _sql(_FAST_REPORT_OUTBOX, body=_FAST_REPORT_BODY)
    # A `sent` also ends the phone's pause after failed sends, if it has one.
    end_pause = f", {_sql(_END_PAUSE_CTE).strip()}" if status == Status.SENT else ""
    return (
        f"WITH changed AS ({update}), timeline AS ({timeline}), outbox AS ({outbox}){end_pause}"  # noqa: S608
        " SELECT id, public_id, status FROM changed"
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _report_in_one_statement(*, device: Device, message_id: str, status: str, at: datetime | None) -> Message | None:
    """The message after the report, or None when the report needs the general path."""
    now = timezone.now()
    event_type = callbacks.MESSAGE_EVENT_TYPES[status]
    params: dict[str, Any] = {
        "status": status,
        "device": device.pk,
        "message": message_id,
        "account": device.account_id,
        "when": min(at, now) if at is not None else now,
        "standard": IpnEndpoint.Format.STANDARD,
        "ev_status": status,
        "ev_device": device.pk,
        "ev_detail": "",
        "ob_webhook_id": tokens.public_id("evt"),
        "ob_type": event_type,
        "ob_type_wanted": event_type,
        "ob_type_json": _json(event_type),
        "ob_device_id_json": _json(device.public_id),
        "ob_device_name_json": _json(device.name),
        "ob_content_type": ipn_services.JSON,
        "ob_pending": IpnEvent.Status.PENDING,
        "ob_skipped": IpnEvent.Status.SKIPPED,
        "ob_now": now,
    }
    params.update({f"from{index}": value for index, value in enumerate(_FAST_REPORT_FROM[status])})
    with connection.cursor() as cursor:
        cursor.execute(_fast_report_sql(status), params)
        row = cursor.fetchone()
    if row is None:
        return None
    message = rawsql.instance(Message, ("id", "public_id", "status"), row[:3])
    message.device = device
    if status == Status.SENT:
        device.paused_until, device.failures_in_a_row = None, 0  # as the statement left its row
    return message


def _apply_report(
    message: Message, endpoint: IpnEndpoint | None, *, device: Device, status: str, error: str, at: datetime | None
) -> bool:
    """Moves `message` (as just read) by the report, if the report may move it, with its
    timeline entries, refund or reversal, and IPN events in one transaction. The UPDATE is
    conditional on the status and attempt count read, so a concurrent change makes it
    return False (read again), never overwrite."""
    if status == Status.FAILED and message.device_id != device.pk:
        return True  # a previous holder's failure: the message is someone else's now
    normal, overruled = REPORT_FROM[status]
    if message.status not in normal and message.status not in overruled:
        return True  # a duplicate, or it would move the message backwards
    now = timezone.now()
    when = max(min(at, now) if at is not None else now, message.created_at)
    error_class = send_errors.classify(error) if status == Status.FAILED else None
    if error_class is not None and send_errors.fails_over(error_class):
        tried = _phones_that_failed(message, device=device)
        if _may_fail_over(message, tried=tried):
            return _fail_over(message, device=device, error=error, at=when, phone_number=len(tried))
    # A delivery is a sending too: with no `sent` recorded, `sent` comes first.
    steps = [Status.SENT, status] if status == Status.DELIVERED and message.sent_at is None else [status]
    fields = _report_fields(message=message, device=device, status=status, error=error, at=when)
    was_refunded = message.status in overruled
    one_step = status != Status.FAILED and len(steps) == 1 and not was_refunded
    # SMSGate webhooks write rows of their own (ipn.services.record_event): the transaction.
    if connection.vendor == "postgresql" and one_step and not (endpoint is not None and endpoint.has_webhooks):
        return _apply_report_in_one_statement(message, endpoint, status=status, fields=fields, device=device, at=when)
    with transaction.atomic():
        # Only if nothing changed it since it was read (every claim counts an attempt).
        unchanged = Message.objects.filter(pk=message.pk, status=message.status, attempts=message.attempts)
        if not unchanged.update(status=status, **fields):
            return False
        MessageEvent.objects.bulk_create(
            MessageEvent(message_id=message.pk, status=step, device=device, detail=detail, at=when)
            for step, detail in _step_details(steps, status=status, error=error)
        )
        if status == Status.FAILED:
            account_services.refund_credit(message=message, reason=f"SMS {message.public_id} failed")
            if error_class is not None and send_errors.fails_over(error_class):
                device_services.pause_after_failed_send(device=device, now=now)
        elif was_refunded:
            # A late report of what really happened wins over expiry or a lapsed lease (R24).
            account_services.reverse_refund(message=message, reason=f"SMS {message.public_id} was sent after all")
        if Status.SENT in steps:
            device_services.end_pause(device=device)
        for step in steps:
            # Each callback describes the message as its own step left it (R11).
            step_fields = (
                fields
                if step == status
                else _report_fields(message=message, device=device, status=step, error="", at=when)
            )
            _apply_fields(message, status=step, **step_fields)
            if callbacks.wants_message_event(endpoint=endpoint, status=step):
                callbacks.record_message_event(message=message, status=step, occurred_at=when, endpoint=endpoint)
    return True


# --- Failover (docs/device-protocol.md, "Failed sends") ---------------------------------


def _phones_that_failed(message: Message, *, device: Device) -> set[int]:
    """The phones that failed this message so far, this one included."""
    failed = MessageEvent.objects.filter(message_id=message.pk, status=Status.FAILED, device__isnull=False)
    return {*failed.values_list("device_id", flat=True), device.pk}


def _may_fail_over(message: Message, *, tried: set[int]) -> bool:
    """Whether a phone-side failure sends the message to another phone: it is not pinned,
    fewer than MAX_FAILOVER_PHONES phones have tried it, and its list has an enabled phone
    that has not (online or not: a queued message waits for one, up to its TTL)."""
    if message.pinned_device_id is not None or message.phone_list_id is None or len(tried) >= MAX_FAILOVER_PHONES:
        return False
    others = Device.objects.filter(phone_list_id=message.phone_list_id, is_enabled=True, removed_at__isnull=True)
    return others.exclude(pk__in=tried).exists()


def _fail_over(message: Message, *, device: Device, error: str, at: datetime, phone_number: int) -> bool:
    """Puts a message this phone failed phone-side back in the queue for the list's other
    phones (this one may not claim it again), pauses this phone and offers the message
    again after commit. No callback and no refund: the message is still on its way. False
    if the message changed since it was read (read again)."""
    now = timezone.now()
    with transaction.atomic():
        # Only if this phone still holds it as read (every claim counts an attempt).
        held = Message.objects.filter(
            pk=message.pk, status=Status.ASSIGNED, device_id=device.pk, attempts=message.attempts
        )
        if not held.update(status=Status.QUEUED, device=None, lease_expires_at=None, error=error[:500]):
            return False
        detail = f"phone-side failure (phone {phone_number} of {MAX_FAILOVER_PHONES}); offered to the other phones"
        MessageEvent.objects.bulk_create(
            [
                MessageEvent(message_id=message.pk, status=Status.FAILED, device=device, detail=error[:500], at=at),
                MessageEvent(message_id=message.pk, status=Status.QUEUED, device=None, detail=detail, at=now),
            ]
        )
        device_services.pause_after_failed_send(device=device, now=now)
        _apply_fields(message, status=Status.QUEUED, device=None, lease_expires_at=None, error=error[:500])
        metrics.count_failover()
        transaction.on_commit(lambda: offers.offer_message(message=message))
    return True


def _apply_report_in_one_statement(
    message: Message, endpoint: IpnEndpoint | None, *, status: str, fields: dict[str, Any], device: Device, at: datetime
) -> bool:
    """`_apply_report` for a `sent` or `delivered` that moves an open message one step (no
    credit to give back, no `sent` to record first), on PostgreSQL: the conditional UPDATE,
    its timeline entry and its callback's outbox row as one statement, atomic on its own
    (one round trip instead of a transaction of five)."""
    unchanged = {"was": message.status, "attempts": message.attempts}
    # The callback describes the message as the report leaves it (R11).
    _apply_fields(message, status=status, **fields)
    outbox = (
        callbacks.build_message_event(message=message, status=status, occurred_at=at, endpoint=endpoint)
        if callbacks.wants_message_event(endpoint=endpoint, status=status)
        else None
    )
    params: dict[str, Any] = {"status": status, "pk": message.pk, **unchanged}
    params.update(ev_status=status, ev_device=device.pk, ev_detail="", ev_at=at)
    for name, value in fields.items():
        field = Message._meta.get_field(name)
        params[f"set_{name}"] = field.get_db_prep_save(  # type: ignore[union-attr]
            value.pk if isinstance(value, Model) else value, connection
        )
    outbox_fields = _outbox_fields() if outbox is not None else ()
    for field in outbox_fields:
        params[f"ob_{field.attname}"] = field.get_db_prep_save(field.pre_save(outbox, True), connection)
    with connection.cursor() as cursor:
        cursor.execute(_report_change_sql(tuple(fields), outbox is not None, status == Status.SENT), params)
        changed = cursor.fetchone() is not None
    if changed and status == Status.SENT:
        device.paused_until, device.failures_in_a_row = None, 0  # as the statement left its row
    return changed


@functools.cache
def _outbox_fields() -> tuple[Any, ...]:
    return tuple(field for field in IpnEvent._meta.concrete_fields if not field.primary_key)


@functools.cache
def _report_change_sql(names: tuple[str, ...], outbox: bool, end_pause: bool) -> str:
    """The statement of `_apply_report_in_one_statement` for the fields `names`."""
    sets = "".join(f", {{Message.{name}}} = %(set_{name})s" for name in names)
    where = " WHERE {Message.id} = %(pk)s AND {Message.status} = %(was)s AND {Message.attempts} = %(attempts)s"
    update = _sql(f"UPDATE {{Message}} SET {{Message.status}} = %(status)s{sets}{where} RETURNING {{Message.id}}")  # noqa: S608
    timeline = _sql(
        "INSERT INTO {MessageEvent} ({MessageEvent.message}, {MessageEvent.status}, {MessageEvent.device},"
        " {MessageEvent.detail}, {MessageEvent.at})"
        " SELECT id, %(ev_status)s, %(ev_device)s, %(ev_detail)s, %(ev_at)s FROM changed"
    )
    parts = [f"changed AS ({update})", f"timeline AS ({timeline})"]
    if end_pause:
        parts.append(_sql(_END_PAUSE_CTE).strip())
    if outbox:
        # INSERT … SELECT: PostgreSQL types each parameter by its target column.
        columns = ", ".join(connection.ops.quote_name(field.column) for field in _outbox_fields())
        values = ", ".join(f"%(ob_{field.attname})s" for field in _outbox_fields())
        table = _sql("{IpnEvent}")
        parts.append(f"outbox AS (INSERT INTO {table} ({columns}) SELECT {values} FROM changed)")  # noqa: S608
    return f"WITH {', '.join(parts)} SELECT id FROM changed"  # noqa: S608 (model names only; values are parameters)


def _step_details(steps: list[str], *, status: str, error: str) -> list[tuple[str, str]]:
    """Each step's timeline detail: the phone's error text for its own report."""
    return [(step, error[:500] if step == status else "recorded with the delivery report") for step in steps]


def _apply_fields(message: Message, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(message, name, value)


# --- Ends without a report (worker) -------------------------------------------------


def _end_message(*, pk: int, status: str, lookup: Q, error: str, detail: str) -> bool:
    """Moves one open message to a refunded end (`failed`/`expired`) with its event,
    refund and IPN event in one transaction. True if this call made the change."""
    now = timezone.now()
    stamp = {Status.FAILED: "failed_at", Status.EXPIRED: "expired_at"}[status]  # type: ignore[index]
    with transaction.atomic():
        changed = Message.objects.filter(lookup, pk=pk).update(
            status=status, lease_expires_at=None, error=error, **{stamp: now}
        )
        if not changed:
            return False
        message = Message.objects.select_related("device").get(pk=pk)
        MessageEvent.objects.create(message=message, status=status, device=message.device, detail=detail, at=now)
        account_services.refund_credit(message=message, reason=f"SMS {message.public_id} {status}")
        callbacks.record_message_event(message=message, status=status, occurred_at=now)
        metrics.count_timed_out(status=status)
    return True


def requeue_one_expired_lease() -> bool:
    """Step: puts one assignment whose lease lapsed back in the queue and re-offers it, or
    fails it (with a refund) after MAX_ATTEMPTS assignments. Returns "more work waiting?"."""
    now = timezone.now()
    candidate = (
        Message.objects.filter(status=Status.ASSIGNED, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values_list("pk", "attempts")
        .first()
    )
    if candidate is None:
        return False
    pk, attempts = candidate
    lapsed = Q(status=Status.ASSIGNED, lease_expires_at__lt=now)
    if attempts >= MAX_ATTEMPTS:
        _end_message(
            pk=pk,
            status=Status.FAILED,
            lookup=lapsed,
            error=f"No phone reported on it after {attempts} assignments.",
            detail="lease lapsed; no attempts left",
        )
        return True
    with transaction.atomic():
        if Message.objects.filter(lapsed, pk=pk).update(status=Status.QUEUED, lease_expires_at=None):
            message = Message.objects.get(pk=pk)
            MessageEvent.objects.create(message=message, status=Status.QUEUED, detail="lease lapsed; offered again")
            transaction.on_commit(lambda: offers.offer_message(message=message))
    return True


def expire_one_overdue_message() -> bool:
    """Step: ends one open message whose TTL has passed as `expired`, refunds it and
    writes its IPN event. Returns "more work waiting?"."""
    now = timezone.now()
    overdue = Q(status__in=Message.OPEN_STATUSES, expires_at__lte=now)
    pk = Message.objects.filter(overdue).order_by("expires_at").values_list("pk", flat=True).first()
    if pk is None:
        return False
    _end_message(pk=pk, status=Status.EXPIRED, lookup=overdue, error="", detail="no phone sent it before its TTL")
    return True


def offer_due_scheduled_messages() -> bool:
    """Step: tells the phones of every list with scheduled messages that became due since
    the last call. A watermark in the cache remembers how far it got; losing it only means
    a repeated hint, since phones also pull open work on their own. Returns False."""
    now = timezone.now()
    since = cache.get(SCHEDULED_WATERMARK_KEY) or now - SCHEDULED_LOOKBACK
    if since >= now:
        return False
    targets = set(
        Message.objects.filter(status=Status.QUEUED, send_at__gt=since, send_at__lte=now)
        .filter(send_at__gt=F("created_at"))
        .values_list("phone_list_id", "pinned_device_id")
        .distinct()
    )
    cache.set(SCHEDULED_WATERMARK_KEY, now, timeout=None)
    if targets:
        list_ids = {list_id for list_id, pinned in targets if pinned is None and list_id is not None}
        device_ids = {pinned for _list_id, pinned in targets if pinned is not None}
        transaction.on_commit(lambda: offers.announce_work(phone_list_ids=list_ids, device_ids=device_ids))
    return False
