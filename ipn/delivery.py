"""Delivering the outbox: a claimed batch of due events per step, each signed fresh per
attempt, logged.

`deliver_one_due_event` is a worker step: `messaging/worker.py` runs it in
`manage.py worker` and in the embedded worker thread. Any number of workers may run it
side by side: each claims different rows (SKIP LOCKED). One step claims up to
CLAIM_BATCH due events, sends each account's one after the other on that account's
keep-alive connection and different accounts' at once, and records the outcomes in one
commit. A receiver slower than STEP_WAIT_SECONDS does not hold the step: its attempt goes
on in the background and a later step records it, while the other accounts' callbacks
keep flowing (their account is not claimed again until then).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.lookups import IsNull
from django.utils import timezone

from accounts.lib import sqlnames
from accounts.logging import redact
from ipn import metrics
from ipn.lib import safehttp, signing
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent, SmsGateWebhook

# Waits after the 1st … 7th failed attempt (Svix's schedule); the 8th failure is final.
RETRY_DELAYS = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
JITTER = 0.2
# The schedule always spans at least this long, whatever the jitter drew.
MIN_RETRY_SPAN = timedelta(hours=24)
# After a timeout or a 429, never come back sooner than this.
MIN_DELAY_AFTER_OVERLOAD = 60
# Only failures for this long disable an endpoint.
DISABLE_AFTER = timedelta(days=5)
# One worker step claims up to this many due events, oldest first.
CLAIM_BATCH = 64
# ... and sends to this many destinations (an account's IPN URL, an SMSGate webhook) at once.
PARALLEL_ACCOUNTS = 16
# A destination's events of one step go one after the other; after the first, another is
# started only while the previous one succeeded and at most this long after the claim
# ended, so that every attempt of the step ends within the claim's lock (see
# `lock_duration`) and a failing or slow receiver gets one attempt per step, as before
# batching. The rest go back unattempted.
ACCOUNT_TURN_SECONDS = 2.0
# A step waits this long for the attempts it started; those still running then (a slow or
# silent receiver, up to the timeout) are recorded by a later step, and their accounts are
# not claimed meanwhile. Without this, one account's receiver that never answers held
# every other account's next callbacks for the whole timeout, step after step.
STEP_WAIT_SECONDS = 0.5
# `last_success_at` is refreshed at most this often.
SUCCESS_STAMP_EVERY = timedelta(minutes=1)
SECRET_GRACE_PERIOD = timedelta(hours=24)
MAX_RESPONSE_BYTES = 20_000
USER_AGENT = "Phonefleet-IPN/1.0"

DISABLED_GONE = "disabled (410)"
DISABLED_FAILING = "disabled (failing for 5 days)"
# Said wherever a refused private address is reported: the one setting that allows it.
PRIVATE_NETWORKS_HINT = (
    "callbacks to loopback and private (LAN) addresses are refused unless the server runs with"
    " IPN_ALLOW_PRIVATE_NETWORKS=true (for a receiver on the server's own network)"
)


def timeout_seconds() -> float:
    """The per-request timeout: `IPN_TIMEOUT_SECONDS`, 10 s by default (docs/ipn.md)."""
    return float(getattr(settings, "IPN_TIMEOUT_SECONDS", 10.0))


def lock_duration() -> timedelta:
    """How long a claimed event stays with its worker: longer than any attempt can take
    (connect, write and read each have the timeout) started within ACCOUNT_TURN_SECONDS
    of the claim, short enough to recover from a crash."""
    return timedelta(seconds=3 * timeout_seconds() + 5)


def active_secrets(endpoint: IpnEndpoint, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, plus the previous one during its grace period."""
    found = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        found.append(endpoint.previous_secret)
    return found


def is_active(endpoint: IpnEndpoint | None) -> bool:
    return endpoint is not None and endpoint.enabled and bool(endpoint.url) and endpoint.disabled_at is None


