"""What the benchmark scripts share: a free port, a fresh database, the project's
environment, `manage.py`, waiting for and stopping a server process, percentiles.

Scripts in `bench/` import it as `harness` (they run as `python bench/<script>.py`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(db_url: str, redis_url: str | None, *, settings: str = "config.settings") -> dict[str, str]:
    """This environment plus what the measured project needs (no Redis when `redis_url` is None)."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        SECRET_KEY="bench-only-secret-key-0123456789abcdef",
        DJANGO_SETTINGS_MODULE=settings,
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="WARNING",
        EMBEDDED_WORKER="false",
    )
    env.pop("DATABASE_POOL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


def reset_database(db_url: str) -> None:
    """Drops and re-creates the PostgreSQL database of `db_url`."""
    import psycopg

    parts = urllib.parse.urlsplit(db_url)
    name = parts.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def sql(db_url: str, statement: str) -> list[tuple[Any, ...]]:
    """Runs one statement in autocommit; its rows (none for a statement that returns none)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def manage(env: dict[str, str], *args: str) -> str:
    """Runs `manage.py <args>` in `env`; its standard output."""
    done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def wait_http(
    port: int, process: subprocess.Popen, what: str, *, path: str = "/api/v1/balance", timeout: float = 30
) -> None:
    """Polls GET `path` on 127.0.0.1:`port` until anything answers; raises if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


def stop(*processes: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM to every process, then waits for each (killed after `timeout` seconds)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def at_rate(job: Callable[[int], None], *, rate: float, seconds: float, threads: int) -> None:
    """Starts `job(0)`, `job(1)`, … at `rate` a second for `seconds` on a pool of `threads`;
    returns when every call has finished."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(job, n)


def machine_speed() -> float:
    """Milliseconds this machine takes for a fixed pure-Python loop (best of 5): a yardstick
    for comparing runs made on different days or machines."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for number in range(2_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best * 1000


# Process roles by a word of their command line (first match wins).
ROLES = (("daphne", "daphne"), ("gunicorn", "gunicorn"), ("postgres", "postgres"), ("redis-server", "redis"))


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds used so far (user + system) by the processes of this machine, summed by
    role: the servers, PostgreSQL, Redis, this script (its HTTP clients) and its other
    child processes (the simulated phones). Linux only (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    used: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = "bench" if int(pid) == me else next((name for word, name in ROLES if word in command), None)
        if role is None and int(fields[1]) == me:  # fields[1]: the parent
            role = "phones"  # the simulated phones' process
        if role is not None:
            used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def pct(values: list[float], p: float) -> float:
    """The `p`th percentile of `values` (nearest rank; NaN when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
