"""Reads of the delivery log shared by the API and the panel."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch

from ipn.models import IpnAttempt, IpnEvent


def recent_events(
    *, account_id: int, limit: int = 50, status: str | None = None, type: str | None = None
) -> list[IpnEvent]:
    """The account's newest events (newest first), each with its attempts, in three queries."""
    queryset = IpnEvent.objects.filter(account_id=account_id)
    if status:
        queryset = queryset.filter(status=status)
    if type:
        queryset = queryset.filter(type=type)
    return list(
        queryset.select_related("message")
        .prefetch_related(Prefetch("attempts_log", queryset=IpnAttempt.objects.order_by("at", "id")))
        .order_by("-created_at", "-id")[:limit]
    )


def get_event_for_account(*, account_id: int, webhook_id: str) -> IpnEvent | None:
    """The account's event with this `webhook-id`, or None (other accounts' ids too)."""
    return IpnEvent.objects.filter(account_id=account_id, webhook_id=webhook_id).first()


def count_replayable_since(*, account_id: int, since: datetime) -> int:
    """How many events `replay_failed_since` would queue again (for the panel's offer)."""
    return (
        IpnEvent.objects.filter(
            account_id=account_id, created_at__gte=since, status__in=[IpnEvent.Status.FAILED, IpnEvent.Status.SKIPPED]
        )
        .exclude(type="test")
        .count()
    )
