"""Send benchmark: accepted messages/s, accept and dispatch latency, against a bare view;
and the CPU a message costs end to end, with and without callbacks.

    .venv/bin/python bench/send.py            # or: make bench
    .venv/bin/python bench/send.py --servers gunicorn --phases e2e      # the end-to-end CPU table only

Starts everything itself on 127.0.0.1 (a fresh PostgreSQL database `phonefleet_bench`,
Redis db 15): for each way of serving the HTTP API (gunicorn = WSGI with persistent
database connections; daphne = ASGI with DATABASE_POOL=true) it measures

1. a bare Django view doing one INSERT (`bench/bare_urls.py`): the ceiling;
2. single sends (`POST /api/v1/send`) from concurrent keep-alive clients: msg/s, p50/p99
   (1 and 2 take turns in short rounds, so a busy moment of the machine hits both);
3. bulk sends (`POST /api/v1/send/bulk`, 10,000 recipients): msg/s;
4. dispatch: N simulated phones on daphne's `/ws/device/` (they speak the frames of docs/device-protocol.md:
   claim every offer, report `sent` on assign) while sends arrive at a fixed rate; the
   latency from the API answer to the `assign` frame at a phone, p50/p99, duplicates, lost,
   and how many assigns each phone got (the spread);
5. end to end (gunicorn only unless --e2e-servers says otherwise): the same sends, each
   phone reporting `sent` on assign and `delivered` once that is acknowledged, with
   callbacks off, then on: a `manage.py worker` delivers `message.sent` and
   `message.delivered` of every message to a local receiver (keep-alive, answers 200).
   The window ends when every message has both callbacks (or is `delivered`, callbacks
   off). Checked: both arrived, `sent` first, none twice.

CPU per message (4 and 5) is read from /proc/<pid>/stat (user + system time, all threads)
of the processes this script started, by role, sampled once before and once after the
window: gunicorn (master and workers), daphne, the worker, the PostgreSQL backends
connected to the bench database (from pg_stat_activity), and, outside the server, the
simulated phones, this script's HTTP clients and the receiver. Other sessions' processes
on a shared machine are never counted, and a process's own counter only grows, so no
figure is negative; a process that ends inside the window loses its last part (counted
and printed). Redis is shared with other sessions and not counted (0.1–0.2 ms a message
when it was).

`--e2e-history N` writes N delivered messages of the past before the end-to-end runs
(bench/harness.py `write_history`): on a fresh database the statements the servers prepare
in the first second keep plans made for empty tables (sequential scans) until autovacuum
analyzes them, which a service in use does not see.

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
import signal
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    PY,
    ROOT,
    CpuMeter,
    at_rate,
    base_env,
    descendants,
    flush_redis,
    free_port,
    machine_speed,
    manage,
    pct,
    postgres_backends,
    reset_database,
    sql,
    stop,
    wait_http,
    write_history,
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


@dataclass(frozen=True)
class Running:
    """A server this script started: where it listens and its process (gunicorn's master)."""

    port: int
    pid: int


@contextlib.contextmanager
def server(
    kind: str, env: dict[str, str], workers: int | None = None, threads: int | None = None, app: str = "config.asgi"
) -> Iterator[Running]:
    """Runs the project under gunicorn (WSGI) or daphne (ASGI + psycopg pool).

    gunicorn runs with the production settings, docs/deploy/gunicorn.conf.py (gthread,
    2 × CPUs workers of 2 threads), with two exceptions: `workers`/`threads` when given,
    and no recycling of workers after `max_requests` (a restart in the middle of a round
    would cost whichever load happened to be running). `app`: Daphne's ASGI module
    (bench/dispatch_trace.py for --trace-dispatch)."""
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
        cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), f"{app}:application"]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(port, process, kind)
        yield Running(port, process.pid)
    finally:
        stop(process)


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[int]:
    """One `manage.py worker` (the IPN outbox and the other background steps); its pid."""
    process = subprocess.Popen([PY, "manage.py", "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        yield process.pid
    finally:
        stop(process, timeout=20)


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


async def _phone(
    url: str,
    token: str,
    index: int,
    assigns: list[tuple[str, float, int]],
    ready: asyncio.Event,
    delivered: bool,
    offers: list[tuple[str, float, int]] | None = None,
) -> None:
    """Simulated phone number `index`: claims every offer, reports `sent` on assign and, with
    `delivered`, `delivered` once the `sent` is acknowledged; runs until cancelled. With
    `offers`, the time each offer arrived is recorded there (--trace-dispatch)."""
    import websockets

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "state", "available": True}))
        ready.set()
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "offer":
                if offers is not None:
                    offers.append((frame["message_id"], time.time(), index))
                await ws.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
            elif kind == "assign":
                assigns.append((frame["message_id"], time.time(), index))
                await ws.send(json.dumps({"type": "report", "message_id": frame["message_id"], "status": "sent"}))
            elif kind == "ack" and delivered and frame.get("status") == "sent":
                report = {"type": "report", "message_id": frame["message_id"], "status": "delivered"}
                await ws.send(json.dumps(report))
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))


