"""Django's PostgreSQL backend, with a per-request health check that needs no round trip.

With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every request on
a persistent connection: for the send API that was a second round trip beside its one
statement, and a twentieth of a gunicorn worker's CPU. A connection the server closed (a
restart, `pg_terminate_backend`, a pooler dropping it) has something waiting on its
socket, its error and the end of the stream; a healthy idle one has nothing. So a
connection that is idle, outside a transaction, with nothing to read is reused as it is,
and any other still gets Django's `SELECT 1`. (A connection whose server vanished without
closing it passes both checks alike: `SELECT 1` would wait for the TCP timeout too.)
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's, set by `connect()` and at the start of each request (not in django-stubs).
    health_check_enabled: bool
    health_check_done: bool

    def close_if_health_check_failed(self) -> None:
        if self.connection is not None and self.health_check_enabled and not self.health_check_done:
            if is_quiet(self.connection):
                self.health_check_done = True
                return
        super().close_if_health_check_failed()


def is_quiet(connection: Any) -> bool:
    """Whether a psycopg connection is open, idle outside a transaction and has nothing
    waiting to be read (no message from the server since its last answer)."""
    pgconn = connection.pgconn  # libpq's own state (`connection.info` makes objects)
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    return not poller.poll(0)
