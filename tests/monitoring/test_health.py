"""/health/live and /health/ready in the process (the live-server versions, with the
database, Redis and the worker taken away for real, are in test_health_live.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from messaging import worker
from messaging.models import WorkerHeartbeat
from messaging.services import heartbeats
from monitoring import health
from tests.live import free_port

pytestmark = pytest.mark.django_db

CURRENT_TIME = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_redis_client():
    health._redis_client.cache_clear()
    yield
    health._redis_client.cache_clear()


def beat(worker_name: str = "host:1") -> None:
    heartbeats.record_heartbeat(worker=worker_name, started_at=timezone.now())


def test_live_answers_without_asking_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_ready_when_the_database_redis_and_a_worker_are_there(client):
    beat()
    response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "redis": True,
        "worker": True,
    }
    assert response["Cache-Control"].startswith("max-age=0")


def test_not_ready_before_any_worker_wrote_a_heartbeat(client):
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["worker"] == {
        "ok": False,
        "detail": "No worker has written a heartbeat: start `manage.py worker` (docs/deploy.md).",
    }
    assert body["checks"]["database"]["ok"] is True


def test_not_ready_when_the_newest_heartbeat_is_older_than_the_limit(client, settings):
    settings.WORKER_HEARTBEAT_MAX_AGE = 60
    with time_machine.travel(CURRENT_TIME, tick=False):
        beat("host:1")
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=30), tick=False):
        beat("host:2")
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=89), tick=False):
        assert client.get("/health/ready").status_code == 200  # host:2 is 59 s old
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=91), tick=False):
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["detail"].startswith(
        "The newest worker heartbeat is 61 s old (limit 60 s)"
    )


def test_not_ready_when_redis_does_not_answer(client, settings):
    beat()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {
        "ok": False,
        "detail": "Redis did not answer a PING (ConnectionError); the server log says why.",
    }
    assert checks["database"]["ok"] and checks["worker"]["ok"]


def test_without_redis_url_redis_is_not_a_dependency(client, settings):
    beat()
    settings.REDIS_URL = ""
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["ok"] is True


def test_the_worker_loop_writes_its_heartbeat_between_units_and_not_more_often(settings):
    settings.WORKER_HEARTBEAT_MAX_AGE = 60  # a beat every 10 s at most
    units: list[str] = []
    heartbeat = worker.Heartbeat()

    def step() -> bool:
        units.append("unit")
        return len(units) < 3

    with time_machine.travel(CURRENT_TIME, tick=False):
        worker.run_tick([step], heartbeat=heartbeat)
    beats = list(WorkerHeartbeat.objects.values_list("worker", "beat_at"))
    assert beats == [(heartbeat.worker, CURRENT_TIME)]
    assert len(units) == 3

    with time_machine.travel(CURRENT_TIME + timedelta(seconds=5), tick=False):
        worker.run_tick([lambda: False], heartbeat=heartbeat)
    assert WorkerHeartbeat.objects.get().beat_at == CURRENT_TIME  # not due yet

    heartbeat.due = 0  # its monotonic clock has passed the interval
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=10), tick=False):
        worker.run_tick([lambda: False], heartbeat=heartbeat)
    assert WorkerHeartbeat.objects.get().beat_at == CURRENT_TIME + timedelta(seconds=10)


def test_rows_of_workers_silent_for_a_day_are_deleted():
    with time_machine.travel(CURRENT_TIME, tick=False):
        beat("host:1")
    with time_machine.travel(CURRENT_TIME + timedelta(days=1, seconds=1), tick=False):
        beat("host:2")
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == ["host:2"]
