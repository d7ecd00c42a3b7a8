"""Worker heartbeats: each worker process's last sign of life, for /health/ready."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from messaging.models import WorkerHeartbeat

# Rows of workers silent this long are deleted (each restart writes a row of its own).
FORGET_AFTER = timedelta(days=1)


def record_heartbeat(*, worker: str, started_at: datetime) -> None:
    """Writes this worker's beat (its row inserted or updated in one statement) and deletes
    the rows of workers silent for FORGET_AFTER."""
    now = timezone.now()
    WorkerHeartbeat.objects.bulk_create(
        [WorkerHeartbeat(worker=worker, started_at=started_at, beat_at=now)],
        update_conflicts=True,
        unique_fields=["worker"],
        update_fields=["beat_at"],
    )
    WorkerHeartbeat.objects.filter(beat_at__lt=now - FORGET_AFTER).delete()
