"""Callback delivery counters for /metrics (the monitoring app serves them; docs/deploy.md)."""

from __future__ import annotations

from prometheus_client import Counter

from ipn.models import IpnAttempt

ATTEMPTS = Counter(
    "phonefleet_ipn_attempts",
    "Callback delivery attempts, by outcome: success, retry (failed, tried again later), permanent (failed for good).",
    ["outcome"],
)
for _outcome in IpnAttempt.Outcome.values:
    ATTEMPTS.labels(_outcome)  # every outcome is exported from the start, at 0
