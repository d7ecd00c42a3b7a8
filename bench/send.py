"""Send benchmark: accepted messages/s, accept and dispatch latency, against a bare view.

    .venv/bin/python bench/send.py            # or: make bench

Starts everything itself on 127.0.0.1 (a fresh PostgreSQL database `phonefleet_bench`,
Redis db 15): for each way of serving the HTTP API (gunicorn = WSGI with persistent
database connections; daphne = ASGI with DATABASE_POOL=true) it measures

1. a bare Django view doing one INSERT (`bench/bare_urls.py`): the ceiling;
2. single sends (`POST /api/v1/send`) from concurrent keep-alive clients: msg/s, p50/p99
   (1 and 2 take turns in short rounds, so a busy moment of the machine hits both);
3. bulk sends (`POST /api/v1/send/bulk`, 10,000 recipients): msg/s;
4. dispatch: N simulated phones on daphne's `/ws/device/` (they speak the frames of docs/device-protocol.md:
   claim every offer, report `sent` on assign) while sends arrive at a fixed rate; the
   latency from the API answer to the `assign` frame at a phone, p50/p99, duplicates, lost.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/phonefleet_bench;
the database is dropped and re-created), BENCH_REDIS_URL (default redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness import (
    PY,
    ROOT,
    at_rate,
    base_env,
    cpu_seconds_by_role,
    flush_redis,
    free_port,
    machine_speed,
    manage,
    pct,
    reset_database,
    sql,
    stop,
    wait_http,
)

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/phonefleet_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


# --- Infrastructure ------------------------------------------------------------------


def setup_data(env: dict[str, str], db_url: str) -> dict[str, Any]:
    manage(env, "migrate", "--noinput")
    sql(db_url, "CREATE TABLE bench_bare (id bigserial PRIMARY KEY, body text, at timestamptz DEFAULT now())")
    creds = json.loads(manage(env, "createaccount", "--email", "bench@example.com", "--credit", "1000000000", "--json"))
    # The per-key rate limit would cap the benchmark, not the server.
    sql(db_url, "UPDATE accounts_apikey SET rate_limit_per_minute = 1000000000")
    return creds


@contextlib.contextmanager
def server(kind: str, env: dict[str, str], workers: int | None = None, threads: int | None = None) -> Iterator[int]:
    """Runs the project under gunicorn (WSGI) or daphne (ASGI + psycopg pool); yields its port.

    gunicorn runs with the production settings, docs/deploy/gunicorn.conf.py (gthread,
    2 × CPUs workers of 2 threads), with two exceptions: `workers`/`threads` when given,
    and no recycling of workers after `max_requests` (a restart in the middle of a round
    would cost whichever load happened to be running)."""
    port = free_port()
    env = dict(env)
    if kind == "gunicorn":
        env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
        cmd = [PY, "-m", "gunicorn", "-c", str(ROOT / "docs/deploy/gunicorn.conf.py"), "config.wsgi:application"]
        cmd += ["--max-requests", "0"]
        cmd += ["--workers", str(workers)] if workers else []
        cmd += ["--threads", str(threads)] if threads else []
    else:
        env["DATABASE_POOL"] = "true"
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(port, process, kind)
        yield port
    finally:
        stop(process)


# --- HTTP load ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    failures: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, p: float) -> float:
        return pct(self.latencies, p) * 1000


def _load_process(job: tuple[int, str, bytes, dict[str, str], float, int]) -> tuple[list[float], int]:
    port, path, body, headers, seconds, threads = job
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                bad += 1
                continue
            if response.status == 200:
                mine.append(time.perf_counter() - started)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, failures[0]


def load(port: int, path: str, form: dict[str, str], seconds: float, processes: int, threads: int) -> LoadResult:
    """Keep-alive clients posting `form` for `seconds`: processes × threads at once."""
    body = urllib.parse.urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    jobs = [(port, path, body, headers, seconds, threads)] * processes
    with mp.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_load_process, jobs)
    result = LoadResult(seconds)
    for latencies, failures in parts:
        result.latencies += latencies
        result.failures += failures
    return result


def interleaved(
    port: int, runs: list[tuple[str, dict[str, str]]], seconds: float, rounds: int, processes: int, threads: int
) -> list[LoadResult]:
    """Each (path, form) load in turn for `seconds / rounds`, `rounds` times over, after one
    unmeasured second of each: whatever else the shared machine does in the meantime
    weighs on all of them alike. One result per load, over all its rounds."""
    for path, form in runs:
        load(port, path, form, 1.0, processes, threads)
    results = [LoadResult(0.0) for _ in runs]
    for _ in range(rounds):
        for result, (path, form) in zip(results, runs, strict=True):
            part = load(port, path, form, seconds / rounds, processes, threads)
            result.seconds += part.seconds
            result.latencies += part.latencies
            result.failures += part.failures
    return results


def post_json(port: int, path: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


# --- Simulated phones -------------------------------------------------------------------------------


def enrol_phones(port: int, pin: str, count: int) -> list[str]:
    tokens = []
    for n in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = urllib.parse.urlencode({"pin": pin, "name": f"bench phone {n}"}).encode()
        conn.request("POST", "/api/device/v1/enroll", body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"enrolment failed: {data}")
        tokens.append(data["device_token"])
    return tokens


async def _phone(url: str, token: str, assigns: list[tuple[str, float]], ready: asyncio.Event) -> None:
    """One simulated phone: claims every offer, reports `sent` on assign; runs until cancelled."""
    import websockets

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "state", "available": True}))
        ready.set()
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "offer":
                await ws.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
            elif kind == "assign":
                assigns.append((frame["message_id"], time.time()))
                await ws.send(json.dumps({"type": "report", "message_id": frame["message_id"], "status": "sent"}))
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))


def _phones_process(url: str, tokens: list[str], ready: Any, stop: Any, out: Any) -> None:
    async def main() -> None:
        assigns: list[tuple[str, float]] = []
        readies = [asyncio.Event() for _ in tokens]
        tasks = [asyncio.create_task(_phone(url, t, assigns, r)) for t, r in zip(tokens, readies, strict=True)]
        await asyncio.gather(*(r.wait() for r in readies))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(assigns)

    asyncio.run(main())


def wait_until_dispatched(db_url: str, timeout: float) -> None:
    """Polls until no dispatch-run message is still queued or assigned (or the timeout)."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM messaging_message"
                " WHERE status IN ('queued', 'assigned') AND text LIKE 'dispatch %'"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.2)


