"""The garbage collector of a process that holds thousands of phone connections.

CPython's full collection (generation 2) walks every object it tracks with the event
loop stopped: in a Daphne holding 5,000 phones one took 1.5–1.7 s (`bench/soak.py
--stall-probe`), more with more phones, and every phone's offers waited behind it (the
dispatch p99 of several seconds at 10,000 phones, docs/benchmarks.md). An automatic full
collection runs whenever the objects that survived have grown by a quarter, which a
process taking phones on does again and again.

So a process holding phones (`devices.fleet.FleetScheduler` starts this) keeps its own:

- automatic full collections are off; the young ones run as always and collect the
  cycles that die young (most of a message's or a handshake's garbage);
- after each pass of the fleet (DEVICE_TICK_SECONDS) a full collection of what is not
  frozen (what survived since the last pass: short), then everything left is frozen
  (`gc.freeze()`: the collector does not walk it again);
- an object frozen while alive that later ends up in a garbage cycle (a connection that
  closed) is found only by a collection of everything: run when the phones that left
  since the last one are FULL_SHARE of those held (at least FULL_MIN), or every
  FULL_SECONDS. That one is as long as before, but rare, and at a time of our choosing.

`DEVICE_GC_FREEZE=false` leaves the collector as Python has it.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)

FULL_SHARE = 0.25
FULL_MIN = 1000
FULL_SECONDS = 3600.0
# A generation-2 threshold no process reaches: its count grows by one per generation-1
# collection (about every 7,000 allocations net).
AUTOMATIC_FULL_OFF = 1_000_000_000


class GcPolicy:
    """See the module docstring. One per process; the event loop's thread calls it."""

    def __init__(self) -> None:
        self.started = False
        self.left = 0  # phones that left since the last collection of everything
        self.full_at = 0.0
        self.thresholds: tuple[int, int, int] | None = None

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.thresholds = gc.get_threshold()
        gc.set_threshold(self.thresholds[0], self.thresholds[1], AUTOMATIC_FULL_OFF)
        self.full_at = time.monotonic()

    def stop(self) -> None:
        """Back to Python's own collector (tests)."""
        if not self.started:
            return
        self.started = False
        gc.unfreeze()
        if self.thresholds is not None:
            gc.set_threshold(*self.thresholds)
        self.left = 0

    def phone_left(self) -> None:
        self.left += 1

    def after_pass(self, held: int) -> None:
        """Collects what survived since the last pass and freezes the rest; everything,
        when enough phones have left or enough time has passed."""
        if not self.started:
            return
        started = time.perf_counter()
        now = time.monotonic()
        if self.left >= max(FULL_MIN, held * FULL_SHARE) or now - self.full_at >= FULL_SECONDS:
            frozen = gc.get_freeze_count()
            gc.unfreeze()
            collected = gc.collect()
            logger.info(
                "full collection: %d objects collected of %d frozen, %d phones left since the last, %.0f ms",
                collected,
                frozen,
                self.left,
                (time.perf_counter() - started) * 1000,
            )
            self.left, self.full_at = 0, now
        else:
            gc.collect()  # the frozen objects are not walked
        gc.freeze()


policy = GcPolicy()
