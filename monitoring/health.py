"""Readiness: whether this process can serve, dependency by dependency.

The database and Redis are asked from this process (a process pointed at the wrong
address is not ready even when the others are); the worker is judged by the newest
heartbeat any worker wrote (messaging/worker.py).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from messaging.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Redis gets this long to answer a readiness PING (a dead address must not hang the probe).
REDIS_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def readiness() -> dict[str, Check]:
    """Every dependency's check, by name; the process is ready when all are ok."""
    database = check_database()
    return {"database": database, "redis": check_redis(), "worker": check_worker(database_ok=database.ok)}


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.warning("readiness: the database did not answer: %s", exc)
        return Check(False, f"PostgreSQL did not answer ({type(exc).__name__}); the server log says why.")
    return Check(True, "answered")


@functools.cache
def _redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )


def check_redis() -> Check:
    if not settings.REDIS_URL:
        return Check(True, "not used: without REDIS_URL the channel layer and cache are in memory")
    try:
        _redis_client().ping()
    except Exception as exc:
        logger.warning("readiness: Redis did not answer: %s", exc)
        return Check(False, f"Redis did not answer a PING ({type(exc).__name__}); the server log says why.")
    return Check(True, "answered")


def heartbeat_ages(now: datetime) -> list[float]:
    """Seconds since each known worker's last heartbeat, youngest first."""
    beats = WorkerHeartbeat.objects.values_list("beat_at", flat=True)
    return sorted((now - beat).total_seconds() for beat in beats)


def check_worker(*, database_ok: bool) -> Check:
    if not database_ok:
        return Check(False, "unknown: heartbeats are in the database, which did not answer")
    limit = settings.WORKER_HEARTBEAT_MAX_AGE
    ages = heartbeat_ages(timezone.now())
    if not ages:
        return Check(False, "No worker has written a heartbeat: start `manage.py worker` (docs/deploy.md).")
    if ages[0] > limit:
        return Check(
            False,
            f"The newest worker heartbeat is {ages[0]:.0f} s old (limit {limit:.0f} s): "
            "no worker is running, or it is stuck.",
        )
    alive = sum(1 for age in ages if age <= limit)
    return Check(True, f"{alive} worker(s); the newest heartbeat is {ages[0]:.1f} s old")
