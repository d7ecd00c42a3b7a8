"""The background worker: a loop over step functions.

Each step does one claimed unit of work and returns "more work waiting?".
Any number of workers may run side by side on PostgreSQL: every step claims its row
with a conditional UPDATE or SKIP LOCKED. In embedded mode the same loop runs in a
thread of the server process. Between units the loop writes the process's heartbeat,
which /health/ready checks.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import cast

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

from messaging.services import heartbeats

logger = logging.getLogger(__name__)

# Dotted paths of the step functions, run in this order on every tick.
STEPS = [
    "messaging.services.dispatch.requeue_one_expired_lease",
    "messaging.services.dispatch.expire_one_overdue_message",
    "messaging.services.dispatch.offer_due_scheduled_messages",
    "messaging.services.verify.expire_one_overdue_verification",
    "ipn.delivery.deliver_one_due_event",
    "messaging.services.idempotency.purge_idempotency_records",
]
# Run once when the loop stops: what a step left running in the background (an IPN
# attempt to a slow receiver) is waited for and recorded, never abandoned mid-way.
DRAINS = ["ipn.delivery.finish_in_flight"]
# At most this many units of one step per tick, so one busy step cannot starve the others.
BATCH = 50
IDLE_SLEEP = 0.2
# Steps whose work is not waited for by anyone within the second (a lapsed lease is
# already late by its lease, an overdue message or verification by its TTL; old
# idempotency records only take room) are asked again after this long when idle: each
# idle ask is a query (1-2 ms of worker CPU and some of PostgreSQL's), five times a
# second for nothing otherwise. Scheduled sends keep IDLE_SLEEP; callbacks, below.
HOUSEKEEPING_IDLE_SLEEP = 1.0
# The IPN step takes everything due in one claim (up to its batch) and says "more" only
# after a full one, so under load this rest is also how long a callback waits for the
# next claim: half of IDLE_SLEEP, for callbacks about as prompt as when the step was asked
# again after every claim (docs/benchmarks.md, "Fourth pass"), at about five more idle
# claims a second.
CALLBACK_IDLE_SLEEP = 0.1
CALLBACK_STEPS = frozenset({"ipn.delivery.deliver_one_due_event"})
HOUSEKEEPING_STEPS = frozenset(
    {
        "messaging.services.dispatch.requeue_one_expired_lease",
        "messaging.services.dispatch.expire_one_overdue_message",
        "messaging.services.verify.expire_one_overdue_verification",
        "messaging.services.idempotency.purge_idempotency_records",
    }
)


def load_steps() -> list[Callable[[], bool]]:
    return [import_string(path) for path in STEPS]


class Heartbeat:
    """This process's heartbeat, written between units of work at most every sixth of
    WORKER_HEARTBEAT_MAX_AGE: a worker stuck inside one unit goes stale."""

    def __init__(self) -> None:
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = timezone.now()
        self.due = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + settings.WORKER_HEARTBEAT_MAX_AGE / 6
        try:
            heartbeats.record_heartbeat(worker=self.worker, started_at=self.started_at)
        except Exception:
            logger.exception("worker heartbeat not written")
            close_old_connections()


def _run_step(
    step: Callable[[], bool],
    stop: threading.Event | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> tuple[bool, bool]:
    """Runs `step` until it has no more work (or BATCH units): (did it do work, is more
    waiting). After `stop` is set it returns after the unit in progress."""
    did_work = False
    for _ in range(BATCH):
        if stop is not None and stop.is_set():
            return did_work, False
        if heartbeat is not None:
            heartbeat()
        try:
            more = step()
        except Exception:
            logger.exception("worker step %s failed", getattr(step, "__name__", step))
            close_old_connections()
            return did_work, False
        did_work = did_work or more
        if not more:
            return did_work, False
    return did_work, True


def run_tick(
    steps: list[Callable[[], bool]],
    stop: threading.Event | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> bool:
    """Runs every step until it has no more work (or BATCH units); True if any did work.
    Once `stop` is set it returns after the unit in progress (graceful shutdown)."""
    did_work = False
    for step in steps:
        if stop is not None and stop.is_set():
            return did_work
        did, _more = _run_step(step, stop, heartbeat)
        did_work = did_work or did
    return did_work


def idle_sleeps() -> list[float]:
    """How long each of STEPS rests after finding nothing (more) to do."""
    return [
        HOUSEKEEPING_IDLE_SLEEP
        if path in HOUSEKEEPING_STEPS
        else CALLBACK_IDLE_SLEEP
        if path in CALLBACK_STEPS
        else IDLE_SLEEP
        for path in STEPS
    ]


def run_forever(stop: threading.Event, idle_sleep: float | None = None) -> None:
    """Runs the steps until `stop` is set. Each step is paced on its own: one that found
    nothing (more) to do is asked again `idle_sleep` later (by default its own pace,
    `idle_sleeps`), whatever the others are doing, so a busy step neither makes the idle
    ones poll the database in a loop nor runs its own work in slivers (what became due
    meanwhile is taken as one batch); one that stopped at BATCH units with more waiting
    goes on at once."""
    # A step that makes several attempts in one unit (IPN delivery) takes `stop` and starts
    # no new one once it is set.
    steps = [
        functools.update_wrapper(functools.partial(cast(Callable[..., bool], step), stop=stop), step)
        if "stop" in inspect.signature(step).parameters
        else step
        for step in load_steps()
    ]
    heartbeat = Heartbeat()
    rests = [idle_sleep] * len(steps) if idle_sleep is not None else idle_sleeps()
    resting_until = [0.0] * len(steps)
    while not stop.is_set():
        close_old_connections()
        for index, step in enumerate(steps):
            if stop.is_set():
                break
            if resting_until[index] <= time.monotonic():
                _did, more = _run_step(step, stop, heartbeat)
                if not more:
                    resting_until[index] = time.monotonic() + rests[index]
        pause = min(resting_until) - time.monotonic()
        if pause > 0:
            stop.wait(pause)
    for path in DRAINS:
        try:
            import_string(path)()
        except Exception:
            logger.exception("worker drain %s failed", path)
    close_old_connections()


_embedded: threading.Thread | None = None
_embedded_stop = threading.Event()


def start_embedded_worker() -> None:
    """Starts the worker loop in a daemon thread of this process (once)."""
    global _embedded
    if _embedded is not None and _embedded.is_alive():
        return
    _embedded_stop.clear()
    _embedded = threading.Thread(target=run_forever, args=(_embedded_stop,), name="phonefleet-worker", daemon=True)
    _embedded.start()
    logger.info("embedded worker started")


def stop_embedded_worker(timeout: float = 5.0) -> None:
    _embedded_stop.set()
    if _embedded is not None:
        _embedded.join(timeout)
