"""/health/ready on live servers whose dependencies really go away: PgBouncer in front of
the database is killed (the server's database address is then a dead port) and started
again, a Redis of the test's own is killed and started again, the worker is killed -9.
The shared PostgreSQL and Redis are never touched."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.live import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def health(server_url: str, which: str = "ready") -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{server_url}/health/{which}", timeout=20) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def failing(server_url: str) -> set[str]:
    """The names of the checks that fail now (empty when ready)."""
    status, body = health(server_url)
    names = {name for name, check in body["checks"].items() if not check["ok"]}
    assert (status == 200) == (not names), body
    return names


def wait_until_ready(server_url: str, what: str = "ready") -> None:
    wait_for(lambda: not failing(server_url), timeout=30, what=f"{server_url} {what}")


@pytest.mark.parametrize("db_route", ["pgbouncer"], indirect=True)
def test_ready_names_the_database_while_pgbouncer_is_gone_and_recovers_when_it_is_back(stack, db_route):
    web, phones = stack.gunicorn("gunicorn"), stack.daphne("daphne")  # persistent connections; a pool
    stack.worker()
    for server in (web, phones):
        wait_until_ready(server.url)

    db_route.kill()  # the servers' database address is now a dead port
    for server in (web, phones):
        status, body = health(server.url)
        assert status == 503
        assert body["status"] == "not ready"
        assert body["checks"]["database"]["ok"] is False
        assert body["checks"]["database"]["detail"].startswith("PostgreSQL did not answer (")
        assert body["checks"]["redis"]["ok"] is True
        assert health(server.url, "live") == (200, {"status": "alive"})

    db_route.start()
    for server in (web, phones):
        wait_until_ready(server.url, "ready again")


def test_ready_names_redis_while_it_is_gone_and_recovers_when_it_is_back(stack, own_redis):
    stack.env["REDIS_URL"] = own_redis["url"]
    web = stack.gunicorn("gunicorn")
    stack.worker()
    wait_until_ready(web.url)

    own_redis["kill"]()
    assert failing(web.url) == {"redis"}
    assert health(web.url)[1]["checks"]["redis"]["detail"] == (
        "Redis did not answer a PING (ConnectionError); the server log says why."
    )

    own_redis["start"]()
    wait_until_ready(web.url, "ready again")


def test_ready_fails_once_the_only_worker_is_killed_and_recovers_with_a_new_one(stack):
    stack.env["WORKER_HEARTBEAT_MAX_AGE"] = "2"  # a beat every 1/3 s
    web = stack.gunicorn("gunicorn")
    worker = stack.worker()
    wait_until_ready(web.url)

    worker.kill_hard()
    wait_for(lambda: failing(web.url) == {"worker"}, timeout=30, what="the heartbeat to go stale")
    detail = health(web.url)[1]["checks"]["worker"]["detail"]
    assert detail.startswith("The newest worker heartbeat is ") and "(limit 2 s)" in detail

    stack.worker("worker-2")
    wait_until_ready(web.url, "ready with the new worker")
