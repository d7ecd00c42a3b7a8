"""Correct PINs never lock anyone out (R30): an office enrolling its phones at once from
behind one NAT gets every phone in, over real concurrent HTTP requests to a live server."""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from accounts.models import LoginThrottle
from devices import services
from devices.models import Device
from tests.live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PHONES = 50


def test_50_phones_enrolling_at_once_from_one_address_all_get_in(postgres_only, alice_list, tmp_path):
    # A small pool keeps the server's connections to the shared PostgreSQL bounded.
    env = {"EMBEDDED_WORKER": "false", "DATABASE_POOL": "true", "DATABASE_POOL_SIZE": "20"}
    with LiveServer(tmp_path, **env) as server:
        start = threading.Barrier(PHONES)

        def enrol(n: int) -> tuple[int, str]:
            body = urllib.parse.urlencode({"pin": alice_list.pin, "name": f"Office phone {n}"}).encode()
            start.wait()
            try:
                with urllib.request.urlopen(f"{server.url}/api/device/v1/enroll", body, timeout=60) as answer:
                    return answer.status, ""
            except urllib.error.HTTPError as refused:
                return refused.code, refused.headers.get("Retry-After", "")

        with ThreadPoolExecutor(max_workers=PHONES) as pool:
            answers = list(pool.map(enrol, range(PHONES)))
    assert [status for status, _ in answers] == [200] * PHONES, answers
    assert Device.objects.filter(phone_list=alice_list).count() == PHONES
    row = LoginThrottle.objects.get(scope=services.enrol_address_scope("127.0.0.1"))
    assert (row.failures, row.pending, row.locked_until) == (0, 0, None)