def is_deliverable(event: IpnEvent, endpoint: IpnEndpoint | None) -> bool:
    """An SMSGate webhook's event goes while the webhook is on (its key is the endpoint's);
    any other while the account's IPN endpoint is active."""
    if event.smsgate_webhook_id is not None:
        return endpoint is not None and event.smsgate_webhook.disabled_at is None  # type: ignore[union-attr]
    return is_active(endpoint)


def _destination(event: IpnEvent, endpoint: IpnEndpoint, now: datetime, body: bytes) -> tuple[str, dict[str, str]]:
    """(URL, signature headers) of one attempt: an SMSGate webhook's, signed as SMSGate
    signs, or the account's IPN URL, signed the Standard Webhooks way."""
    timestamp = int(now.timestamp())
    hook = event.smsgate_webhook if event.smsgate_webhook_id is not None else None
    if hook is not None:
        return hook.url, signing.smsgate_headers(key=endpoint.smsgate_signing_key, body=body, timestamp=timestamp)
    secrets = active_secrets(endpoint, now)
    headers = signing.webhook_headers(secrets=secrets, webhook_id=event.webhook_id, timestamp=timestamp, body=body)
    return endpoint.url, headers


# --- One attempt ------------------------------------------------------------------


def _retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _storable(raw: bytes, limit: int) -> str:
    """Text a database column takes: invalid UTF-8 and NULs replaced, at most `limit` bytes."""
    text = raw.decode(errors="replace").replace("\x00", "\ufffd")
    return text.encode()[:limit].decode(errors="ignore")


def attempt(*, event: IpnEvent, endpoint: IpnEndpoint, is_test: bool = False) -> IpnAttempt:
    """Signs the stored body for this moment, POSTs it, and returns the attempt's log
    row, not yet saved. Its outcome says what follows: success, retry, or permanent."""
    now = timezone.now()
    body = event.body.encode()
    url, signature = _destination(event, endpoint, now, body)
    headers = {"Content-Type": event.content_type, "User-Agent": USER_AGENT, **signature}
    # The delivery log keeps the URL without its credentials (`user:pass@`, `?token=`).
    log = IpnAttempt(event=event, at=now, url=redact(url), is_test=is_test, is_replay=event.replays > 0)
    started = time.monotonic()
    try:
        answer = safehttp.post(
            url,
            content=body,
            headers=headers,
            timeout=timeout_seconds(),
            max_response_bytes=MAX_RESPONSE_BYTES,
            allow_private=settings.IPN_ALLOW_PRIVATE_NETWORKS,
        )
    except safehttp.DeliveryError as exc:
        hint = f" ({PRIVATE_NETWORKS_HINT})" if isinstance(exc, safehttp.ForbiddenAddress) else ""
        log.error = _storable(f"{exc.kind}: {exc}{hint}".encode(), 500)
        log.outcome = IpnAttempt.Outcome.PERMANENT if exc.permanent else IpnAttempt.Outcome.RETRY
    else:
        log.status_code = answer.status_code
        log.response_body = _storable(answer.body, MAX_RESPONSE_BYTES)
        retry_after = _retry_after_seconds(answer.headers.get("Retry-After"), now)
        log.retry_after = None if retry_after is None else min(int(retry_after), 10**6)
        if 200 <= answer.status_code < 300:
            log.outcome = IpnAttempt.Outcome.SUCCESS
        elif answer.status_code == 410:
            log.error = "410 Gone: the endpoint is disabled"
            log.outcome = IpnAttempt.Outcome.PERMANENT
        else:
            # 3xx included: redirects are never followed.
            log.error = f"HTTP {answer.status_code}"
            log.outcome = IpnAttempt.Outcome.RETRY
    log.latency_ms = int((time.monotonic() - started) * 1000)
    metrics.ATTEMPTS.labels(log.outcome).inc()
    return log