def dispatch_run(
    api_port: int, ws_port: int, db_url: str, secret: str, tokens: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    """Sends at `rate` msg/s for `seconds` with the phones attached; API answer → assign latency."""
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    phones = ctx.Process(
        target=_phones_process, args=(f"ws://127.0.0.1:{ws_port}/ws/device/", tokens, ready, stop, out)
    )
    phones.start()
    if not ready.wait(30):
        raise RuntimeError("phones did not connect")
    answers: dict[str, float] = {}
    requested: dict[str, float] = {}
    accept: list[float] = []
    local = threading.local()

    def one(n: int) -> None:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", api_port, timeout=30)
        local.conn = conn
        body = urllib.parse.urlencode({"api_key": secret, "to": "+393331234567", "msg": f"dispatch {n}"}).encode()
        started, sent_at = time.perf_counter(), time.time()
        try:
            conn.request("POST", "/api/v1/send", body, {"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            data = json.loads(response.read())
        except (OSError, http.client.HTTPException):
            local.conn = None
            return
        answered = time.time()
        accept.append(time.perf_counter() - started)
        if response.status == 200:
            answers[data["message_id"]] = answered
            requested[data["message_id"]] = sent_at

    cpu_before = cpu_seconds_by_role()
    at_rate(one, rate=rate, seconds=seconds, threads=32)
    wait_until_dispatched(db_url, timeout=30)
    cpu = {role: used - cpu_before.get(role, 0.0) for role, used in cpu_seconds_by_role().items()}
    stop.set()
    assigns: list[tuple[str, float]] = out.get(timeout=30)
    phones.join(10)
    first: dict[str, float] = {}
    duplicates = 0
    for message_id, at in assigns:
        if message_id in first:
            duplicates += 1
        else:
            first[message_id] = at
    latencies = sorted((first[m] - answers[m]) * 1000 for m in answers if m in first)
    # From the request leaving the client: never negative (a busy server may assign a
    # message before its HTTP answer is out, which makes the first figure negative).
    end_to_end = sorted((first[m] - requested[m]) * 1000 for m in answers if m in first)
    # Not assigned by the end of the wait (30 s): late, not necessarily lost for good.
    unassigned = sum(1 for m in answers if m not in first)

    return {
        "sent": len(answers),
        "assigned": len(latencies),
        "duplicates": duplicates,
        "unassigned": unassigned,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "request_to_assign_p50_ms": pct(end_to_end, 50),
        "request_to_assign_p99_ms": pct(end_to_end, 99),
        "accept_p50_ms": statistics.median(accept) * 1000 if accept else float("nan"),
        # CPU seconds per process role while the sends went out and were assigned.
        "cpu_ms_per_message": {role: round(used / max(len(answers), 1) * 1000, 2) for role, used in cpu.items()},
    }


# --- The run -----------------------------------------------------------------------------------


def bulk_run(port: int, secret: str, rows: int, repeats: int) -> list[float]:
    rates = []
    for n in range(repeats):
        recipients = [{"to": f"+3933{(n * rows + i) % 10**8:08d}"} for i in range(rows)]
        started = time.perf_counter()
        status, body = post_json(
            port,
            "/api/v1/send/bulk",
            {"msg": "Bulk benchmark", "recipients": recipients},
            {"Authorization": f"Bearer {secret}"},
        )
        elapsed = time.perf_counter() - started
        if status != 200 or body.get("accepted") != rows:
            raise RuntimeError(f"bulk failed: {status} {str(body)[:300]}")
        rates.append(rows / elapsed)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="gunicorn,daphne", help="comma-separated: gunicorn, daphne")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each throughput run")
    parser.add_argument("--rounds", type=int, default=5, help="bare and single send take turns this many times")
    parser.add_argument("--processes", type=int, default=2, help="load-generating processes")
    parser.add_argument("--threads", type=int, default=8, help="keep-alive clients per process")
    parser.add_argument(
        "--gunicorn-workers", type=int, default=None, help="default: docs/deploy/gunicorn.conf.py's (2 × CPUs)"
    )
    parser.add_argument(
        "--gunicorn-threads", type=int, default=None, help="gthread threads per worker; default: the conf's (2)"
    )
    parser.add_argument("--phones", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100, help="msg/s during the dispatch run")
    parser.add_argument("--dispatch-seconds", type=float, default=10)
    parser.add_argument("--bulk-rows", type=int, default=10_000)
    parser.add_argument("--bulk-repeats", type=int, default=3)
    args = parser.parse_args()

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    env = base_env(db_url, redis_url, settings="bench.bare_settings")
    load1 = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load1:.1f}, Python loop yardstick {machine_speed():.0f} ms; "
        f"database {db_url.rsplit('/', 1)[-1]}; {redis_url}"
    )
    reset_database(db_url)
    flush_redis(redis_url)
    creds = setup_data(env, db_url)
    secret = creds["api_key"]
    clients = f"{args.processes}×{args.threads} keep-alive clients, {args.seconds:.0f} s each in {args.rounds} rounds"
    results: dict[str, dict[str, Any]] = {}
    tokens: list[str] = []
    for kind in args.servers.split(","):
        with contextlib.ExitStack() as stack:
            ws_port = stack.enter_context(server("daphne", env, 1))
            # daphne: one process serves the API and the phones, as `make run` does.
            api_port = (
                ws_port
                if kind == "daphne"
                else stack.enter_context(server(kind, env, args.gunicorn_workers, args.gunicorn_threads))
            )
            row: dict[str, Any] = {}
            bare, single = interleaved(
                api_port,
                [
                    ("/bench/bare", {"msg": "bare"}),
                    ("/api/v1/send", {"api_key": secret, "to": "+393331234567", "msg": "Benchmark"}),
                ],
                args.seconds,
                args.rounds,
                args.processes,
                args.threads,
            )
            row.update(
                bare_rps=bare.rate,
                bare_failures=bare.failures,
                single_rps=single.rate,
                single_failures=single.failures,
                ratio=single.rate / bare.rate if bare.rate else float("nan"),
                accept_p50_ms=single.pct(50),
                accept_p99_ms=single.pct(99),
            )
            bulk = bulk_run(api_port, secret, args.bulk_rows, args.bulk_repeats)
            row.update(bulk_rate_best=max(bulk), bulk_rate_median=statistics.median(bulk))
            # Start the dispatch run from an empty queue (the runs above left work queued), and
            # with the clean-up of all those rows done, not running beside the measurement.
            sql(db_url, "UPDATE messaging_message SET status = 'cancelled' WHERE status IN ('queued', 'assigned')")
            sql(db_url, "VACUUM ANALYZE")
            if not tokens:
                tokens = enrol_phones(ws_port, creds["pin"], args.phones)
            row["dispatch"] = dispatch_run(api_port, ws_port, db_url, secret, tokens, args.rate, args.dispatch_seconds)
            sql(db_url, "UPDATE messaging_message SET status = 'cancelled' WHERE status IN ('queued', 'assigned')")
            results[kind] = row
        print_row(kind, row, clients, args)
    print(json.dumps(results, indent=2, default=float))


