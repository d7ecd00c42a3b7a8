"""What one phone connection holds in Daphne: the project's consumer against a bare
Channels consumer, by tracemalloc and by RSS, with the allocation sites that differ.

    .venv/bin/python bench/conn_memory.py --phones 1000

Starts a fresh PostgreSQL database (`phonefleet_soak`, as bench/soak.py) and, one after the
other, two Daphnes under `bench/traced_asgi.py` (the project's application, then the bare
consumer's), each with its phones connected the way bench/soak.py connects them (state,
pings every 20 s). For each: a snapshot after one phone came and went, another once all
are held; the difference per connection, in all and by allocation site (file:line, the
innermost frame outside the standard library's asyncio and logging is not looked for:
sites are where the memory was allocated). Tracemalloc slows the servers: the figures are
bytes, not times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

from harness import PY, ROOT, base_env, flush_redis, free_port, manage, reset_database, stop, wait_http
from soak import DEFAULT_DB, DEFAULT_REDIS, LOGS, Clients, make_phones, open_sockets, raise_fd_limit, rss_kib, warm_up


def start_traced_daphne(env: dict[str, str], daphne_args: list[str], *, log: str) -> tuple[int, subprocess.Popen]:
    """A Daphne serving `bench/traced_asgi.py` (the app `PF_TRACE_APP` in `env` names) on a
    free port, its output appended to `LOGS / log`; the port and the process."""
    port = free_port()
    command = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *daphne_args, "bench.traced_asgi:application"]
    output = (LOGS / log).open("ab")
    return port, subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)


def snapshot(process: subprocess.Popen, path: Path) -> tracemalloc.Snapshot:
    done = Path(f"{path}.done")
    done.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(done))


def site_name(stat: tracemalloc.StatisticDiff, args: argparse.Namespace) -> str:
    if args.traceback:
        return "\n".join(str(line) for line in stat.traceback.format()[-args.frames * 2 :])
    return str(stat.traceback)


def measure(app: str, env: dict[str, str], tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    snap = Path(f"/tmp/pf-conn-memory-{os.getpid()}")
    env = {**env, "PF_TRACE_APP": app, "PF_TRACE_SNAPSHOT": str(snap), "PF_TRACE_FRAMES": str(args.frames)}
    port, process = start_traced_daphne(env, args.daphne_args, log="conn-memory.log")
    clients = None
    try:
        wait_http(port, process, app, timeout=60)
        warm_up(port, tokens[0])
        before = snapshot(process, snap)
        rss_before = rss_kib(process.pid)
        clients = Clients(f"ws://127.0.0.1:{port}/ws/device/", tokens, 1, args.ramp)
        started = time.monotonic()
        while open_sockets(process.pid) < len(tokens) and time.monotonic() - started < 600:
            time.sleep(0.5)
        held = open_sockets(process.pid)
        time.sleep(args.settle)
        after = snapshot(process, snap)
        rss_after = rss_kib(process.pid)
    finally:
        if clients is not None:
            clients.kill()
        stop(process, timeout=15)
    n = len(tokens)
    key = "traceback" if args.traceback else "lineno"
    stats = after.compare_to(before, key)
    total = sum(s.size_diff for s in stats)
    return {
        "app": app,
        "held": held,
        "traced_bytes_per_connection": round(total / n),
        "rss_kib_per_connection": round((rss_after - rss_before) / n, 1),
        "sites": {
            site_name(s, args): (round(s.size_diff / n), round(s.count_diff / n, 2))
            for s in stats[: args.top]
            if abs(s.size_diff) / n >= 8
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=0.01)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--frames", type=int, default=1, help="frames kept per allocation (0: RSS only, no tracing)")
    parser.add_argument("--traceback", action="store_true", help="group by whole traceback (with --frames > 1)")
    parser.add_argument("--only", choices=("project", "bare"), default=None)
    parser.add_argument(
        "--daphne-args", nargs="*", default=[], help="extra Daphne options, e.g. --access-log /dev/null"
    )
    args = parser.parse_args()
    raise_fd_limit()
    LOGS.mkdir(parents=True, exist_ok=True)
    db_url = os.environ.get("SOAK_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("SOAK_REDIS_URL", DEFAULT_REDIS)
    reset_database(db_url)
    flush_redis(redis_url)
    env = base_env(db_url, redis_url)
    manage(env, "migrate", "--noinput")
    creds = json.loads(manage(env, "createaccount", "--email", "mem@example.com", "--json"))
    fleet = make_phones(env, creds["list"], args.phones, 10)
    tokens = [token for _list, phones in fleet for token in phones]
    env = {**env, "DATABASE_POOL": "true"}
    apps = {"project": "config.asgi", "bare": "bench.bare_asgi"}
    results = [measure(apps[name], env, tokens, args) for name in apps if args.only in (None, name)]
    for result in results:
        print(json.dumps(result, indent=1))
    if len(results) == 2:
        project, bare = results
        print(
            json.dumps(
                {
                    "traced_ratio": round(
                        project["traced_bytes_per_connection"] / bare["traced_bytes_per_connection"], 2
                    ),
                    "rss_ratio": round(project["rss_kib_per_connection"] / bare["rss_kib_per_connection"], 2),
                }
            )
        )


if __name__ == "__main__":
    main()
