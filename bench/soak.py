"""Soak: thousands of simulated phones on ONE Daphne process while messages flow.

    .venv/bin/python bench/soak.py --phones 2000 --rate 20 --seconds 60

Starts everything itself on 127.0.0.1: a fresh PostgreSQL database (`phonefleet_soak`,
dropped and re-created), Redis db 14 (flushed), one Daphne (the phones' WebSockets), one
gunicorn (the API, as in docs/deploy.md) and one `manage.py worker`. The phones are asyncio
`websockets` clients spread over a few processes; they speak the frames of docs/device-protocol.md (state, claim
every offer, report `sent` on assign, ping every 20 s). Reports:

- connections held: phones connected at the end / phones started, and reconnects;
- Daphne's RSS before the phones, with them, and per connection;
- dispatch latency: API answer → `assign` frame at a phone, p50/p99/max, lost, duplicates.

Environment: SOAK_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/phonefleet_soak),
SOAK_REDIS_URL (default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from harness import (
    PY,
    ROOT,
    at_rate,
    base_env,
    flush_redis,
    free_port,
    manage,
    pct,
    reset_database,
    sql,
    stop,
    wait_http,
)

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/phonefleet_soak"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
PING_SECONDS = 20.0
LOGS = ROOT / "var" / "soak"


def raise_fd_limit() -> int:
    """Each phone is a socket on both ends: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


MAKE_PHONES = """
import json, sys
from accounts.models import Account
from devices.models import PhoneList
from devices import services
first = PhoneList.objects.get(token=sys.argv[1])
account = Account.objects.get(pk=first.account_id)
count, size = int(sys.argv[2]), int(sys.argv[3])
fleet = []
for n in range(0, count, size):
    phone_list = first if n == 0 else services.create_list(account=account, name=f"soak list {n // size}")
    names = [f"soak {m}" for m in range(n, min(count, n + size))]
    tokens = [services.create_device(phone_list=phone_list, name=name)[1] for name in names]
    fleet.append([phone_list.token, tokens])
print(json.dumps(fleet))
"""


def make_phones(env: dict[str, str], list_token: str, count: int, list_size: int) -> list[tuple[str, list[str]]]:
    """`count` phones in lists of `list_size` (the account's first list first): [(list token, tokens)]."""
    out = subprocess.run(
        [PY, "-c", "import django; django.setup(); exec(open(0).read())", list_token, str(count), str(list_size)],
        input=MAKE_PHONES,
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [(token, tokens) for token, tokens in json.loads(out.strip().splitlines()[-1])]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- Phones ---------------------------------------------------------------------------------


async def phone(url: str, token: str, stats: dict[str, Any], stop: asyncio.Event) -> None:
    import websockets

    headers = {"Authorization": f"Bearer {token}"}
    first = True
    attempt = 0
    while not stop.is_set():
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None) as ws:
                attempt = 0
                stats["connected"] += 1
                if not first:
                    stats["reconnects"] += 1
                first = False
                await ws.send(json.dumps({"type": "state", "available": True}))
                next_ping = time.monotonic() + random.uniform(0, PING_SECONDS)
                try:
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, next_ping - time.monotonic()))
                        except TimeoutError:
                            await ws.send('{"type":"ping"}')
                            next_ping = time.monotonic() + PING_SECONDS
                            continue
                        frame = json.loads(raw)
                        kind = frame.get("type")
                        if kind == "offer":
                            await ws.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
                        elif kind == "assign":
                            stats["assigns"].append((frame["message_id"], time.time()))
                            await ws.send(
                                json.dumps({"type": "report", "message_id": frame["message_id"], "status": "sent"})
                            )
                finally:
                    stats["connected"] -= 1
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", "")
            name = f"{type(exc).__name__}{status}"
            stats["errors"][name] = stats["errors"].get(name, 0) + 1
            # As the reference agent does: exponential backoff, full jitter, 1 s → 60 s.
            await asyncio.sleep(random.uniform(0, min(60.0, 2.0**attempt)))
            attempt += 1


def phones_process(url: str, tokens: list[str], ramp: float, conn: Any) -> None:
    raise_fd_limit()

    async def main() -> None:
        stats: dict[str, Any] = {"connected": 0, "reconnects": 0, "assigns": [], "errors": {}}
        stop = asyncio.Event()
        tasks = []
        for token in tokens:
            tasks.append(asyncio.create_task(phone(url, token, stats, stop)))
            await asyncio.sleep(ramp)
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command == "count":
                conn.send(stats["connected"])
            elif command == "stop":
                held = stats["connected"]
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                conn.send(
                    {
                        "held": held,
                        "reconnects": stats["reconnects"],
                        "assigns": stats["assigns"],
                        "errors": stats["errors"],
                    }
                )
                return

    asyncio.run(main())


# --- The run -----------------------------------------------------------------------------------


