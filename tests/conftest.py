"""Shared fixtures: the test cast is Alice (owner), Bob (another account that must see nothing)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from tests import factories
from tests.live import free_port, stop_process
from tests.pgbouncer import db_route, pgbouncer  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _fast_tests(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The test process keeps Python's own garbage collector (devices/lib/gc_policy.py is for
    # a server holding thousands of phones; the Daphnes tests start run with it).
    settings.DEVICE_GC_FREEZE = False
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _no_ipn_attempt_outlives_its_test():
    """An IPN attempt a test's worker step left running (a slow receiver) ends with the
    test: the next test's step must not record it into a database it never saw."""
    yield
    from concurrent.futures import wait

    from ipn import delivery

    wait(list(delivery._in_flight.turns.values()))
    delivery._in_flight.turns.clear()


@pytest.fixture(autouse=True)
def _fresh_claim_rounds(monkeypatch):
    """Each test starts with the claim rounds of a freshly started server process: tests
    reuse message ids (msg_0…), which a real server never sees twice so close together."""
    from devices import consumers
    from devices.rounds import ClaimRounds

    fresh = ClaimRounds(consumers._claim, consumers.fleet.phones_of, consumers.fleet.phones_online)
    monkeypatch.setattr(consumers, "claims", fresh)


@pytest.fixture(autouse=True)
def _close_async_test_connections():
    """Async tests reach the ORM in asgiref's shared sync thread and the phone consumer's ORM
    threads; close their connections afterwards so PostgreSQL can drop the test database."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from devices.consumer_base import close_orm_connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    close_orm_connections()


@pytest.fixture
def in_memory_layer(settings):
    """The in-memory channel layer: for checking what services send to a group from sync
    code (a Redis pub/sub subscription needs a live event loop; tests/messaging/test_offers.py
    covers the Redis path end to end)."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL (CI runs this against the real server)")


@pytest.fixture
def alice(db):
    return factories.make_account(credit=100, email="alice@example.com")


@pytest.fixture
def alice_list(alice):
    return factories.make_list(account=alice, name="Alice's phones")


@pytest.fixture
def alice_key(alice, alice_list):
    """(ApiKey, secret) with Alice's list as the default list."""
    return factories.make_api_key(account=alice, default_list=alice_list)


@pytest.fixture
def bob(db):
    return factories.make_account(credit=100, email="bob@example.com")


@pytest.fixture
def bob_list(bob):
    return factories.make_list(account=bob, name="Bob's phones")


@pytest.fixture
def bob_key(bob, bob_list):
    return factories.make_api_key(account=bob, default_list=bob_list)


@pytest.fixture
def own_redis() -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a free port: killed and restarted at will. Tests never
    stop the shared Redis: other test runs (pytest-xdist workers, other checkouts) use it."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.skip("needs redis-server")
    port = free_port()
    command = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    running: dict[str, Any] = {"url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        running["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill() -> None:
        running["process"].kill()
        running["process"].wait(10)

    running.update(start=start, kill=kill)
    start()
    yield running
    stop_process(running["process"])
