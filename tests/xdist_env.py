"""Loaded with `-p tests.xdist_env` before Django's settings: under pytest-xdist, each worker
gets a Redis database of its own (the cache is flushed around every test, and the channel
layer's prefix follows the database), as pytest-django gives each its own test database."""

from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_url = os.environ.get("REDIS_URL", "")
if _worker.startswith("gw") and _url:
    # Databases 9-15 are the workers' (0-8: a CI run and the developers' own runs).
    _db = 9 + int(_worker[2:])
    if _db > 15:
        raise RuntimeError("pytest-xdist: at most 7 workers have a Redis database of their own")
    os.environ["REDIS_URL"] = _url.rsplit("/", 1)[0] + f"/{_db}" if _url.count("/") > 2 else f"{_url}/{_db}"