def next_delay(*, event: IpnEvent, log: IpnAttempt, now: datetime) -> float | None:
    """Seconds until the next attempt after a failed one, or None when retries are
    exhausted. `event.attempts` counts the attempt just made."""
    if event.attempts > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[event.attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if log.status_code == 429 or log.error.startswith(safehttp.Timeout.kind):
        delay = max(delay, MIN_DELAY_AFTER_OVERLOAD)
    if log.retry_after is not None:
        # Honoured, but clamped to 1×–2× our own delay.
        delay = min(max(float(log.retry_after), delay), 2 * delay)
    if event.attempts == len(RETRY_DELAYS):
        # The last retry waits until the schedule has lasted a day, even after short jitters.
        delay = max(delay, (event.schedule_started_at + MIN_RETRY_SPAN - now).total_seconds())
    return delay


def _needs_success_stamp(target: IpnEndpoint | SmsGateWebhook, now: datetime) -> bool:
    """Whether a success changes the destination's health as last read (else no
    statement: the next claim reads it afresh)."""
    stamped = target.last_success_at
    return target.failing_since is not None or stamped is None or stamped < now - SUCCESS_STAMP_EVERY


def _record_health(event: IpnEvent, endpoint: IpnEndpoint, log: IpnAttempt, now: datetime) -> None:
    """Success resets the failing clock; 410, or failing for 5 days, disables: the event's
    SMSGate webhook, or else the account's IPN endpoint."""
    endpoints: QuerySet[IpnEndpoint] | QuerySet[SmsGateWebhook] = (
        SmsGateWebhook.objects.filter(pk=event.smsgate_webhook_id)
        if event.smsgate_webhook_id is not None
        else IpnEndpoint.objects.filter(pk=endpoint.pk)
    )
    if log.outcome == IpnAttempt.Outcome.SUCCESS:
        # Written only when it changes something (or once a minute): a busy endpoint's
        # row is not rewritten, and locked, on every delivery.
        stale = (
            Q(failing_since__isnull=False)
            | Q(last_success_at__isnull=True)
            | Q(last_success_at__lt=now - SUCCESS_STAMP_EVERY)
        )
        endpoints.filter(stale).update(failing_since=None, last_success_at=now)
        return
    if log.status_code == 410:
        endpoints.filter(disabled_at__isnull=True).update(disabled_at=now, disabled_reason=DISABLED_GONE)
        return
    endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    endpoints.filter(disabled_at__isnull=True, failing_since__lte=now - DISABLE_AFTER).update(
        disabled_at=now, disabled_reason=DISABLED_FAILING
    )


# --- The worker step ----------------------------------------------------------------


@contextmanager
def _bookkeeping() -> Iterator[None]:
    """A transaction for delivery state whose commit does not wait for the disk on
    PostgreSQL. A database crash can lose only such a commit, and so at worst repeats a
    delivery (at least once allows it); the event row itself was committed durably by the
    transaction that created it."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _earlier_unsettled(now: datetime) -> QuerySet[IpnEvent]:
    """For the outer event: an earlier event of the same message that has not had its
    first attempt yet, or is being attempted. Waiting for it makes a message's callbacks
    arrive in the order they happened (`message.sent` before `message.delivered`) at a
    receiver that answers, however many workers run; once that attempt has failed, later
    events no longer wait for its retries (order is not promised then: R11).

    Except one the same claim takes along (`_taken_along`): an earlier event that is free,
    due no later and goes to the same destination is claimed with it and attempted first,
    on the same connection, and the later one only if it succeeded (`_take_turns`)."""
    return IpnEvent.objects.filter(
        Q(attempts=0) | Q(locked_until__gt=now),
        message_id=OuterRef("message_id"),
        pk__lt=OuterRef("pk"),
        status=IpnEvent.Status.PENDING,
    ).exclude(_taken_along(now))


def _taken_along(now: datetime) -> Q:
    """For an earlier event of the outer event's message: free, due no later than the
    outer one, to the same destination (`_destination_key`). The claim that takes the
    outer event takes this one too (it comes first in the claim's order) unless another
    worker's claim holds it at that moment, which `_claim_in_one_statement` checks."""
    same_hook = Q(smsgate_webhook_id=OuterRef("smsgate_webhook_id")) | Q(
        IsNull(OuterRef("smsgate_webhook_id"), True), smsgate_webhook__isnull=True
    )
    return (
        (Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        & Q(account_id=OuterRef("account_id"), next_attempt_at__lte=OuterRef("next_attempt_at"))
        & same_hook
    )


def _claim_due_events(
    now: datetime, limit: int, busy: set[int] | frozenset[int] = frozenset()
) -> tuple[list[IpnEvent], bool]:
    """(the claimed events, whether any was due): up to `limit` due events, oldest first,
    none of the `busy` accounts' (an attempt of theirs is still running here).
    SKIP LOCKED lets workers side by side take different rows, and only the rows taken are
    locked; the claim sets only `locked_until` (a due event is one whose lock has ended
    too), so a crashed worker's events become due again by themselves, and the claim
    changes no indexed column: PostgreSQL can update the row in place (HOT), without an
    entry in each of its indexes."""
    until = now + lock_duration()
    if connection.vendor == "postgresql":
        events = _claim_in_one_statement(now, until, limit, busy)
        return events, bool(events)
    with _bookkeeping():
        picked = list(
            IpnEvent.objects.select_for_update(skip_locked=True)
            .filter(status=IpnEvent.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
            .exclude(Exists(_earlier_unsettled(now)))
            .exclude(account_id__in=busy)
            .order_by("next_attempt_at", "id")
            .values_list("pk", flat=True)[:limit]
        )
        if picked:
            IpnEvent.objects.filter(pk__in=picked).update(locked_until=until, attempts=F("attempts") + 1)
        if not picked:
            return [], False
    # The events only: their accounts' IPN settings are read once per account by the step
    # (an Account and an IpnEndpoint built for every event row cost more).
    claimed = IpnEvent.objects.select_related("smsgate_webhook").in_bulk(picked)
    # In the order they were due.
    return [claimed[pk] for pk in picked if pk in claimed and claimed[pk].locked_until == until], True


# `_claim_due_events` on PostgreSQL: the same choice as its ORM query (due, not locked, no
# earlier event of the same message unsettled: `_earlier_unsettled`), locked and stamped
# in one statement written once, instead of a SELECT … FOR UPDATE and an UPDATE the ORM
# compiles on every step (about 5 ms of the worker's CPU per step, most of it when nothing
# is due; docs/benchmarks.md). It returns the claimed rows themselves, and commits on its
# own without waiting for the disk (`_bookkeeping`'s reason; `set_config(…, true)` is
# SET LOCAL inside the statement): one round trip instead of BEGIN, SET, the claim, a
# read of the rows and COMMIT. Each row comes with the earlier events of its message that
# would have held it back (as of the statement's snapshot): an event taken along with them
# (`_taken_along`) is kept only if this claim took them all.
_CLAIM_SQL = """
WITH picked AS (
    SELECT e.{IpnEvent.id} AS id, e.{IpnEvent.next_attempt_at} AS due FROM {IpnEvent} e
    WHERE e.{IpnEvent.status} = %(pending)s AND e.{IpnEvent.next_attempt_at} <= %(now)s
      AND (e.{IpnEvent.locked_until} IS NULL OR e.{IpnEvent.locked_until} <= %(now)s)
      AND NOT (e.{IpnEvent.account} = ANY(%(busy)s))
      AND NOT EXISTS (
          SELECT 1 FROM {IpnEvent} p
          WHERE p.{IpnEvent.message} = e.{IpnEvent.message} AND p.{IpnEvent.id} < e.{IpnEvent.id}
            AND p.{IpnEvent.status} = %(pending)s
            AND (p.{IpnEvent.attempts} = 0 OR p.{IpnEvent.locked_until} > %(now)s)
            AND NOT (
                (p.{IpnEvent.locked_until} IS NULL OR p.{IpnEvent.locked_until} <= %(now)s)
                AND p.{IpnEvent.account} = e.{IpnEvent.account}
                AND p.{IpnEvent.next_attempt_at} <= e.{IpnEvent.next_attempt_at}
                AND p.{IpnEvent.smsgate_webhook} IS NOT DISTINCT FROM e.{IpnEvent.smsgate_webhook}))
    ORDER BY e.{IpnEvent.next_attempt_at}, e.{IpnEvent.id}
    LIMIT %(limit)s
    FOR UPDATE OF e SKIP LOCKED
)
UPDATE {IpnEvent} u SET {IpnEvent.locked_until} = %(until)s, {IpnEvent.attempts} = u.{IpnEvent.attempts} + 1
FROM picked, (SELECT set_config('synchronous_commit', 'off', true)) AS quick_commit
WHERE u.{IpnEvent.id} = picked.id
RETURNING picked.due, ARRAY(
    SELECT p.{IpnEvent.id} FROM {IpnEvent} p
    WHERE p.{IpnEvent.message} = u.{IpnEvent.message} AND p.{IpnEvent.id} < u.{IpnEvent.id}
      AND p.{IpnEvent.status} = %(pending)s
      AND (p.{IpnEvent.attempts} = 0 OR p.{IpnEvent.locked_until} > %(now)s)
), {columns}
"""


@cache
def _event_fields() -> tuple[str, ...]:
    return tuple(field.attname for field in IpnEvent._meta.concrete_fields)


@cache
def _claim_sql() -> str:
    columns = ", ".join(f"u.{{IpnEvent.{name}}}" for name in _event_fields())
    return sqlnames.sql(_CLAIM_SQL.replace("{columns}", columns), quote=connection.ops.quote_name, IpnEvent=IpnEvent)


def _claim_in_one_statement(
    now: datetime, until: datetime, limit: int, busy: set[int] | frozenset[int]
) -> list[IpnEvent]:
    """The events claimed, in the order they were due, with their SMSGate webhooks."""
    params: dict[str, Any] = {
        "pending": IpnEvent.Status.PENDING,
        "now": now,
        "until": until,
        "limit": limit,
        "busy": sorted(busy),
    }
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), params)
        rows = cursor.fetchall()
    # PostgreSQL's values need no conversion for these fields (Model.from_db as a queryset).
    fields = _event_fields()
    events: list[IpnEvent] = []
    kept: set[int] = set()
    given_back: list[int] = []
    for row in sorted(rows, key=lambda r: (r[0], r[2])):
        # An event taken along with earlier ones of its message whose claim another worker
        # won meanwhile (SKIP LOCKED passed them by) goes back: it waits for them.
        if all(earlier in kept for earlier in row[1]):
            events.append(IpnEvent.from_db(connection.alias, fields, row[2:]))
            kept.add(row[2])
        else:
            given_back.append(row[2])
    if given_back:
        IpnEvent.objects.filter(pk__in=given_back, locked_until=until).update(
            locked_until=None, attempts=F("attempts") - 1
        )
    hook_ids = {event.smsgate_webhook_id for event in events if event.smsgate_webhook_id is not None}
    if not hook_ids:
        return events
    hooks = SmsGateWebhook.objects.in_bulk(hook_ids)
    for event in events:
        if event.smsgate_webhook_id in hooks:
            event.smsgate_webhook = hooks[event.smsgate_webhook_id]
    # A webhook deleted meanwhile takes its events with it (CASCADE).
    return [event for event in events if event.smsgate_webhook_id is None or event.smsgate_webhook_id in hooks]


Attempted = tuple[IpnEvent, IpnEndpoint, IpnAttempt]


def _destination_key(event: IpnEvent) -> tuple[int, int | None]:
    """Where an event goes: its account's IPN URL, or one of its SMSGate webhooks."""
    return event.account_id, event.smsgate_webhook_id


# `_finish_batch` on PostgreSQL when every attempt succeeded and no destination's health
# changes (the common case): the attempt rows and the events' `delivered`, as one
# statement that commits on its own without waiting for the disk (`_bookkeeping`), instead
# of BEGIN, SET, an INSERT and an UPDATE compiled by the ORM, and COMMIT. Each event
# changes only while it is still this claim's (its `locked_until`), as below.
_DELIVERED_SQL = """
WITH quick_commit AS (SELECT set_config('synchronous_commit', 'off', true)),
logged AS (
    INSERT INTO {IpnAttempt} ({attempt_columns})
    SELECT * FROM unnest({attempt_arrays})
)
UPDATE {IpnEvent} u SET {IpnEvent.status} = %(delivered)s, {IpnEvent.delivered_at} = %(finished)s,
    {IpnEvent.locked_until} = NULL
FROM unnest(%(ids)s::bigint[], %(locks)s::timestamptz[]) AS mine(id, locked_until), quick_commit
WHERE u.{IpnEvent.id} = mine.id AND u.{IpnEvent.locked_until} = mine.locked_until
"""


@cache
def _attempt_fields() -> tuple[str, ...]:
    return tuple(field.attname for field in IpnAttempt._meta.concrete_fields if not field.primary_key)


@cache
def _delivered_sql() -> str:
    fields = [field for field in IpnAttempt._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    arrays = ", ".join(f"%(a{n})s::{field.db_type(connection)}[]" for n, field in enumerate(fields))
    template = _DELIVERED_SQL.replace("{attempt_columns}", columns).replace("{attempt_arrays}", arrays)
    return sqlnames.sql(template, quote=connection.ops.quote_name, IpnEvent=IpnEvent, IpnAttempt=IpnAttempt)


def _all_delivered_quietly(attempted: list[Attempted], returned: list[IpnEvent], now: datetime) -> bool:
    """Whether every event was attempted, with success, and no destination needs its
    success stamped (`_needs_success_stamp`)."""
    if returned or any(log.outcome != IpnAttempt.Outcome.SUCCESS for _e, _p, log in attempted):
        return False
    targets = {
        _destination_key(event): event.smsgate_webhook if event.smsgate_webhook_id is not None else endpoint
        for event, endpoint, _log in attempted
    }
    return not any(target is not None and _needs_success_stamp(target, now) for target in targets.values())


def _finish_delivered_in_one_statement(attempted: list[Attempted], finished: datetime) -> None:
    params: dict[str, Any] = {
        f"a{n}": [getattr(log, name) for _e, _p, log in attempted] for n, name in enumerate(_attempt_fields())
    }
    params.update(
        delivered=IpnEvent.Status.DELIVERED,
        finished=finished,
        ids=[event.pk for event, _p, _l in attempted],
        locks=[event.locked_until for event, _p, _l in attempted],
    )
    with connection.cursor() as cursor:
        cursor.execute(_delivered_sql(), params)


def _finish_batch(attempted: list[Attempted], returned: list[IpnEvent]) -> None:
    """Logs the attempts and schedules what follows each, with the endpoints' health, and
    gives back the events that were claimed but not attempted, in one commit."""
    finished = timezone.now()
    if connection.vendor == "postgresql" and attempted and _all_delivered_quietly(attempted, returned, finished):
        _finish_delivered_in_one_statement(attempted, finished)
        return
    delivered: list[IpnEvent] = []
    with _bookkeeping():
        IpnAttempt.objects.bulk_create([log for _event, _endpoint, log in attempted])
        by_destination: dict[tuple[int, int | None], list[Attempted]] = {}
        for made in attempted:
            by_destination.setdefault(_destination_key(made[0]), []).append(made)
        for made_here in by_destination.values():
            # A destination's attempts stop at its first failure: at most one success
            # stamp, then at most that failure.
            event, endpoint = made_here[0][0], made_here[0][1]
            target = event.smsgate_webhook if event.smsgate_webhook_id is not None else endpoint
            success = next((log for _e, _p, log in made_here if log.outcome == IpnAttempt.Outcome.SUCCESS), None)
            if success is not None and target is not None and _needs_success_stamp(target, finished):
                _record_health(event, endpoint, success, finished)
            if made_here[-1][2].outcome != IpnAttempt.Outcome.SUCCESS:
                _record_health(event, endpoint, made_here[-1][2], finished)
        for event, _endpoint, log in attempted:
            if log.outcome == IpnAttempt.Outcome.SUCCESS:
                delivered.append(event)
                continue
            retry = log.outcome == IpnAttempt.Outcome.RETRY
            delay = next_delay(event=event, log=log, now=finished) if retry else None
            changes: dict[str, object] = (
                {"status": IpnEvent.Status.FAILED}
                if delay is None
                else {"next_attempt_at": finished + timedelta(seconds=delay)}
            )
            # Only while it is still ours: a worker that overran its lock changes nothing.
            IpnEvent.objects.filter(pk=event.pk, locked_until=event.locked_until).update(locked_until=None, **changes)
        for events, changes in (
            (delivered, {"status": IpnEvent.Status.DELIVERED, "delivered_at": finished}),
            # Not attempted: due again at once, and this claim's count taken back.
            (returned, {"next_attempt_at": finished, "attempts": F("attempts") - 1}),
        ):
            # By claim: the outcomes of several steps' claims may be recorded together.
            for locked_until, ids in _by_lock(events).items():
                IpnEvent.objects.filter(pk__in=ids, locked_until=locked_until).update(locked_until=None, **changes)


def _by_lock(events: list[IpnEvent]) -> dict[datetime | None, list[int]]:
    """The events' ids by the claim that holds them (their `locked_until`)."""
    found: dict[datetime | None, list[int]] = {}
    for event in events:
        found.setdefault(event.locked_until, []).append(event.pk)
    return found


def _finish(event: IpnEvent, endpoint: IpnEndpoint, log: IpnAttempt) -> None:
    """Logs one attempt and schedules what follows, in one commit with the endpoint's health."""
    _finish_batch([(event, endpoint, log)], [])


def _take_turns(
    turn: list[tuple[IpnEvent, IpnEndpoint]], until: float, stop: threading.Event | None
) -> tuple[list[Attempted], list[IpnEvent]]:
    """One destination's events, one after the other (one keep-alive connection): (the
    attempts made, the events left unattempted after a failure, once `stop` is set, or
    when a further one would start past `until`, a monotonic time). The first is always
    attempted unless the worker is stopping, as before batching: a slow claim can delay
    a step, never starve it."""
    made: list[Attempted] = []
    for index, (event, endpoint) in enumerate(turn):
        late = bool(made) and time.monotonic() > until
        failed = bool(made) and made[-1][2].outcome != IpnAttempt.Outcome.SUCCESS
        if late or failed or (stop is not None and stop.is_set()):
            return made, [event for event, _endpoint in turn[index:]]
        made.append((event, endpoint, attempt(event=event, endpoint=endpoint)))
    return made, []


@cache
def _senders() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=PARALLEL_ACCOUNTS, thread_name_prefix="ipn-send")


Turn = list[tuple[IpnEvent, IpnEndpoint]]
Outcomes = tuple[list[Attempted], list[IpnEvent]]


class _InFlight(threading.local):
    """This worker thread's attempts still running, by destination."""

    def __init__(self) -> None:
        self.turns: dict[tuple[int, int | None], Future[Outcomes]] = {}


_in_flight = _InFlight()


def _record_finished(futures: list[Future[Outcomes]]) -> bool:
    """Records, in one commit, the turns among `futures` that have ended (and forgets
    them); True if there were any."""
    done = {future for future in futures if future.done()}
    if not done:
        return False
    _in_flight.turns = {key: future for key, future in _in_flight.turns.items() if future not in done}
    outcomes = [future.result() for future in done]
    _finish_batch([made for made_here, _ in outcomes for made in made_here], [e for _, left in outcomes for e in left])
    return True


def deliver_one_due_event(stop: threading.Event | None = None) -> bool:
    """Worker step: records the attempts of earlier steps that ended meanwhile, claims up
    to CLAIM_BATCH due events of the accounts with none in flight, attempts them (each
    account's in turn, different accounts' in parallel: only the HTTP calls run in other
    threads, the database stays on this one), and records within STEP_WAIT_SECONDS what
    ended (the rest by a later step). Once `stop` (the worker's graceful stop) is set, no
    further attempt starts: those in progress finish and are recorded, the rest go back.
    Returns True when the claim was full (more may be waiting)."""
    _record_finished(list(_in_flight.turns.values()))
    if stop is not None and stop.is_set():
        finish_in_flight()
    events, was_due = _claim_due_events(timezone.now(), CLAIM_BATCH, busy={key[0] for key in _in_flight.turns})
    until = time.monotonic() + ACCOUNT_TURN_SECONDS
    turns: dict[tuple[int, int | None], Turn] = {}
    skipped: list[int] = []
    account_ids = {event.account_id for event in events}
    endpoints = (
        {found.account_id: found for found in IpnEndpoint.objects.filter(account_id__in=account_ids)}
        if account_ids
        else {}
    )
    for event in events:
        endpoint = endpoints.get(event.account_id)
        if endpoint is None or not is_deliverable(event, endpoint):
            skipped.append(event.pk)
        else:
            turns.setdefault(_destination_key(event), []).append((event, endpoint))
    if skipped:
        IpnEvent.objects.filter(pk__in=skipped, locked_until=events[0].locked_until).update(
            status=IpnEvent.Status.SKIPPED, locked_until=None
        )
    started = [_senders().submit(_take_turns, turn, until, stop) for turn in turns.values()]
    _in_flight.turns.update(zip(turns, started, strict=True))
    if started:
        wait(started, timeout=None if stop is not None and stop.is_set() else STEP_WAIT_SECONDS)
        _record_finished(started)
    # More waiting only if the claim was full: otherwise it took everything due then, and
    # what becomes due meanwhile waits for the next step (the worker's IDLE_SLEEP), a
    # batch at a time, instead of a claim of a few events after every step.
    return was_due and len(events) >= CLAIM_BATCH


def finish_in_flight() -> None:
    """Waits for this thread's attempts still running and records them (the worker's
    graceful stop: an attempt that started is recorded, never repeated)."""
    running = list(_in_flight.turns.values())
    if running:
        wait(running)
        _record_finished(running)


# --- Immediate sends (test button, replay) ------------------------------------------


def lock_for_replay(*, event: IpnEvent) -> bool:
    """Takes the event for an immediate send; False while a worker holds it."""
    now = timezone.now()
    until = now + lock_duration()
    won = (
        IpnEvent.objects.filter(pk=event.pk)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .update(locked_until=until)
    )
    event.locked_until = until
    return bool(won)


def deliver_now(*, event: IpnEvent, endpoint: IpnEndpoint, is_test: bool = False) -> IpnAttempt:
    """One attempt now for an event the caller locked. Success marks it delivered; a
    failure leaves a pending event's own schedule as it was. Test sends leave the
    endpoint's health alone."""
    event.refresh_from_db(fields=["replays", "status"])
    log = attempt(event=event, endpoint=endpoint, is_test=is_test)
    now = timezone.now()
    mine = IpnEvent.objects.filter(pk=event.pk, locked_until=event.locked_until)
    with transaction.atomic():
        log.save()
        if not is_test:
            _record_health(event, endpoint, log, now)
        if log.outcome == IpnAttempt.Outcome.SUCCESS:
            mine.update(status=IpnEvent.Status.DELIVERED, delivered_at=now, locked_until=None)
        else:
            mine.update(locked_until=None)
    return log
