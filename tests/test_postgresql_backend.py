"""The PostgreSQL backend's check before each request (config/postgresql/base.py): a quiet
connection is reused without a round trip, one the server closed is replaced before the
request's first query uses it."""

from __future__ import annotations

import time
from unittest import mock

import psycopg
import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

from config.postgresql.base import DatabaseWrapper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(pid: int) -> None:
    """Ends the server side of a connection from another one, and waits until it is gone."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.02)


def start_request() -> None:
    # What Django's request_started does to each connection (close_old_connections).
    connection.close_if_unusable_or_obsolete()


@pytest.fixture
def health_checked(postgres_only) -> DatabaseWrapper:
    wrapper = connections["default"]
    assert isinstance(wrapper, DatabaseWrapper)  # config/settings.py names this backend
    wrapper.ensure_connection()
    assert wrapper.health_check_enabled  # CONN_HEALTH_CHECKS (config/settings.py)
    return wrapper


def test_a_quiet_connection_is_reused_without_asking_the_server(health_checked):
    pid = backend_pid()
    with mock.patch.object(DjangoWrapper, "is_usable", autospec=True, return_value=True) as select_one:
        start_request()
        assert backend_pid() == pid
    assert select_one.call_count == 0


def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it(health_checked):
    pid = backend_pid()
    terminate(pid)
    start_request()
    # Without a check this query would fail (the server is gone) and the request answer 500.
    assert backend_pid() != pid


def test_a_connection_left_in_a_transaction_gets_the_full_check(health_checked):
    health_checked.connection.execute("BEGIN")
    with mock.patch.object(DjangoWrapper, "is_usable", autospec=True, return_value=True) as select_one:
        health_checked.health_check_done = False
        health_checked.close_if_health_check_failed()
    assert select_one.call_count == 1
    health_checked.connection.execute("ROLLBACK")