def send_messages(api_port: int, secret: str, lists: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Sends at `rate` msg/s for `seconds`, round-robin over `lists`; message id → wall time
    of the API answer."""
    answers: dict[str, float] = {}
    local = threading.local()

    def one(n: int) -> None:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", api_port, timeout=30)
        local.conn = conn
        form = {"to": f"+39333{n:07d}", "msg": f"soak {n}", "list": lists[n % len(lists)]}
        body = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {secret}"}
        try:
            conn.request("POST", "/api/v1/send", body, headers)
            response = conn.getresponse()
            data = json.loads(response.read())
        except (OSError, http.client.HTTPException):
            local.conn = None
            return
        if response.status == 200:
            answers[data["message_id"]] = time.time()

    at_rate(one, rate=rate, seconds=seconds, threads=8)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--list-size", type=int, default=20, help="phones per list (each offer goes to one list)")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=0.02, help="seconds between two connects in a client process")
    parser.add_argument("--rate", type=float, default=20, help="messages per second through the API")
    parser.add_argument("--seconds", type=float, default=60, help="how long messages flow")
    parser.add_argument("--tick", type=float, default=15, help="DEVICE_TICK_SECONDS of the server (its default: 15)")
    args = parser.parse_args()

    limit = raise_fd_limit()
    LOGS.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the run like Ctrl-C: the servers and phone processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = os.getloadavg()[0]
    if limit < args.phones * 2 + 1000:
        sys.exit(f"open-file limit {limit} is too low for {args.phones} phones; raise `ulimit -n`")
    db_url = os.environ.get("SOAK_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("SOAK_REDIS_URL", DEFAULT_REDIS)
    reset_database(db_url)
    flush_redis(redis_url)
    env = base_env(db_url, redis_url)
    manage(env, "migrate", "--noinput")
    creds = json.loads(manage(env, "createaccount", "--email", "soak@example.com", "--credit", "100000000", "--json"))
    sql(db_url, "UPDATE accounts_apikey SET rate_limit_per_minute = 1000000000")
    fleet = make_phones(env, creds["list"], args.phones, args.list_size)
    tokens = [token for _list, phones in fleet for token in phones]
    random.Random(1).shuffle(tokens)  # every client process holds phones of every list

    procs: list[subprocess.Popen] = []
    clients: list[Any] = []
    try:
        ws_port, api_port = free_port(), free_port()
        daphne = subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(ws_port), "config.asgi:application"],
            cwd=ROOT,
            env={**env, "DATABASE_POOL": "true", "DEVICE_TICK_SECONDS": str(args.tick)},
            stdout=(LOGS / "daphne.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(daphne)
        gunicorn = subprocess.Popen(
            [PY, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{api_port}", "-w", "2"],
            cwd=ROOT,
            env=env,
            stdout=(LOGS / "gunicorn.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(gunicorn)
        worker_log = (LOGS / "worker.log").open("wb")
        procs.append(
            subprocess.Popen(
                [PY, "manage.py", "worker"], cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT
            )
        )
        wait_http(ws_port, daphne, "daphne", timeout=60)
        wait_http(api_port, gunicorn, "gunicorn", timeout=60)
        rss_idle = rss_kib(daphne.pid)

        ctx = mp.get_context("spawn")
        url = f"ws://127.0.0.1:{ws_port}/ws/device/"
        share = (len(tokens) + args.client_processes - 1) // args.client_processes
        for n in range(args.client_processes):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=phones_process, args=(url, tokens[n * share : (n + 1) * share], args.ramp, child)
            )
            process.start()
            clients.append((process, parent))

        def connected() -> int:
            total = 0
            for _process, pipe in clients:
                pipe.send("count")
                total += pipe.recv()
            return total

        started = time.monotonic()
        while connected() < args.phones and time.monotonic() - started < 600:
            time.sleep(1)
        connect_seconds = time.monotonic() - started
        time.sleep(20)  # let the connect burst settle before measuring memory
        rss_connected = rss_kib(daphne.pid)

        answers = send_messages(api_port, creds["api_key"], [t for t, _ in fleet], args.rate, args.seconds)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            open_rows = sql(db_url, "SELECT count(*) FROM messaging_message WHERE status IN ('queued', 'assigned')")
            if open_rows[0][0] == 0:
                break
            time.sleep(0.5)
        rss_end = rss_kib(daphne.pid)
        online = sql(
            db_url,
            "SELECT count(*) FROM devices_device WHERE is_connected AND last_seen_at > now() - interval '75 seconds'",
        )[0][0]
        results = []
        for process, pipe in clients:
            pipe.send("stop")
            results.append(pipe.recv())
            process.join(30)
    finally:
        for process, _pipe in clients:
            if process.is_alive():
                process.kill()
        stop(*procs, timeout=15)

    first: dict[str, float] = {}
    duplicates = 0
    for result in results:
        for message_id, at in result["assigns"]:
            if message_id in first:
                duplicates += 1
            else:
                first[message_id] = min(at, first.get(message_id, at))
    latencies = sorted((first[m] - answers[m]) * 1000 for m in answers if m in first)
    held = sum(r["held"] for r in results)

    summary = {
        "phones": args.phones,
        "lists": len(fleet),
        "tick_s": args.tick,
        "load_average_at_start": round(load_at_start, 1),
        "connected_in_s": round(connect_seconds, 1),
        "held_at_end": held,
        "online_in_db_at_end": online,
        "reconnects": sum(r["reconnects"] for r in results),
        "client_errors": {k: v for r in results for k, v in r["errors"].items()},
        "daphne_rss_mib_idle": round(rss_idle / 1024, 1),
        "daphne_rss_mib_connected": round(rss_connected / 1024, 1),
        "daphne_rss_mib_end": round(rss_end / 1024, 1),
        "rss_kib_per_connection": round((rss_connected - rss_idle) / max(1, args.phones), 1),
        "messages_accepted": len(answers),
        "assigned": len(latencies),
        "lost": sum(1 for m in answers if m not in first),
        "duplicate_assigns": duplicates,
        "dispatch_p50_ms": round(pct(latencies, 50), 1),
        "dispatch_p99_ms": round(pct(latencies, 99), 1),
        "dispatch_max_ms": round(latencies[-1], 1) if latencies else None,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
