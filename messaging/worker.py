"""The background worker: a loop over step functions.

Each step does one claimed unit of work and returns "more work waiting?".
Any number of workers may run side by side on PostgreSQL: every step claims its row
with a conditional UPDATE or SKIP LOCKED. In embedded mode the same loop runs in a
thread of the server process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

# Dotted paths of the step functions, run in this order on every tick.
STEPS = [
    "messaging.services.dispatch.requeue_one_expired_lease",
    "messaging.services.dispatch.expire_one_overdue_message",
    "messaging.services.dispatch.offer_due_scheduled_messages",
    "ipn.delivery.deliver_one_due_event",
    "messaging.services.idempotency.purge_idempotency_records",
]
# At most this many units of one step per tick, so one busy step cannot starve the others.
BATCH = 50
IDLE_SLEEP = 0.2


def load_steps() -> list[Callable[[], bool]]:
    return [import_string(path) for path in STEPS]


def run_tick(steps: list[Callable[[], bool]], stop: threading.Event | None = None) -> bool:
    """Runs every step until it has no more work (or BATCH units); True if any did work.
    Once `stop` is set it returns after the unit in progress (graceful shutdown)."""
    did_work = False
    for step in steps:
        for _ in range(BATCH):
            if stop is not None and stop.is_set():
                return did_work
            try:
                more = step()
            except Exception:
                logger.exception("worker step %s failed", getattr(step, "__name__", step))
                close_old_connections()
                break
            did_work = did_work or more
            if not more:
                break
    return did_work


def run_forever(stop: threading.Event, idle_sleep: float = IDLE_SLEEP) -> None:
    """Ticks until `stop` is set; sleeps only when there was nothing to do."""
    steps = load_steps()
    while not stop.is_set():
        close_old_connections()
        busy = run_tick(steps, stop)
        if not busy:
            stop.wait(idle_sleep)
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
