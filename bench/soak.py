"""Soak: thousands of simulated phones on ONE Daphne process while messages flow, beside a
bare Channels consumer holding the same phones; optionally a restart under them.

    .venv/bin/python bench/soak.py --phones 2000 --rate 20 --seconds 60
    .venv/bin/python bench/soak.py --phones 10000 --list-size 10 --one-list --rate 100 \
        --seconds 60 --ramp 0.004 --restart kill        # issue 21: 10 phones claiming

Starts everything itself on 127.0.0.1: a fresh PostgreSQL database (`phonefleet_soak`,
dropped and re-created), Redis db 14 (flushed), one Daphne (the phones' WebSockets), one
gunicorn (the API, as in docs/deploy.md) and one `manage.py worker`. The phones are asyncio
`websockets` clients spread over a few processes; they speak the frames of
docs/device-protocol.md (state, claim every offer, report `sent` on assign, ping every
20 s, the agent's backoff, and a busy server's `retry_after`). Reports:

- the bare consumer first (`bench/bare_asgi.py`, its own Daphne, the same phones): RSS per
  connection, the yardstick for the phones' consumer;
- connections held: phones with a `hello` at the end / phones started, and reconnects;
- Daphne's RSS before the phones (after one phone came and went), with them, and per
  connection, and that against the bare consumer's;
- dispatch latency: API answer → `assign` frame at a phone, p50/p99/max, lost, duplicates
  (after `--warmup` seconds of messages at the same rate, whose figures are given apart);
- PostgreSQL connections at their peak, Daphne's (PGAPPNAME soak-daphne) and in all;
- with `--restart kill|term`: Daphne killed (or stopped) and started again on the same
  port while messages keep coming: seconds until every phone has its `hello` again,
  client errors by kind (403 must not be one), warnings and errors in Daphne's log.

Environment: SOAK_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/phonefleet_soak),
SOAK_REDIS_URL (default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
    cpu_sample,
    cpu_used,
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


def retry_after_of(frame: dict[str, Any]) -> float | None:
    value = frame.get("retry_after") if frame.get("type") == "error" else None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _agent() -> Any:
    """The reference agent's phone module (its backoff and busy waits), from the repository."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from agent import phone as agent_phone

    return agent_phone


async def phone(url: str, token: str, stats: dict[str, Any], stop: asyncio.Event) -> None:
    import websockets

    agent = _agent()
    rng = random.Random()
    headers = {"Authorization": f"Bearer {token}"}
    first = True
    attempt = 0
    while not stop.is_set():
        retry_after = None
        refused = False
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None) as ws:
                await ws.send(json.dumps({"type": "state", "available": True}))
                next_ping = time.monotonic() + random.uniform(0, PING_SECONDS)
                counted = False
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
                        if kind == "hello":  # held: the server took this phone on
                            counted = True
                            attempt = 0
                            stats["connected"] += 1
                            stats["back_at"][token] = time.time()
                            if not first:
                                stats["reconnects"] += 1
                            first = False
                        elif kind == "offer":
                            stats["offers"].append((frame["message_id"], time.time()))
                            await ws.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
                        elif kind == "assign":
                            stats["assigns"].append((frame["message_id"], time.time()))
                            await ws.send(
                                json.dumps({"type": "report", "message_id": frame["message_id"], "status": "sent"})
                            )
                        elif (hint := retry_after_of(frame)) is not None:
                            retry_after = hint
                finally:
                    if counted:
                        stats["connected"] -= 1
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", "")
            code = getattr(getattr(exc, "rcvd", None), "code", "")
            name = f"{type(exc).__name__}{status}{code}"
            stats["errors"][name] = stats["errors"].get(name, 0) + 1
            refused = isinstance(exc, ConnectionRefusedError)
            if status == 503 and response is not None:  # busy before the upgrade: HTTP 503 with Retry-After
                retry_after = agent.retry_after_header(response.headers.get("Retry-After"))
        if stop.is_set():
            break
        if retry_after is not None:  # as the reference agent: the busy server's time
            await asyncio.sleep(agent.busy_delay(retry_after, rng))
        else:  # as the reference agent: exponential backoff, full jitter, 1 s → 60 s (15 s while refused)
            cap = agent.REFUSED_BACKOFF_CAP if refused else agent.BACKOFF_CAP
            await asyncio.sleep(agent.backoff_delay(attempt, rng, cap=cap))
            attempt += 1