def print_row(kind: str, row: dict[str, Any], clients: str, args: argparse.Namespace) -> None:
    d = row["dispatch"]
    print(f"\n== API served by {kind} ({clients}) ==")
    print(f"bare view (1 INSERT):  {row['bare_rps']:8.0f} req/s   (failures {row['bare_failures']})")
    print(f"single send:           {row['single_rps']:8.0f} msg/s   (failures {row['single_failures']})")
    print(f"single / bare:         {row['ratio']:8.2f}")
    print(f"accept latency:        p50 {row['accept_p50_ms']:.1f} ms   p99 {row['accept_p99_ms']:.1f} ms")
    print(
        f"bulk ({args.bulk_rows} rows):     best {row['bulk_rate_best']:.0f} msg/s   "
        f"median {row['bulk_rate_median']:.0f}"
    )
    print(
        f"dispatch ({args.phones} phones, {args.rate:.0f} msg/s): "
        f"p50 {d['p50_ms']:.1f} ms   p99 {d['p99_ms']:.1f} ms   "
        f"sent {d['sent']}  assigned {d['assigned']}  duplicates {d['duplicates']}  "
        f"unassigned after 30 s {d['unassigned']}"
    )
    print(
        f"  from the request:      p50 {d['request_to_assign_p50_ms']:.1f} ms   "
        f"p99 {d['request_to_assign_p99_ms']:.1f} ms"
    )
    if d["p50_ms"] < 0:
        print(
            "  (negative: the phone had its assign before the client had the HTTP answer;"
            " the server answers HTTP slower than it dispatches)"
        )
    print("  CPU ms per message:    " + "  ".join(f"{k} {v}" for k, v in sorted(d["cpu_ms_per_message"].items())))


if __name__ == "__main__":
    main()
