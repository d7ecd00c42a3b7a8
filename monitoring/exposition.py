"""What /metrics exports: the apps' counters, added up over this host's processes, and
the state of the service, read from the database when scraped.

Events (accepts, claims, reports, debits, callback attempts) are counted where they
happen, in whichever process: a counter costs the hot path a few microseconds and no I/O.
With PROMETHEUS_MULTIPROC_DIR set, every process writes its counts to files in that folder
and a scrape adds them up (monitoring/lib/multiprocess.py). State (phones online, the
queue, the callback backlog, worker heartbeats) is not counted anywhere: it is read from
the database, the one place that is right whichever process answers and whatever
process died since.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

# Imported so that each app's counters are exported from the start, at 0.
from accounts import metrics as _account_metrics  # noqa: F401
from devices.models import PRESENCE_TTL, PhoneList
from ipn import metrics as _ipn_metrics  # noqa: F401
from ipn.models import IpnEvent
from messaging import metrics as _message_metrics  # noqa: F401
from messaging.models import Message
from monitoring import health

logger = logging.getLogger(__name__)

# `_created` series double every counter's lines and mean nothing once processes add up.
disable_created_metrics()


def scrape() -> bytes:
    """The exposition text: counters and histograms, then the database's state."""
    registry = CollectorRegistry()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)  # one process: its own counters, and its CPU and memory
    registry.register(DatabaseState())
    return generate_latest(registry)


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class DatabaseState:
    """Gauges read from the database at scrape time (a few aggregate queries on indexes)."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge("phonefleet_database_up", "1 if the database answered this scrape's queries.")
        try:
            families = list(self._families())
        except Exception as exc:
            logger.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        now = timezone.now()
        tokens: dict[int | None, str] = {None: ""}  # messages whose list was deleted: list=""
        yield from self._phones(now, tokens)
        yield from self._queue(now, tokens)
        yield from self._callbacks(now)
        yield from self._workers(now)

    def _phones(self, now: datetime, tokens: dict[int | None, str]) -> Iterator[Metric]:
        online = Q(
            devices__is_enabled=True,
            devices__removed_at__isnull=True,
            devices__is_connected=True,
            devices__last_seen_at__gte=now - PRESENCE_TTL,
        )
        rows = PhoneList.objects.annotate(
            connected=Count("devices", filter=online),
            available=Count("devices", filter=online & Q(devices__is_available=True)),
        ).values_list("pk", "token", "connected", "available")
        connected = _gauge("phonefleet_phones_connected", "Phones online (R26 presence) per list.", ("list",))
        available = _gauge("phonefleet_phones_available", "Online phones ready to take work, per list.", ("list",))
        for pk, token, count, ready in rows:
            tokens[pk] = token
            connected.add_metric([token], count)
            available.add_metric([token], ready)
        yield connected
        yield available

    def _queue(self, now: datetime, tokens: dict[int | None, str]) -> Iterator[Metric]:
        rows = (
            Message.objects.filter(status=Message.Status.QUEUED, send_at__lte=now)
            .values_list("phone_list_id")
            .annotate(depth=Count("id"), oldest=Min("send_at"))
        )
        waiting = {tokens.get(list_id, ""): (depth, oldest) for list_id, depth, oldest in rows}
        depth = _gauge("phonefleet_queue_depth", "Messages due and waiting for a phone, per list.", ("list",))
        age = _gauge(
            "phonefleet_queue_oldest_age_seconds", "How long the oldest waiting message has been due.", ("list",)
        )
        for token in sorted(set(tokens.values()) - {""} | set(waiting)):
            count, oldest = waiting.get(token, (0, None))
            depth.add_metric([token], count)
            age.add_metric([token], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        yield depth
        yield age

    def _callbacks(self, now: datetime) -> Iterator[Metric]:
        due = Q(next_attempt_at__lte=now)
        state = IpnEvent.objects.filter(status=IpnEvent.Status.PENDING).aggregate(
            pending=Count("id"), due=Count("id", filter=due), oldest=Min("next_attempt_at", filter=due)
        )
        backlog = _gauge("phonefleet_ipn_backlog", "Callbacks due for delivery now.")
        backlog.add_metric([], state["due"])
        pending = _gauge("phonefleet_ipn_pending", "Callbacks not delivered yet (due, or waiting for a retry).")
        pending.add_metric([], state["pending"])
        late = _gauge("phonefleet_ipn_backlog_oldest_age_seconds", "How long the most overdue callback has been due.")
        late.add_metric([], (now - state["oldest"]).total_seconds() if state["oldest"] else 0.0)
        yield from (backlog, pending, late)

    def _workers(self, now: datetime) -> Iterator[Metric]:
        ages = health.heartbeat_ages(now)
        alive = _gauge("phonefleet_workers_alive", "Workers whose heartbeat is within WORKER_HEARTBEAT_MAX_AGE.")
        alive.add_metric([], sum(1 for age in ages if age <= settings.WORKER_HEARTBEAT_MAX_AGE))
        yield alive
        if ages:  # no series before any worker ever beat: alert on absent() or on workers_alive
            lag = _gauge("phonefleet_worker_heartbeat_age_seconds", "Seconds since the newest worker heartbeat.")
            lag.add_metric([], ages[0])
            yield lag
