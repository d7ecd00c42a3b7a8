"""How many phone handshakes a server process takes on at once, and when to come back.

After a restart every phone of the fleet reconnects within seconds. A handshake that
waits in the process longer than Daphne's handshake timeout (5 s) is refused with HTTP
403, which a phone must read as "token revoked" (docs/device-protocol.md). So the process
takes on handshakes at a steady rate, a few at a time, and answers the rest at once with
"try later" and a time to come back. Those times are handed out like tickets, one slot of
the accept rate after another, so the phones told to wait come back spread over the time
the process needs for them instead of all together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Phones told to wait are given slots at this share of the accept rate: the rest is left
# for phones that arrive for the first time (or without reading the hint).
TICKET_SHARE = 0.8
MAX_RETRY_AFTER = 60


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

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def enter(self, now: float) -> int | None:
        """None: go ahead (call `leave()` when the handshake is done); otherwise the whole
        seconds after which to try again."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.pending < self.max_pending and self.tokens >= 1:
            self.tokens -= 1
            self.pending += 1
            return None
        self.shed += 1
        self.next_ticket = max(self.next_ticket, now) + 1 / (self.rate * TICKET_SHARE)
        return min(MAX_RETRY_AFTER, max(1, math.ceil(self.next_ticket - now)))

    def leave(self) -> None:
        self.pending -= 1