def _phones_process(
    url: str, tokens: list[str], delivered: bool, ready: Any, stop: Any, out: Any, trace: bool = False
) -> None:
    async def main() -> None:
        assigns: list[tuple[str, float, int]] = []
        offers: list[tuple[str, float, int]] | None = [] if trace else None
        readies = [asyncio.Event() for _ in tokens]
        tasks = [
            asyncio.create_task(_phone(url, t, n, assigns, r, delivered, offers))
            for n, (t, r) in enumerate(zip(tokens, readies, strict=True))
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(assigns)
        if offers is not None:
            out.put(offers)

    asyncio.run(main())


def wait_until(db_url: str, statuses: tuple[str, ...], prefix: str, timeout: float) -> None:
    """Polls until no message whose text starts with `prefix` is in one of `statuses` (or the timeout)."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM messaging_message WHERE status = ANY(%s) AND text LIKE %s",
                [list(statuses), prefix + " %"],
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.2)


# --- The callbacks' receiver -------------------------------------------------------------------


def _receiver(port_out: Any, arrivals: Any) -> None:
    """A local IPN receiver (keep-alive, answers 200 at once): puts (message id, event type,
    webhook id, arrival time) of each callback on `arrivals`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            arrivals.put((event["data"].get("message_id"), event["type"], self.headers["webhook-id"], time.time()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the worker stopped between two keep-alive requests

    receiver = Server(("127.0.0.1", 0), Handler)
    port_out.put(receiver.server_address[1])
    receiver.serve_forever()


@dataclass
class Receiver:
    port: int
    pid: int
    arrivals: Any

    def collect(self, messages: set[str], timeout: float) -> dict[str, list[tuple[str, str, float]]]:
        """(type, webhook id, time) of every callback per message id, until each of `messages`
        has its `message.sent` and `message.delivered` (or the timeout)."""
        import queue

        got: dict[str, list[tuple[str, str, float]]] = {}
        waiting = set(messages)
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            try:
                message_id, kind, webhook_id, at = self.arrivals.get(timeout=0.5)
            except queue.Empty:
                continue
            got.setdefault(message_id, []).append((kind, webhook_id, at))
            if message_id in waiting and {"message.sent", "message.delivered"} <= {k for k, _, _ in got[message_id]}:
                waiting.discard(message_id)
        return got


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    ctx = mp.get_context("spawn")
    port_out, arrivals = ctx.Queue(), ctx.Queue()
    process = ctx.Process(target=_receiver, args=(port_out, arrivals), daemon=True)
    process.start()
    try:
        assert process.pid is not None
        yield Receiver(port_out.get(timeout=30), process.pid, arrivals)
    finally:
        process.terminate()
        process.join(10)


def set_callbacks(port: int, secret: str, url: str, enabled: bool) -> None:
    """The account's IPN settings through the API (standard format, every event)."""
    request = {"url": url, "enabled": enabled, "format": "standard", "events": []}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "PUT",
        "/api/v1/ipn",
        json.dumps(request).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
    )
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"IPN settings refused: {response.status} {body[:300]!r}")


# --- Dispatch and the end-to-end run ----------------------------------------------------------


def per_message(used: dict[str, float], messages: int) -> dict[str, float]:
    return {role: round(seconds / max(messages, 1) * 1000, 2) for role, seconds in used.items()}


def dispatch_run(
    api: Running,
    ws: Running,
    db_url: str,
    secret: str,
    tokens: list[str],
    rate: float,
    seconds: float,
    *,
    prefix: str = "dispatch",
    delivered: bool = False,
    worker_pid: int | None = None,
    callbacks: Receiver | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    """Sends at `rate` msg/s for `seconds` with the phones attached; API answer → assign
    latency, and the CPU each role spent per message from the first send until every
    message was assigned (and, with `delivered`, reported delivered; with `callbacks`,
    until both its callbacks reached the receiver). `trace`: the file Daphne (started
    with bench/dispatch_trace.py) writes its trace to; then the result has `trace`."""
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    phones = ctx.Process(
        target=_phones_process,
        args=(f"ws://127.0.0.1:{ws.port}/ws/device/", tokens, delivered, ready, stop, out, trace is not None),
    )
    phones.start()
    if not ready.wait(30):
        raise RuntimeError("phones did not connect")
    answers: dict[str, float] = {}
    requested: dict[str, float] = {}
    accept: list[float] = []
    local = threading.local()

    def one(n: int) -> None:
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        local.conn = conn
        body = urllib.parse.urlencode({"api_key": secret, "to": "+393331234567", "msg": f"{prefix} {n}"}).encode()
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

    # Only the processes this script started, and the database's backends (module docstring).
    roles: dict[str, Callable[[], set[int]]] = {"daphne": lambda: descendants(ws.pid)}
    if api.pid != ws.pid:
        roles["gunicorn"] = lambda: descendants(api.pid)
    if worker_pid is not None:
        roles["worker"] = lambda: descendants(worker_pid)
    roles["postgres"] = lambda: postgres_backends(db_url)
    roles["phones"] = lambda: descendants(phones.pid or 0)
    roles["clients"] = lambda: {os.getpid()}
    if callbacks is not None:
        roles["receiver"] = lambda: descendants(callbacks.pid)
    meter = CpuMeter(roles)
    meter.start()
    window = time.perf_counter()
    at_rate(one, rate=rate, seconds=seconds, threads=32)
    got: dict[str, list[tuple[str, str, float]]] = {}
    if callbacks is not None:
        got = callbacks.collect(set(answers), timeout=60)
    else:
        wait_until(db_url, ("queued", "assigned", "sent") if delivered else ("queued", "assigned"), prefix, 30)
    cpu, ended = meter.stop()
    window = time.perf_counter() - window
    stop.set()
    assigns: list[tuple[str, float, int]] = out.get(timeout=30)
    offers: list[tuple[str, float, int]] = out.get(timeout=30) if trace is not None else []
    phones.join(10)
    first: dict[str, float] = {}
    duplicates = 0
    per_phone = [0] * len(tokens)  # assigns each phone got, in the order the phones were enrolled
    for message_id, at, phone in assigns:
        per_phone[phone] += 1
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
    result = {
        "sent": len(answers),
        "assigned": len(latencies),
        "duplicates": duplicates,
        "unassigned": unassigned,
        "per_phone": per_phone,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "request_to_assign_p50_ms": pct(end_to_end, 50),
        "request_to_assign_p99_ms": pct(end_to_end, 99),
        "accept_p50_ms": statistics.median(accept) * 1000 if accept else float("nan"),
        # CPU milliseconds per message of each role over the window.
        "cpu_ms_per_message": per_message(cpu, len(answers)),
        "window_s": round(window, 1),
        "processes_ended_in_window": ended,
    }
    if callbacks is not None:
        result["callbacks"] = callback_summary(answers, requested, got)
    if trace is not None:
        result["trace"] = trace_summary(answers, assigns, offers, read_trace(ws.pid, trace))
    return result


def read_trace(pid: int, path: str) -> dict[str, Any]:
    """Has Daphne (bench/dispatch_trace.py) write its trace, and reads it."""
    done = Path(f"{path}.done")
    done.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("daphne wrote no trace")
        time.sleep(0.1)
    data: dict[str, Any] = json.loads(done.read_text())
    done.unlink()
    return data


def trace_summary(
    answers: dict[str, float],
    assigns: list[tuple[str, float, int]],
    offers: list[tuple[str, float, int]],
    trace: dict[str, Any],
) -> dict[str, Any]:
    """Where the time of a message went (--trace-dispatch), ms from the API answer: the
    median over all messages and the mean over the slowest 2 %; rounds ended by their timer;
    the event loop's garbage-collection pauses."""
    first_assign: dict[str, float] = {}
    for message_id, at, _phone_index in assigns:
        first_assign.setdefault(message_id, at)
    first_offer: dict[str, float] = {}
    for message_id, at, _phone_index in offers:
        first_offer[message_id] = min(at, first_offer.get(message_id, at))
    rows = []
    for message_id, answered in answers.items():
        entry = trace["messages"].get(message_id)
        if entry is None or message_id not in first_assign:
            continue
        won = [db for db in entry["db"] if db[3]]
        awaited = entry.get("awaited")
        claims = entry["claims"]
        row = {
            "latency": first_assign[message_id] - answered,
            # answer → the offer event reaches a consumer in Daphne (negative: before the answer)
            "to_offer_event": entry.get("offer", answered) - answered,
            # offer event → first offer frame written
            "offer_written": min(entry["offered"].values(), default=answered) - entry.get("offer", answered),
            # first offer frame written → first phone has it
            "offer_to_phone": first_offer.get(message_id, answered) - min(entry["offered"].values(), default=answered),
            # first phone has the offer → round opened (first claim in)
            "to_round": entry.get("opened", answered) - first_offer.get(message_id, answered),
            "round": entry.get("settled", answered) - entry.get("opened", answered),
            # the awaited phone's claim after the round opened (its lateness; missing: never came)
            "awaited_late": (float(claims[str(awaited)]) - entry["opened"])
            if awaited is not None and str(awaited) in claims and "opened" in entry
            else float("nan"),
            "settled_to_db": (won[0][1] - entry["settled"]) if won and "settled" in entry else float("nan"),
            "db": (won[0][2] - won[0][1]) if won else float("nan"),
            "db_tries": len(entry["db"]),
            "assign_to_phone": first_assign[message_id] - entry.get("assign", first_assign[message_id]),
            "by_timer": bool(entry.get("by_timer")),
            "offers_written": len(entry["offered"]),
            "claims_in": len(claims),
        }
        rows.append(row)
    rows.sort(key=lambda r: r["latency"])
    slow = rows[-max(1, len(rows) // 50) :] if rows else []
    keys = [k for k in rows[0] if k not in ("by_timer",)] if rows else []

    def mean(values: list[float]) -> float:
        real = [v for v in values if v == v]
        return sum(real) / len(real) if real else float("nan")

    median = {k: statistics.median([r[k] for r in rows if r[k] == r[k]] or [float("nan")]) for k in keys}
    slow_mean = {k: mean([r[k] for r in slow]) for k in keys}
    counts = ("db_tries", "offers_written", "claims_in")
    pauses = sorted(seconds for _at, seconds, _gen in trace["gc"])
    return {
        "messages": len(rows),
        "median": {k: (v if k in counts else round(v * 1000, 2)) for k, v in median.items()},
        "slowest_2pct_mean": {k: (v if k in counts else round(v * 1000, 2)) for k, v in slow_mean.items()},
        # offered to more than one phone (all phones before directed offers; after them, the
        # messages whose chosen phone was late or refused)
        "offered_to_several": sum(1 for r in rows if r["offers_written"] > 1),
        "rounds_by_timer": sum(r["by_timer"] for r in rows),
        "slowest_2pct_by_timer": sum(r["by_timer"] for r in slow),
        "gc_pauses": len(pauses),
        "gc_max_ms": round(pauses[-1] * 1000, 2) if pauses else 0.0,
        "gc_over_5ms": sum(1 for p in pauses if p > 0.005),
        "gc_total_ms": round(sum(pauses) * 1000, 1),
    }


def callback_summary(
    answers: dict[str, float], requested: dict[str, float], got: dict[str, list[tuple[str, str, float]]]
) -> dict[str, Any]:
    """Both callbacks of every message? In order? Once each? And the request → delivered callback latency."""
    complete = in_order = twice = 0
    latencies = []
    for message_id in answers:
        arrivals = got.get(message_id, [])
        kinds = [kind for kind, _, _ in arrivals]
        twice += len(arrivals) - len({webhook_id for _, webhook_id, _ in arrivals})
        if "message.sent" in kinds and "message.delivered" in kinds:
            complete += 1
            in_order += kinds.index("message.sent") < kinds.index("message.delivered")
            delivered_at = min(at for kind, _, at in arrivals if kind == "message.delivered")
            latencies.append((delivered_at - requested[message_id]) * 1000)
    return {
        "both_arrived": complete,
        "sent_before_delivered": in_order,
        "arrived_twice": twice,
        "request_to_delivered_callback_p50_ms": pct(latencies, 50),
        "request_to_delivered_callback_p99_ms": pct(latencies, 99),
    }


def end_to_end(
    api: Running,
    ws: Running,
    env: dict[str, str],
    db_url: str,
    secret: str,
    tokens: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """accept → dispatch → `sent` and `delivered` reports, with callbacks off, and on with
    a `manage.py worker` delivering both to a local receiver; per setting, a short unmeasured
    warm-up, then `--e2e-runs` measured runs."""
    results: dict[str, Any] = {}
    with worker(env) as worker_pid, receiver() as hook:
        for setting in args.e2e_callbacks.split(","):
            on = setting == "on"
            set_callbacks(api.port, secret, f"http://127.0.0.1:{hook.port}/ipn", enabled=on)
            runs = []
            for n in range(args.e2e_runs + 1):
                run = dispatch_run(
                    api,
                    ws,
                    db_url,
                    secret,
                    tokens,
                    args.rate,
                    1.0 if n == 0 else args.e2e_seconds,
                    prefix=f"e2e{setting}{n}",
                    delivered=True,
                    worker_pid=worker_pid,
                    callbacks=hook if on else None,
                )
                if n:  # the first is the warm-up
                    runs.append(run)
            results[f"callbacks {setting}"] = runs
    return results


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
    parser.add_argument(
        "--phases",
        default="throughput,dispatch,e2e",
        help="comma-separated: throughput (bare, single, bulk), dispatch, e2e",
    )
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
    parser.add_argument("--rate", type=float, default=100, help="msg/s during the dispatch and end-to-end runs")
    parser.add_argument("--dispatch-seconds", type=float, default=10)
    parser.add_argument(
        "--trace-dispatch",
        action="store_true",
        help="Daphne under bench/dispatch_trace.py: where each message's time went (dispatch phase)",
    )
    parser.add_argument("--bulk-rows", type=int, default=10_000)
    parser.add_argument("--bulk-repeats", type=int, default=3)
    parser.add_argument("--e2e-servers", default="gunicorn", help="API servers the end-to-end run uses")
    parser.add_argument("--e2e-callbacks", default="off,on", help="end-to-end runs with callbacks off, on")
    parser.add_argument("--e2e-seconds", type=float, default=10)
    parser.add_argument("--e2e-runs", type=int, default=2, help="measured end-to-end runs per setting")
    parser.add_argument(
        "--e2e-history",
        type=int,
        default=0,
        help="delivered messages of the past (with their timeline, callbacks and attempts) written before the"
        " end-to-end runs, so PostgreSQL plans for tables of a service in use; default 0 (a fresh database)",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    # The end-to-end run's callbacks go to a receiver on 127.0.0.1.
    env = {**base_env(db_url, redis_url, settings="bench.bare_settings"), "IPN_ALLOW_PRIVATE_NETWORKS": "true"}
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
            trace = f"/tmp/pf-dispatch-trace-{os.getpid()}.json" if args.trace_dispatch else None
            traced_env = {**env, "PF_DISPATCH_TRACE": trace} if trace else env
            app = "bench.dispatch_trace" if trace else "config.asgi"
            ws = stack.enter_context(server("daphne", traced_env, 1, app=app))
            # daphne: one process serves the API and the phones, as `make run` does.
            api = (
                ws
                if kind == "daphne"
                else stack.enter_context(server(kind, env, args.gunicorn_workers, args.gunicorn_threads))
            )
            row: dict[str, Any] = {}
            if "throughput" in phases:
                bare, single = interleaved(
                    api.port,
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
                bulk = bulk_run(api.port, secret, args.bulk_rows, args.bulk_repeats)
                row.update(bulk_rate_best=max(bulk), bulk_rate_median=statistics.median(bulk))
            # Start the dispatch run from an empty queue (the runs above left work queued), and
            # with the clean-up of all those rows done, not running beside the measurement.
            sql(db_url, "UPDATE messaging_message SET status = 'cancelled' WHERE status IN ('queued', 'assigned')")
            sql(db_url, "VACUUM ANALYZE")
            if not tokens:
                tokens = enrol_phones(ws.port, creds["pin"], args.phones)
            if "dispatch" in phases:
                row["dispatch"] = dispatch_run(
                    api, ws, db_url, secret, tokens, args.rate, args.dispatch_seconds, trace=trace
                )
                sql(db_url, "UPDATE messaging_message SET status = 'cancelled' WHERE status IN ('queued', 'assigned')")
            if "e2e" in phases and kind in args.e2e_servers.split(","):
                if args.e2e_history:
                    took = write_history(db_url, args.e2e_history)
                    print(f"history: {args.e2e_history} delivered messages written in {took:.0f} s")
                row["e2e"] = end_to_end(api, ws, env, db_url, secret, tokens, args)
            results[kind] = row
        print_row(kind, row, clients, args)
    print(json.dumps(results, indent=2, default=float))


def print_row(kind: str, row: dict[str, Any], clients: str, args: argparse.Namespace) -> None:
    print(f"\n== API served by {kind} ({clients}) ==")
    if "bare_rps" in row:
        print_throughput(row, args)
    if "dispatch" in row:
        print_dispatch(row["dispatch"], args)
    for setting, runs in row.get("e2e", {}).items():
        for n, run in enumerate(runs, 1):
            print_end_to_end(setting, n, run, args)


def print_throughput(row: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"bare view (1 INSERT):  {row['bare_rps']:8.0f} req/s   (failures {row['bare_failures']})")
    print(f"single send:           {row['single_rps']:8.0f} msg/s   (failures {row['single_failures']})")
    print(f"single / bare:         {row['ratio']:8.2f}")
    print(f"accept latency:        p50 {row['accept_p50_ms']:.1f} ms   p99 {row['accept_p99_ms']:.1f} ms")
    print(
        f"bulk ({args.bulk_rows} rows):     best {row['bulk_rate_best']:.0f} msg/s   "
        f"median {row['bulk_rate_median']:.0f}"
    )


def print_dispatch(d: dict[str, Any], args: argparse.Namespace) -> None:
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
    print_spread(d)
    print_cpu(d)
    if "trace" in d:
        print_trace(d["trace"])


def print_trace(t: dict[str, Any]) -> None:
    print(f"  trace of {t['messages']} messages (ms; median of all, mean of the slowest 2 %):")
    for key, value in t["median"].items():
        print(f"    {key:18} {value:8.2f}  {t['slowest_2pct_mean'][key]:8.2f}")
    print(
        f"    offered to several phones: {t['offered_to_several']}; "
        f"rounds ended by their timer: {t['rounds_by_timer']} (of the slowest 2 %: {t['slowest_2pct_by_timer']}); "
        f"GC pauses {t['gc_pauses']}, longest {t['gc_max_ms']} ms, over 5 ms {t['gc_over_5ms']}, "
        f"total {t['gc_total_ms']} ms"
    )


def print_spread(d: dict[str, Any]) -> None:
    counts = d.get("per_phone") or [0]
    print(f"  assigns per phone:     {' / '.join(str(n) for n in counts)}   (min {min(counts)}, max {max(counts)})")


# The server's processes; PostgreSQL's backends of the bench database count with them.
SERVER_ROLES = ("gunicorn", "daphne", "worker")


def print_cpu(d: dict[str, Any]) -> None:
    cpu = d["cpu_ms_per_message"]
    python = sum(cpu.get(role, 0.0) for role in SERVER_ROLES)
    print(
        "  CPU ms per message:    "
        + "  ".join(f"{role} {cpu[role]:.2f}" for role in (*SERVER_ROLES, "postgres") if role in cpu)
        + f"  = server {python + cpu.get('postgres', 0.0):.2f} ({python:.2f} without PostgreSQL)"
    )
    print(
        "    outside the server:  "
        + "  ".join(f"{role} {cpu[role]:.2f}" for role in ("phones", "clients", "receiver") if role in cpu)
        + f"   (window {d['window_s']} s; processes ended inside it: {d['processes_ended_in_window']})"
    )


def print_end_to_end(setting: str, n: int, d: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"end to end, {setting}, run {n} ({args.phones} phones, {args.rate:.0f} msg/s, sent + delivered): "
        f"sent {d['sent']}  assigned {d['assigned']}  duplicates {d['duplicates']}  unassigned {d['unassigned']}  "
        f"dispatch p50 {d['p50_ms']:.1f} ms  p99 {d['p99_ms']:.1f} ms"
    )
    print_spread(d)
    if "callbacks" in d:
        c = d["callbacks"]
        print(
            f"  callbacks: both arrived {c['both_arrived']}  sent before delivered {c['sent_before_delivered']}  "
            f"arrived twice {c['arrived_twice']}  request → delivered callback "
            f"p50 {c['request_to_delivered_callback_p50_ms']:.0f} ms  "
            f"p99 {c['request_to_delivered_callback_p99_ms']:.0f} ms"
        )
    print_cpu(d)


if __name__ == "__main__":
    main()
