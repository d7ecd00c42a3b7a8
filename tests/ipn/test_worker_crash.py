"""At-least-once delivery on the real stack: `kill -9` the worker while it waits on a slow receiver; after a
restart the event still arrives (possibly twice, never zero times, same `webhook-id`)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from ipn import services as ipn_services
from ipn.models import IpnEvent
from messaging.services import callbacks
from tests.ipn.conftest import Reply, make_message
from tests.live import wait_for

ROOT = Path(__file__).resolve().parents[2]
# The worker under test gives up on a receiver after this long, so its lock lasts 3×2+5 s.
WORKER_TIMEOUT = "2"


def worker_env() -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTEST_CURRENT_TEST")}
    env.update(
        DATABASE_URL=url,
        SECRET_KEY=env.get("SECRET_KEY") or "worker-test",
        IPN_ALLOW_PRIVATE_NETWORKS="true",
        IPN_TIMEOUT_SECONDS=WORKER_TIMEOUT,
    )
    return env


def start_worker() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "worker"],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_loses_nothing(postgres_only, alice, alice_list, receiver, private_ok):
    endpoint = ipn_services.update_endpoint(account=alice, url=receiver.url, enabled=True)
    receiver.secret = endpoint.secret
    receiver.replies.append(Reply(200, delay=5))  # the first delivery hangs
    event = callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
    assert event is not None

    first_worker = start_worker()
    try:
        receiver.wait_for(1, timeout=30)
    finally:
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(10)
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.PENDING and not event.attempts_log.exists()

    second_worker = start_worker()
    try:
        requests = receiver.wait_for(2, timeout=40)
        wait_for(
            lambda: IpnEvent.objects.get(pk=event.pk).status == IpnEvent.Status.DELIVERED,
            timeout=20,
            what="the event delivered after the worker restart",
            every=0.05,
        )
    finally:
        second_worker.terminate()
        _out, err = second_worker.communicate(timeout=20)
    assert second_worker.returncode == 0, err.decode()[-2000:]
    assert {r.headers["webhook-id"] for r in requests} == {event.webhook_id}
    assert all(r.verified for r in requests)
