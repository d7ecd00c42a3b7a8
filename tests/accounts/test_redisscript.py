"""accounts/lib/redisscript.py against the real Redis: the API-key check's script runner."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings

from accounts.lib.redisscript import ThreadScript

COUNT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def pool():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    made = redis.ConnectionPool.from_url(settings.REDIS_URL, client_name="redisscript-test")
    yield made
    made.disconnect()


@pytest.fixture
def key():
    return f"test:redisscript:{uuid.uuid4().hex}"


def test_it_runs_the_script_and_keeps_one_connection_per_thread(pool, key):
    script = ThreadScript(COUNT)
    assert [script(pool, [key], [2]) for _ in range(3)] == [2, 4, 6]
    with ThreadPoolExecutor(4) as threads:
        assert sorted(threads.map(lambda _n: script(pool, [key], [1]), range(40)))[-1] == 46
    client = redis.Redis(connection_pool=pool)
    assert 2 <= sum(1 for c in client.client_list() if c["name"] == "redisscript-test") <= 6


def test_a_redis_that_forgot_its_scripts_gets_the_script_again(pool, key):
    script = ThreadScript(COUNT)
    assert script(pool, [key], [1]) == 1
    redis.Redis(connection_pool=pool).script_flush()  # as a restart would
    assert script(pool, [key], [1]) == 2


def test_a_killed_connection_is_replaced_however_small_the_pool(key):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    # Its connections are not the pool's: a replaced one does not count against the cap.
    pool = redis.ConnectionPool.from_url(settings.REDIS_URL, max_connections=1)
    script = ThreadScript(COUNT)
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert script(pool, [key], [1]) == 1
    for expected in (2, 3):
        mine = script._local.connection
        mine.send_command("CLIENT", "ID")
        client.client_kill_filter(_id=mine.read_response())  # as a Redis restart would
        assert script(pool, [key], [1]) == expected
        assert script._local.connection is not mine
