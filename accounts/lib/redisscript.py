"""A Lua script run on a Redis connection of the calling thread's own.

redis-py's command path (checking a connection out of the pool and back in under a lock,
the retry wrapper, the Script object) costs about 100 µs of CPU per call, more than
writing the command and reading its answer (bench/send.py; measured beside it). The
API-key check runs one script on every API call, so it keeps one connection per thread
(and per process: a forked child opens its own), made with the cache pool's settings so
it has the same address, database, password and timeouts, and writes EVALSHA to it
directly.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import redis
from redis.exceptions import NoScriptError


class ThreadScript:
    """`script(pool, keys, args)`: runs the script (EVALSHA, or EVAL once Redis has forgotten
    it after a restart) and returns its answer. A broken connection is replaced once; like
    redis-py's own retry, a script that ran before its connection broke may run twice."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._local = threading.local()

    def _connection(self, pool: redis.ConnectionPool) -> Any:
        local = self._local
        if getattr(local, "pool", None) is not pool or local.pid != os.getpid():
            # The pool's settings, outside its count of connections (which is capped).
            connection = pool.connection_class(**pool.connection_kwargs)
            connection.connect()
            local.pool, local.pid, local.connection = pool, os.getpid(), connection
        return local.connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.pool = None
        if connection is not None:
            connection.disconnect()

    def __call__(self, pool: redis.ConnectionPool, keys: list[str], args: list[Any]) -> Any:
        for attempt in (1, 2):
            connection = self._connection(pool)
            try:
                try:
                    connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
                    return connection.read_response()
                except NoScriptError:
                    connection.send_command("EVAL", self.source, len(keys), *keys, *args)
                    return connection.read_response()
            except (redis.ConnectionError, redis.TimeoutError):
                self._drop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