def phones_process(url: str, tokens: list[str], ramp: float, conn: Any, nice: bool = True) -> None:
    raise_fd_limit()
    # Below the servers: on a real deployment the phones are other machines, here they
    # share its two cores, and a server starved by its own test load shows a tail that is
    # the bench's (PF_PHONES_NICE=0 to give them the same priority). The claiming phones'
    # own process (`Clients`, `claimers`) is not lowered: what it measures is theirs.
    if nice:
        os.nice(int(os.environ.get("PF_PHONES_NICE", "10")))

    async def main() -> None:
        stats: dict[str, Any] = {
            "connected": 0,
            "reconnects": 0,
            "assigns": [],
            "offers": [],
            "errors": {},
            "back_at": {},
        }
        stop = asyncio.Event()
        tasks = []
        stall_log = os.environ.get("PF_STALL_LOG_CLIENTS")
        if stall_log:  # bench/stall_probe.py, in each phones' process
            import stall_probe

            path = f"{stall_log}-{os.getpid()}.jsonl"
            stall_probe.install_gc(path)
            tasks.append(asyncio.create_task(stall_probe.watch_loop(path)))
        for token in tokens:
            tasks.append(asyncio.create_task(phone(url, token, stats, stop)))
            await asyncio.sleep(ramp)
        # Thousands of phones in one process: its full garbage collections would stall them
        # all for a second or more (a real phone holds one connection). None automatic, and
        # what survived frozen every 15 s without collecting it first: the server's policy
        # (devices/lib/gc_policy.py) collects first, which in these processes took 130-190
        # ms each time and was most of the 10,000-phone dispatch tail; a bench run is short
        # enough for the cycles this leaves uncollected.
        gc.set_threshold(gc.get_threshold()[0], gc.get_threshold()[1], 1_000_000_000)

        async def freeze() -> None:
            while True:
                await asyncio.sleep(15)
                gc.freeze()

        tasks.append(asyncio.create_task(freeze()))
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command == "count":
                conn.send(stats["connected"])
            elif command == "forget":  # a new phase: count reconnects and errors from here
                stats.update(reconnects=0, errors={}, back_at={})
                conn.send(True)
            elif command == "errors":
                conn.send(stats["errors"])
            elif command == "last_back":
                conn.send(max(stats["back_at"].values(), default=0.0))
            elif command == "stop":
                held = stats["connected"]
                stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                conn.send(
                    {
                        "held": held,
                        "reconnects": stats["reconnects"],
                        "assigns": stats["assigns"],
                        "offers": stats["offers"],
                        "errors": stats["errors"],
                    }
                )
                return

    asyncio.run(main())


