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
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("BENCH_PYTHONPATH", "")])),
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


# `write_history`: delivered messages of the past for the database's first account, spread
# over its first list's phones, each with its timeline (assigned, sent, delivered), its two
# callbacks' outbox rows and one attempt row each, as a service in use has them.
_HISTORY_SQL = """
WITH target AS (
    SELECT a.id AS account, l.id AS list,
        ARRAY(SELECT d.id FROM devices_device d WHERE d.phone_list_id = l.id ORDER BY d.id) AS devices
    FROM accounts_account a JOIN devices_phonelist l ON l.account_id = a.id ORDER BY a.id, l.id LIMIT 1
), m AS (
    INSERT INTO messaging_message (public_id, account_id, phone_list_id, device_id, "to", text, sealed_text, parts,
        encoding, ref, batch_id, cost, status, error, send_at, expires_at, attempts, created_at, assigned_at,
        sent_at, delivered_at)
    SELECT 'msg_history' || g, target.account, target.list,
        target.devices[1 + g % greatest(cardinality(target.devices), 1)], '+393331234567', 'History ' || g, '', 1,
        'gsm7', '', '', 1, 'delivered', '', t, t + interval '1 day', 1, t, t, t, t
    FROM target, generate_series(1, {messages}) g,
        LATERAL (SELECT now() - interval '30 days' + g * interval '1 second' AS t) s
    RETURNING id, account_id, device_id, created_at
), ev AS (
    INSERT INTO messaging_messageevent (message_id, status, device_id, detail, at)
    SELECT id, s, device_id, '', created_at FROM m, unnest(ARRAY['assigned', 'sent', 'delivered']) s
), ipn AS (
    INSERT INTO ipn_ipnevent (webhook_id, account_id, type, message_id, body, content_type, status, attempts,
        schedule_started_at, replays, next_attempt_at, occurred_at, created_at, delivered_at)
    SELECT 'evt_history' || id || s, account_id, 'message.' || s, id, '{{}}', 'application/json', 'delivered', 1,
        created_at, 0, created_at, created_at, created_at, created_at
    FROM m, unnest(ARRAY['sent', 'delivered']) s
    RETURNING id, created_at
)
INSERT INTO ipn_ipnattempt (event_id, at, url, status_code, latency_ms, error, response_body, outcome, is_replay,
    is_test)
SELECT id, created_at, 'http://127.0.0.1/ipn', 200, 1, '', '', 'success', false, false FROM ipn
"""


def write_history(db_url: str, messages: int) -> float:
    """Writes `messages` delivered messages of the past (`_HISTORY_SQL`) and runs VACUUM
    ANALYZE, so the planner sees tables of a service in use rather than a fresh database's
    (whose statements, prepared in the first second, keep plans made for empty tables).
    Returns the seconds it took."""
    started = time.perf_counter()
    sql(db_url, _HISTORY_SQL.format(messages=int(messages)))
    sql(db_url, "VACUUM ANALYZE")
    return time.perf_counter() - started


def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def manage(env: dict[str, str], *args: str) -> str:
    """Runs `manage.py <args>` in `env`; its standard output."""
    done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def wait_http(
    port: int, process: subprocess.Popen, what: str, *, path: str = "/api/v1/balance", timeout: float = 90
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


# CPU per process: each of the processes a benchmark started (and their children), plus
# the PostgreSQL backends serving its database, sampled before and after the measured
# window. Counters are per process (a process's utime + stime includes its threads, dead
# ones too), keyed by (pid, start time): a process's counter only grows, so no figure can
# come out negative, and other sessions' processes on the shared machine never enter.

CpuSample = dict[tuple[int, int], float]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is the state), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(*roots: int) -> set[int]:
    """The given processes and all their children, grandchildren… (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))  # fields[1]: the parent
    found: set[int] = set()
    todo = [root for root in roots if root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def cpu_sample(pids: set[int]) -> CpuSample:
    """CPU seconds used so far (user + system, all threads) by each live process of `pids`."""
    ticks = os.sysconf("SC_CLK_TCK")
    sample: CpuSample = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:  # fields[11], [12]: utime, stime; [19]: start time
            sample[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / ticks
    return sample


def cpu_used(before: CpuSample, after: CpuSample) -> tuple[float, int]:
    """(CPU seconds the processes used between the samples, how many of `before` were gone
    by `after`: their last part is missing). A process started in between counts whole."""
    used = sum(max(0.0, spent - before.get(key, 0.0)) for key, spent in after.items())
    return used, len(before.keys() - after.keys())


def postgres_backends(db_url: str) -> set[int]:
    """The pids of the PostgreSQL backends connected to `db_url`'s database (other sessions'
    databases and the server's background processes are not counted)."""
    name = urllib.parse.urlsplit(db_url).path.lstrip("/")
    rows = sql(db_url, f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    return {int(row[0]) for row in rows}


class CpuMeter:
    """CPU seconds by role over a window: `roles` maps a role to a function giving its pids
    now (called at the start and at the end; a role's processes are the union of both)."""

    def __init__(self, roles: dict[str, Callable[[], set[int]]]) -> None:
        self.roles = roles
        self.pids: dict[str, set[int]] = {}
        self.before: dict[str, CpuSample] = {}

    def start(self) -> None:
        self.pids = {role: pids() for role, pids in self.roles.items()}
        self.before = {role: cpu_sample(pids) for role, pids in self.pids.items()}

    def stop(self) -> tuple[dict[str, float], int]:
        """(CPU seconds per role, processes that ended inside the window)."""
        used: dict[str, float] = {}
        gone = 0
        for role, pids in self.roles.items():
            after = cpu_sample(self.pids[role] | pids())
            used[role], lost = cpu_used(self.before[role], after)
            gone += lost
        return used, gone


def pct(values: list[float], p: float) -> float:
    """The `p`th percentile of `values` (nearest rank; NaN when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def django_in_process(db_url: str) -> None:
    """For benches that call the code in this process: prints the machine's speed, gives
    `db_url` a fresh migrated database, and sets Django up on it."""
    print(f"loop yardstick: {machine_speed():.0f} ms; load average {os.getloadavg()[0]:.1f}")
    reset_database(db_url)
    os.environ.update(base_env(db_url, None))
    manage(dict(os.environ), "migrate", "--noinput")
    os.chdir(ROOT)

    import django

    django.setup()
