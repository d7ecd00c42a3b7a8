"""Credit counters for /metrics (the monitoring app serves them; docs/deploy.md)."""

from __future__ import annotations

from prometheus_client import Counter

DEBITS = Counter("phonefleet_credit_debits", "Debit entries booked in the ledger (one per message accepted).")
CREDITS_DEBITED = Counter("phonefleet_credits_debited", "Credits taken by those debits.")


def count_debits(*, entries: int, credits: int) -> None:
    """Counts debits just booked (the send path books them in one statement, committed by
    itself: no transaction is left open that could undo them)."""
    DEBITS.inc(entries)
    CREDITS_DEBITED.inc(credits)
