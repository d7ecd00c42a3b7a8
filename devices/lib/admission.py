"""How many phone handshakes a server process takes on at once, and when to come back.

After a restart every phone of the fleet reconnects within seconds. A handshake that
waits in the process longer than Daphne's handshake timeout (5 s) is refused with HTTP
403, which a phone must read as "token revoked" (docs/device-protocol.md). So the process
takes on handshakes at a steady rate, a few at a time, and answers the rest at once with
"try later" and a time to come back. Those times are handed out like tickets, one slot
after another at the rate the process takes phones on (a little faster, TICKET_SHARE), so
the phones told to wait come back spread over the time the process needs for them
instead of all together.

The accept rate is a ceiling, not what a busy process manages: on a loaded machine a
Daphne finished 15–20 phone connects a second against an accept rate of 300 (docs/
benchmarks.md), so a second's worth in progress waited 15 s and more (the agent gives up
after 10) and the slots handed out were twenty times too early. So while the process is
busy (someone was told to wait, or the handshakes in progress reached their bound), it
measures how many handshakes it finishes a second, counting each "try later" it answered
as ANSWER_SHARE of one; the handshakes in progress are then bounded to PENDING_SECONDS of
that, and the slots are handed out at that rate. (Counting handshakes alone, the first
seconds after a restart, spent answering the whole fleet's first attempts, made the
process look several times slower than it was, and the slots handed out in them, most of
the fleet's, were as slow: 10,000 phones all back after 69 s instead of 37 s.)

`bench/restart_sim.py` replays a restart of a fleet against this class (phones back
within the second before their time, a process of a given CPU cost per handshake).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)
_spread = random.Random()

# Phones told to wait are given slots at this multiple of the rate the process can take
# them on. Above one: the rate measured in a storm is low (answering the storm costs the
# process too), and a phone that comes back to a busy process costs one more short answer,
# while a slot nobody comes back for is time lost (a simulated restart of 10,000 phones:
# 0.8 left the process idle a third of the time, all back after 95 s instead of 64).
TICKET_SHARE = 1.5
MAX_RETRY_AFTER = 60
# Log "told N phones to try later" at most this often.
SHED_LOG_SECONDS = 10.0
# While busy: handshakes in progress at most this many seconds of what the process finishes
# (and never fewer than MIN_PENDING), measured over windows of MEASURE_SECONDS.
PENDING_SECONDS = 2.0
MIN_PENDING = 10
MEASURE_SECONDS = 2.0
# What answering one handshake "try later" costs the process, in handshakes taken on: read
# the request and write a short answer (about 0.4 ms of a 3.7 ms connect, bench/
# connect_cost.py). The rate measured while busy counts the answers at this share.
ANSWER_SHARE = 0.1


@dataclass
class Admission:
    """A token bucket of `rate` handshakes a second (up to `burst` at once), of which at
    most `max_pending` may be in progress. Not thread-safe: one event loop uses it."""

    rate: float
    burst: int
    max_pending: int
    tokens: float = field(init=False)
    pending: int = 0
    updated: float = 0.0
    next_ticket: float = 0.0
    shed: int = 0  # handshakes answered "try later" so far
    shed_logged_at: float = -math.inf
    shed_logged_count: int = 0
    # Handshakes finished a second while busy (None: not measured, or not busy lately).
    measured: float | None = None
    window_start: float | None = None
    window_finished: int = 0
    window_answered: int = 0
    window_busy: bool = False

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def enter(self, now: float) -> int | None:
        """None: go ahead (call `leave()` when the handshake is done); otherwise the whole
        seconds after which to try again."""
        self._measure(now)
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.pending < self.pending_bound() and self.tokens >= 1:
            self.tokens -= 1
            self.pending += 1
            return None
        return self.later(now)

    def pending_bound(self) -> int:
        """Handshakes that may be in progress now (see the module docstring)."""
        if self.measured is None:
            return self.max_pending
        return max(MIN_PENDING, min(self.max_pending, int(self.measured * PENDING_SECONDS)))

    def slot_rate(self) -> float:
        """Handshakes a second the process can take on now: the accept rate, or what it
        was measured to finish while busy if that is less."""
        return self.rate if self.measured is None else max(1.0, min(self.rate, self.measured))

    def later(self, now: float) -> int:
        """Counts one phone told to try later; the whole seconds after which to come back:
        the next free slot, or, when every slot up to MAX_RETRY_AFTER is handed out, a time
        in that window's second half, at random and without taking a slot (all told the
        same 60 s, they came back together and were all told 60 again, while the slots
        they had pushed past 60 s went unused)."""
        self.shed += 1
        self.window_answered += 1
        self.window_busy = True
        ticket = max(self.next_ticket, now) + 1 / (self.slot_rate() * TICKET_SHARE)
        if ticket - now > MAX_RETRY_AFTER:
            return _spread.randint(MAX_RETRY_AFTER // 2, MAX_RETRY_AFTER)
        self.next_ticket = ticket
        return max(1, math.ceil(ticket - now))

    def leave(self) -> None:
        self.pending -= 1
        self.window_finished += 1

    def _measure(self, now: float) -> None:
        """Closes a measuring window every MEASURE_SECONDS: the rate it finished handshakes
        at becomes (half of) `measured` if the process was busy in it; a window that was
        not busy forgets the measurement (the process has room again)."""
        if self.pending >= self.pending_bound():
            self.window_busy = True
        if self.window_start is None:
            self.window_start = now
            return
        elapsed = now - self.window_start
        if elapsed < MEASURE_SECONDS:
            return
        if self.window_busy:
            finished = (self.window_finished + ANSWER_SHARE * self.window_answered) / elapsed
            self.measured = finished if self.measured is None else (self.measured + finished) / 2
        else:
            self.measured = None
        self.window_start, self.window_finished, self.window_answered, self.window_busy = now, 0, 0, False

    def shed_to_log(self, now: float) -> tuple[int, float] | None:
        """(phones told to try later, over how many seconds) once shedding starts and then
        at most every SHED_LOG_SECONDS while it goes on; None in between."""
        if now - self.shed_logged_at < SHED_LOG_SECONDS or self.shed == self.shed_logged_count:
            return None
        told, since = self.shed - self.shed_logged_count, min(now - self.shed_logged_at, SHED_LOG_SECONDS)
        self.shed_logged_at, self.shed_logged_count = now, self.shed
        return told, since


_process: Admission | None = None


def for_process(rate: float) -> Admission:
    """This process's admission (every WebSocket route and Daphne's protocol share it): at
    most a second's worth of handshakes at once and as many in progress (token check,
    groups, marking the phone connected: until its first frame); a new one when `rate`
    changes (tests)."""
    global _process
    if _process is None or _process.rate != rate:
        second = max(1, int(rate))
        _process = Admission(rate=rate, burst=second, max_pending=second)
    return _process


def log_shed(admission: Admission, now: float) -> None:
    """One warning when shedding starts, then one per SHED_LOG_SECONDS while it goes on."""
    report = admission.shed_to_log(now)
    if report is not None:
        logger.warning(
            "device handshakes: %d phones told to try later since %.0f s ago (accept rate %s/s)",
            report[0],
            report[1],
            admission.rate,
        )