class Clients:
    """The simulated phones, spread over `processes` processes; `claimers` (the phones of the
    lists messages go to, with --one-list) in one more process of their own at the servers'
    priority. A real phone holds one connection on its own CPU: in a process of 5,000 phones
    its `assign` waited behind the others' frames and, lowered below the servers, behind
    every process on the machine (loop lags of 100-190 ms in bench/stall_probe.py, the
    slowest messages of the run); the phones that claim are what dispatch latency is read at."""

    def __init__(
        self, url: str, tokens: list[str], processes: int, ramp: float, claimers: list[str] | None = None
    ) -> None:
        ctx = mp.get_context("spawn")
        claiming = set(claimers or ())
        rest = [token for token in tokens if token not in claiming]
        share = (len(rest) + processes - 1) // processes
        self.procs: list[tuple[Any, Any]] = []
        groups = [(rest[n * share : (n + 1) * share], True) for n in range(processes)]
        if claiming:
            groups.append(([token for token in tokens if token in claiming], False))
        for group, nice in groups:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=phones_process, args=(url, group, ramp, child, nice))
            process.start()
            self.procs.append((process, parent))

    def ask(self, command: str) -> list[Any]:
        for _process, pipe in self.procs:
            pipe.send(command)
        return [pipe.recv() for _process, pipe in self.procs]

    def connected(self) -> int:
        return sum(self.ask("count"))

    def wait_connected(self, count: int, timeout: float) -> float:
        """Seconds until `count` phones are held (or `timeout`)."""
        started = time.monotonic()
        while self.connected() < count and time.monotonic() - started < timeout:
            time.sleep(0.5)
        return time.monotonic() - started

    def stop(self) -> list[dict[str, Any]]:
        results = self.ask("stop")
        for process, _pipe in self.procs:
            process.join(30)
        return results

    def kill(self) -> None:
        for process, _pipe in self.procs:
            if process.is_alive():
                process.kill()


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


