"""Message counters for /metrics (the monitoring app serves them; docs/deploy.md).

Each is counted where the event happens, in whichever process it happens; with
PROMETHEUS_MULTIPROC_DIR set the processes of a host add up (monitoring/lib/multiprocess.py).
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import transaction
from prometheus_client import Counter, Histogram

from messaging.models import Message

ACCEPTED = Counter("phonefleet_messages_accepted", "Messages accepted (single and bulk sends); rate() is accepts/s.")
DISPATCH_LATENCY = Histogram(
    "phonefleet_dispatch_latency_seconds",
    "From a message being due (accepted, or its scheduled time) to the first phone claiming it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
ASSIGNMENTS = Counter(
    "phonefleet_assignments", "Claims won: a phone took a message (again after a lapsed lease counts too)."
)
REPORTS = Counter("phonefleet_reports", "Reports phones made, by the outcome they report.", ["status"])
TIMED_OUT = Counter(
    "phonefleet_messages_timed_out",
    "Messages the worker ended: failed (no report after the last lease) or expired (TTL passed unsent).",
    ["status"],
)
for _status in (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.FAILED):
    REPORTS.labels(_status)  # exported from the start, at 0
for _status in (Message.Status.FAILED, Message.Status.EXPIRED):
    TIMED_OUT.labels(_status)


def count_accepted(*, count: int) -> None:
    """Counts messages just stored (in one statement, or a transaction of their own)."""
    ACCEPTED.inc(count)


def count_assignment(*, due_at: datetime, assigned_at: datetime, attempt: int) -> None:
    """The dispatch hook: call once per message a phone has just claimed (`attempt` is
    its assignment count, 1 the first time). Counted once the claim commits."""
    transaction.on_commit(functools.partial(_assigned, (assigned_at - due_at).total_seconds(), attempt))


def _assigned(latency: float, attempt: int) -> None:
    ASSIGNMENTS.inc()
    if attempt == 1:
        DISPATCH_LATENCY.observe(max(latency, 0.0))


def count_report(*, status: str) -> None:
    REPORTS.labels(status).inc()


def count_timed_out(*, status: str) -> None:
    transaction.on_commit(functools.partial(TIMED_OUT.labels(status).inc))


FAILOVERS = Counter(
    "phonefleet_failovers",
    "Messages a phone failed phone-side (radio off, no service, no SIM…) put back in the queue for"
    " the list's other phones.",
)


def count_failover() -> None:
    transaction.on_commit(FAILOVERS.inc)
