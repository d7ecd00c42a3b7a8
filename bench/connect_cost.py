"""CPU one phone connect costs a Daphne: N phones connect (as bench/soak.py's phones do:
handshake, `state: available`, hello, a ping) and the Daphne process's CPU seconds over
the connects are divided by N. Optionally a cProfile of the event-loop thread.

    .venv/bin/python bench/connect_cost.py --phones 1000 [--app bare] [--profile /tmp/p]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import time
from pathlib import Path

from conn_memory import start_traced_daphne
from harness import base_env, cpu_sample, flush_redis, manage, reset_database, stop, wait_http
from soak import DEFAULT_DB, DEFAULT_REDIS, LOGS, Clients, make_phones, open_sockets, raise_fd_limit, rss_kib, warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=0.01)
    parser.add_argument("--app", choices=("project", "bare"), default="project")
    parser.add_argument("--profile", default="", help="write a cProfile of the connects here")
    parser.add_argument("--daphne-args", nargs="*", default=[])
    parser.add_argument("--accept-rate", default="300")
    args = parser.parse_args()
    raise_fd_limit()
    LOGS.mkdir(parents=True, exist_ok=True)
    db_url = os.environ.get("SOAK_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("SOAK_REDIS_URL", DEFAULT_REDIS)
    reset_database(db_url)
    flush_redis(redis_url)
    env = base_env(db_url, redis_url)
    manage(env, "migrate", "--noinput")
    creds = json.loads(manage(env, "createaccount", "--email", "cost@example.com", "--json"))
    fleet = make_phones(env, creds["list"], args.phones, 10)
    tokens = [token for _list, phones in fleet for token in phones]
    app = {"project": "config.asgi", "bare": "bench.bare_asgi"}[args.app]
    env = {
        **env,
        "DATABASE_POOL": "true",
        "PF_TRACE_APP": app,
        "PF_TRACE_FRAMES": "0",
        "PF_PROFILE": args.profile,
        "DEVICE_ACCEPT_RATE": args.accept_rate,
    }
    port, process = start_traced_daphne(env, args.daphne_args, log="connect-cost.log")
    clients = None
    try:
        wait_http(port, process, app, timeout=60)
        warm_up(port, tokens[0])
        if args.profile:
            process.send_signal(signal.SIGUSR2)
        before = cpu_sample({process.pid})
        started = time.monotonic()
        clients = Clients(f"ws://127.0.0.1:{port}/ws/device/", tokens, 1, args.ramp)
        while open_sockets(process.pid) < len(tokens) and time.monotonic() - started < 600:
            time.sleep(0.2)
        seconds = time.monotonic() - started
        time.sleep(2)
        after = cpu_sample({process.pid})
        if args.profile:
            process.send_signal(signal.SIGUSR2)
            done = Path(f"{args.profile}.done")
            while not done.exists():
                time.sleep(0.2)
        held = open_sockets(process.pid)
        rss = rss_kib(process.pid)
    finally:
        if clients is not None:
            clients.kill()
        stop(process, timeout=15)
    cpu = sum(after.values()) - sum(before.values())
    print(
        json.dumps(
            {
                "app": app,
                "phones": args.phones,
                "held": held,
                "connect_s": round(seconds, 1),
                "daphne_cpu_s": round(cpu, 2),
                "cpu_ms_per_connect": round(cpu * 1000 / args.phones, 2),
                "rss_mib": round(rss / 1024, 1),
                "load": os.getloadavg()[0],
            }
        )
    )
    if args.profile:
        pstats.Stats(f"{args.profile}.done").sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