class ConnectionSampler:
    """Counts the soak database's PostgreSQL connections every 0.2 s in a thread: all of
    them, and Daphne's (its connections say `application_name` soak-daphne, PGAPPNAME)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.peak_all = self.peak_daphne = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        name = urllib.parse.urlsplit(self.db_url).path.lstrip("/")
        query = (
            "SELECT count(*), count(*) FILTER (WHERE application_name = 'soak-daphne') FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.done.wait(0.2):
                every, daphne = conn.execute(query, [name]).fetchone() or (0, 0)
                self.peak_all, self.peak_daphne = max(self.peak_all, every), max(self.peak_daphne, daphne)

    def reset(self) -> None:
        self.peak_all = self.peak_daphne = 0

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def log_lines(path: Path, start: int) -> dict[str, int]:
    """Lines from byte `start` of a server log: warnings, errors and tracebacks, and the
    lines that say phones were told to try later (warnings themselves)."""
    with path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    lines = text.splitlines()
    return {
        "warnings": sum(" WARNING " in line or line.startswith("WARNING") for line in lines),
        "try_later_lines": sum("told to try later" in line for line in lines),
        "errors": sum(" ERROR " in line or line.startswith("ERROR") for line in lines),
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
    }


# As docs/deploy.md starts the phones' Daphne (devices/lib/daphne_ws.py PHONE_DAPHNE_FLAGS),
# for both servers: a handshake may wait 30 s for a busy loop, keep-alive 20 s / 30 s, no
# access log.
DAPHNE_FLAGS: tuple[str, ...] = ("--websocket_connect_timeout", "30", "--ping-interval", "20", "--ping-timeout", "30")
DAPHNE_FLAGS += ("--access-log", "/dev/null")


def start_daphne(app: str, port: int, env: dict[str, str], log_name: str) -> subprocess.Popen:
    if (env.get("PF_PROFILE") or env.get("PF_STALL_LOG")) and app == "config.asgi:application":
        # The project under bench/traced_asgi.py: SIGUSR2 starts and stops a cProfile;
        # PF_STALL_LOG: its full collections and loop lags (bench/stall_probe.py).
        env = {**env, "PF_TRACE_APP": "config.asgi", "PF_TRACE_FRAMES": "0"}
        app = "bench.traced_asgi:application"
    backlog = env.get("PF_LISTEN_BACKLOG")
    # Daphne listens with Twisted's default backlog (50) unless given an endpoint string.
    listen = ["-e", f"tcp:port={port}:interface=127.0.0.1:backlog={backlog}"] if backlog else ["-b", "127.0.0.1"]
    listen += [] if backlog else ["-p", str(port)]
    process = subprocess.Popen(
        [PY, "-m", "daphne", *listen, *DAPHNE_FLAGS, app],
        cwd=ROOT,
        env=env,
        stdout=(LOGS / log_name).open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_http(port, process, app, timeout=60)
    return process


def warm_up(port: int, token: str) -> None:
    """One phone connects, says hello and leaves: what a server starts on first use (ORM
    threads, the database pool, the channel layer's reader) is then counted in its idle
    memory, not spread over the phones."""
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {token}"}
    with connect(f"ws://127.0.0.1:{port}/ws/device/", additional_headers=headers, open_timeout=30) as ws:
        ws.send('{"type":"ping"}')
        ws.recv(timeout=30)
    time.sleep(1)


def measure_bare(env: dict[str, str], tokens: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """RSS per connection of a bare Channels consumer (bench/bare_asgi.py) holding the same phones."""
    port = free_port()
    bare = start_daphne("bench.bare_asgi:application", port, env, "bare-daphne.log")
    clients = None
    try:
        warm_up(port, tokens[0])
        idle = rss_kib(bare.pid)
        clients = Clients(f"ws://127.0.0.1:{port}/ws/device/", tokens, args.client_processes, args.ramp)
        # The bare consumer sends no hello: count open sockets on its side instead.
        started = time.monotonic()
        while open_sockets(bare.pid) < len(tokens) and time.monotonic() - started < 300:
            time.sleep(0.5)
        held = open_sockets(bare.pid)
        time.sleep(args.settle)
        connected = rss_kib(bare.pid)
    finally:
        if clients is not None:
            clients.kill()
        stop(bare, timeout=15)
    return {
        "bare_held": held,
        "bare_rss_mib_idle": round(idle / 1024, 1),
        "bare_rss_mib_connected": round(connected / 1024, 1),
        "bare_rss_kib_per_connection": round((connected - idle) / max(1, min(held, len(tokens))), 1),
    }


class MachineCpu:
    """Busy share of all the machine's cores from now until `percent()` (/proc/stat)."""

    def __init__(self) -> None:
        self.busy, self.total = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, sum(fields)

    def percent(self) -> float:
        busy, total = self._read()
        return round(100 * (busy - self.busy) / max(1, total - self.total), 1)


def open_sockets(pid: int) -> int:
    """Established TCP sockets of process `pid` (its accepted WebSockets, roughly)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    established = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and fields[9] in inodes:
                    established += 1
    return established


def wait_drained(db_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_rows = sql(db_url, "SELECT count(*) FROM messaging_message WHERE status IN ('queued', 'assigned')")
        if open_rows[0][0] == 0:
            return
        time.sleep(0.5)


def dispatch_figures(answers: dict[str, float], results: list[dict[str, Any]], name: str = "") -> dict[str, Any]:
    first: dict[str, float] = {}
    duplicates = 0
    for result in results:
        for message_id, at in result["assigns"]:
            if message_id not in answers:
                continue
            if message_id in first:
                duplicates += 1
            first[message_id] = min(at, first.get(message_id, at))
    latencies = sorted((first[m] - answers[m]) * 1000 for m in answers if m in first)
    offered: dict[str, float] = {}
    for result in results:
        for message_id, at in result.get("offers", ()):
            offered[message_id] = min(at, offered.get(message_id, at))
    if name:  # every message's API answer (wall time), dispatch latency and of it until the first offer
        rows = sorted(
            (
                round(answers[m], 3),
                round((first[m] - answers[m]) * 1000, 1),
                round((offered[m] - answers[m]) * 1000, 1) if m in offered else None,
            )
            for m in first
        )
        (LOGS / f"latencies-{name}.json").write_text(json.dumps(rows))
    return {
        "messages_accepted": len(answers),
        "assigned": len(latencies),
        "lost": sum(1 for m in answers if m not in first),
        "duplicate_assigns": duplicates,
        "dispatch_p50_ms": round(pct(latencies, 50), 1),
        "dispatch_p99_ms": round(pct(latencies, 99), 1),
        "dispatch_max_ms": round(latencies[-1], 1) if latencies else None,
        # When the slowest were answered by the API (wall time), to set beside stalls.
        "slowest": sorted(
            ((round(answers[m], 3), round((first[m] - answers[m]) * 1000)) for m in first), key=lambda x: -x[1]
        )[:5],
    }


def progress(summary: dict[str, Any]) -> None:
    """The figures so far, on standard error: a run stopped halfway still leaves them."""
    print(json.dumps({"so_far": summary, "at": time.strftime("%H:%M:%S")}), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--list-size", type=int, default=20, help="phones per list (each offer goes to one list)")
    parser.add_argument("--one-list", action="store_true", help="send every message to the first list only")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--ramp", type=float, default=0.02, help="seconds between two connects in a client process")
    parser.add_argument("--rate", type=float, default=20, help="messages per second through the API")
    parser.add_argument("--seconds", type=float, default=60, help="how long messages flow")
    parser.add_argument(
        "--warmup", type=float, default=5, help="messages flow this long first, at the same rate, counted apart"
    )
    parser.add_argument("--tick", type=float, default=15, help="DEVICE_TICK_SECONDS of the server (its default: 15)")
    parser.add_argument("--accept-rate", type=float, default=300, help="DEVICE_ACCEPT_RATE of the server")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the last connect before RSS is read")
    parser.add_argument("--bare", action=argparse.BooleanOptionalAction, default=True, help="measure a bare consumer")
    parser.add_argument(
        "--restart", choices=("none", "kill", "term"), default="none", help="then restart Daphne (kill -9 or SIGTERM)"
    )
    parser.add_argument(
        "--profile", default="", help="write a cProfile of Daphne's event loop while messages flow to this path"
    )
    parser.add_argument("--storm-seconds", type=float, default=180, help="after a restart, wait this long for all")
    parser.add_argument(
        "--backlog", type=int, default=4096, help="listen backlog of the phones' Daphne (as deployed; 0: Twisted's 50)"
    )
    parser.add_argument(
        "--claimers-apart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --one-list: hold the claiming list's phones in their own client process, not lowered",
    )
    parser.add_argument("--profile-idle", action="store_true", help="profile the idle phones (one --tick) instead")
    parser.add_argument(
        "--stall-probe",
        action="store_true",
        help="log full garbage collections and event-loop lags of Daphne and the phones' processes",
    )
    args = parser.parse_args()

    limit = raise_fd_limit()
    LOGS.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the run like Ctrl-C: the servers and phone processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_at_start = os.getloadavg()[0]
    per_process = max(args.phones, args.phones // args.client_processes * 2) + 1000
    if limit < per_process:
        sys.exit(f"open-file limit {limit} is too low for {args.phones} phones; raise `ulimit -n` to {per_process}")
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
    target_lists = [fleet[0][0]] if args.one_list else [t for t, _ in fleet]

    summary: dict[str, Any] = {"phones": args.phones, "lists": len(fleet), "tick_s": args.tick}
    summary["listen_backlog"] = args.backlog or 50
    summary["load_average_at_start"] = round(load_at_start, 1)
    if args.bare:
        summary.update(measure_bare(env, tokens, args))
        progress(summary)

    procs: list[subprocess.Popen] = []
    clients: Clients | None = None
    sampler = ConnectionSampler(db_url)
    daphne_env = {
        **env,
        "DATABASE_POOL": "true",
        "DEVICE_TICK_SECONDS": str(args.tick),
        "DEVICE_ACCEPT_RATE": str(args.accept_rate),
        "PGAPPNAME": "soak-daphne",
        "PF_PROFILE": args.profile,
        "PF_LISTEN_BACKLOG": str(args.backlog or ""),
    }
    if args.stall_probe:  # bench/stall_probe.py
        for old_log in LOGS.glob("stalls-*.jsonl"):
            old_log.unlink()
        daphne_env["PF_STALL_LOG"] = str(LOGS / "stalls-daphne.jsonl")
        os.environ["PF_STALL_LOG_CLIENTS"] = str(LOGS / "stalls-client")
    try:
        ws_port, api_port = free_port(), free_port()
        daphne = start_daphne("config.asgi:application", ws_port, daphne_env, "daphne.log")
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
        wait_http(api_port, gunicorn, "gunicorn", timeout=60)
        warm_up(ws_port, tokens[0])
        rss_idle = rss_kib(daphne.pid)

        claimers = fleet[0][1] if args.one_list and args.claimers_apart else None
        clients = Clients(f"ws://127.0.0.1:{ws_port}/ws/device/", tokens, args.client_processes, args.ramp, claimers)
        summary["claimers_apart"] = claimers is not None
        summary["connected_in_s"] = round(clients.wait_connected(args.phones, timeout=600), 1)
        time.sleep(args.settle)  # let the connect burst settle before measuring memory
        rss_connected = rss_kib(daphne.pid)
        held_now = clients.connected()  # per phone held (all of them, unless the wait ran out)
        summary.update(
            daphne_rss_mib_idle=round(rss_idle / 1024, 1),
            daphne_rss_mib_connected=round(rss_connected / 1024, 1),
            rss_kib_per_connection=round((rss_connected - rss_idle) / max(1, held_now), 1),
        )
        if args.bare:
            summary["per_connection_vs_bare"] = round(
                summary["rss_kib_per_connection"] / summary["bare_rss_kib_per_connection"], 2
            )
        summary["held_before_messages"] = held_now
        # Daphne's CPU with every phone connected and no message flowing (pings, ticks).
        if args.profile and args.profile_idle:
            daphne.send_signal(signal.SIGUSR2)
        idle_cpu = cpu_sample({daphne.pid})
        time.sleep(args.tick)  # one pass of the scheduler in it
        summary["daphne_cpu_idle_percent"] = round(cpu_used(idle_cpu, cpu_sample({daphne.pid}))[0] * 100 / args.tick, 1)
        if args.profile and args.profile_idle:
            daphne.send_signal(signal.SIGUSR2)
        progress(summary)
        sampler.reset()
        if args.profile and not args.profile_idle:
            daphne.send_signal(signal.SIGUSR2)
        phone_pids = {process.pid for process, _pipe in clients.procs}
        busy_cpu, busy_started = cpu_sample({daphne.pid}), time.monotonic()
        phones_cpu, machine_busy = cpu_sample(phone_pids), MachineCpu()
        # The first messages meet a cold path (statements prepared, plans made on an empty
        # messages table, pools filled): sent and counted apart, at the same rate.
        warm_answers = send_messages(api_port, creds["api_key"], target_lists, args.rate, args.warmup)
        answers = send_messages(api_port, creds["api_key"], target_lists, args.rate, args.seconds)
        seconds = time.monotonic() - busy_started
        summary["daphne_cpu_messages_percent"] = round(
            cpu_used(busy_cpu, cpu_sample({daphne.pid}))[0] * 100 / seconds, 1
        )
        # The phones' processes, and the whole machine (every process, other sessions' too):
        # Daphne's tail follows the CPU it gets.
        summary["phones_cpu_messages_percent"] = round(
            cpu_used(phones_cpu, cpu_sample(phone_pids))[0] * 100 / seconds, 1
        )
        summary["machine_busy_messages_percent"] = machine_busy.percent()
        if args.profile and not args.profile_idle:
            daphne.send_signal(signal.SIGUSR2)
        wait_drained(db_url, 60)
        summary["held_after_messages"] = clients.connected()
        summary["online_in_db_after_messages"] = sql(
            db_url,
            "SELECT count(*) FROM devices_device WHERE is_connected AND last_seen_at > now() - interval '75 seconds'",
        )[0][0]
        summary["daphne_rss_mib_end"] = round(rss_kib(daphne.pid) / 1024, 1)
        summary["peak_pg_connections_soak"] = {"all": sampler.peak_all, "daphne": sampler.peak_daphne}
        clients.ask("forget")

        if args.restart != "none":
            ports = (ws_port, api_port)
            summary.update(storm(args, clients, daphne, procs, daphne_env, ports, creds, target_lists, db_url, sampler))
            summary["storm"]["peak_pg_connections"] = {"all": sampler.peak_all, "daphne": sampler.peak_daphne}
        results = clients.stop()
        clients = None
    finally:
        sampler.stop()
        if clients is not None:
            clients.kill()
        stop(*procs, timeout=15)

    summary["held_at_end"] = sum(r["held"] for r in results)
    summary["reconnects_after_soak"] = sum(r["reconnects"] for r in results)
    summary["client_errors_after_soak"] = {k: v for r in results for k, v in r["errors"].items()}
    if warm_answers:
        summary["warmup"] = dispatch_figures(warm_answers, results, "warmup") | {"seconds": args.warmup}
        summary["warmup"].pop("slowest")
    summary.update(dispatch_figures(answers, results, "soak"))
    if "storm" in summary:
        summary["storm"].update(dispatch_figures(summary["storm"].pop("answers"), results, "storm"))
    if args.stall_probe:
        import stall_probe

        summary["stalls"] = stall_probe.summary(sorted(LOGS.glob("stalls-*.jsonl")))
    print(json.dumps(summary, indent=2))


def storm(
    args: argparse.Namespace,
    clients: Clients,
    daphne: subprocess.Popen,
    procs: list[subprocess.Popen],
    daphne_env: dict[str, str],
    ports: tuple[int, int],
    creds: dict[str, str],
    target_lists: list[str],
    db_url: str,
    sampler: ConnectionSampler,
) -> dict[str, Any]:
    """Restarts Daphne under the connected phones (kill -9 or SIGTERM, then the same
    command on the same port) while messages keep coming; the figures of their return."""
    ws_port, api_port = ports
    log_start = (LOGS / "daphne.log").stat().st_size
    sampler.reset()
    killed_wall, killed_at = time.time(), time.monotonic()
    if args.restart == "kill":
        daphne.kill()
    else:
        daphne.terminate()
    daphne.wait(60)
    procs.remove(daphne)
    stopped_s = time.monotonic() - killed_at
    sends: dict[str, Any] = {}  # messages keep coming through the API (gunicorn) meanwhile
    sender = threading.Thread(
        target=lambda: sends.update(answers=send_messages(api_port, creds["api_key"], target_lists, 5, 30))
    )
    sender.start()
    procs.append(start_daphne("config.asgi:application", ws_port, daphne_env, "daphne.log"))
    serving_s = time.monotonic() - killed_at
    curve: list[tuple[int, int]] = []  # (seconds after serving again, phones back), every 5 s
    while (held := clients.connected()) < args.phones and time.monotonic() - killed_at < args.storm_seconds:
        since = time.monotonic() - killed_at - serving_s
        if not curve or since >= curve[-1][0] + 5:
            curve.append((int(since), held))
        time.sleep(0.25)
    last_back = max(clients.ask("last_back"))
    sender.join()
    wait_drained(db_url, 60)
    errors: dict[str, int] = {}
    for tally in clients.ask("errors"):
        for name, count in tally.items():
            errors[name] = errors.get(name, 0) + count
    return {
        "storm": {
            "restart": args.restart,
            "accept_rate": args.accept_rate,
            "stopped_s": round(stopped_s, 1),
            "serving_again_s": round(serving_s, 1),
            "held": held,
            "all_back_s_after_stop": round(last_back - killed_wall, 1) if held >= args.phones else None,
            "all_back_s_after_serving": round(last_back - killed_wall - serving_s, 1) if held >= args.phones else None,
            "back_every_5_s": curve,
            "client_errors": errors,
            "daphne_log": log_lines(LOGS / "daphne.log", log_start),
            "answers": sends.get("answers", {}),
        }
    }


if __name__ == "__main__":
    main()
