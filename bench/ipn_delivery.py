"""IPN benchmark: delivery latency (event written → receiver got it) and throughput.

    .venv/bin/python bench/ipn_delivery.py

Everything runs on 127.0.0.1: a fresh PostgreSQL database (`phonefleet_bench_ipn`), a
receiver process answering 200 at once, and real `manage.py worker` processes. This
process writes events the way the dispatch code does (`record_message_event` in a
committed transaction) and the receiver stamps each arrival with the same clock.

1. latency: 1 worker, events written at a steady rate; p50/p95/p99/max;
2. throughput: a backlog of N events written in one transaction, for one account and
   spread over 16 accounts (a worker step sends to up to 16 accounts at once, one event
   each), drained by 1 and 2 workers side by side; events/s from the commit to the last
   arrival, and whether any event arrived twice.

Workers are warmed up (one event delivered) before anything is measured.

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/phonefleet_bench_ipn;
dropped and re-created).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness import PY, ROOT, base_env, manage, pct, reset_database, stop

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/phonefleet_bench_ipn"


def _receiver(port_out: Any, arrivals: Any) -> None:
    """A receiver process: answers 200 and reports (webhook-id, arrival time)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as any real web server

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.put((self.headers["webhook-id"], time.time()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a worker stopped between two keep-alive requests: not news

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def workers(count: int, env: dict[str, str]) -> Iterator[None]:
    processes = [
        subprocess.Popen([PY, "manage.py", "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        stop(*processes, timeout=20)


def collect(arrivals: Any, expected: set[str], timeout: float) -> dict[str, list[float]]:
    """Arrival times per webhook id until every expected id arrived (or the timeout)."""
    got: dict[str, list[float]] = {}
    deadline = time.monotonic() + timeout
    while not expected <= got.keys():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(Exception):
            webhook_id, at = arrivals.get(timeout=min(remaining, 1.0))
            got.setdefault(webhook_id, []).append(at)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20, help="events/s written in the latency run")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backlog", type=int, default=3000, help="events in each throughput run")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--accounts", default="1,16", help="accounts the backlog is spread over")
    args = parser.parse_args()

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    reset_database(db_url)
    env = {**base_env(db_url, None), "IPN_ALLOW_PRIVATE_NETWORKS": "true"}
    manage(env, "migrate", "--noinput")

    context = mp.get_context("spawn")
    port_out, arrivals = context.Queue(), context.Queue()
    receiver = context.Process(target=_receiver, args=(port_out, arrivals), daemon=True)
    receiver.start()
    port = port_out.get(timeout=10)

    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import transaction

    from ipn import services as ipn_services
    from messaging.services import callbacks
    from tests import factories
    from tests.ipn.conftest import make_message

    messages = []
    for n in range(max(int(c) for c in args.accounts.split(","))):
        account = factories.make_account(credit=0, email=f"bench{n}@example.com")
        phone_list = factories.make_list(account=account)
        ipn_services.update_endpoint(account=account, url=f"http://127.0.0.1:{port}/ipn", enabled=True)
        messages.append(make_message(account=account, phone_list=phone_list, ref="bench"))

    def write_event(n: int = 0) -> str:
        with transaction.atomic():
            event = callbacks.record_message_event(message=messages[n], status="sent")
        assert event is not None
        return event.webhook_id

    def warm_up() -> None:
        """Waits until the workers are up and delivering (Django start-up is not measured)."""
        webhook_id = write_event()
        if webhook_id not in collect(arrivals, {webhook_id}, timeout=60):
            raise RuntimeError("the worker delivered nothing")

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"IPN benchmark: PostgreSQL, receiver on 127.0.0.1, {os.cpu_count()} CPUs, load average {load}")
    with workers(1, env):
        warm_up()
        written: dict[str, float] = {}
        total = int(args.rate * args.seconds)
        start = time.monotonic()
        for n in range(total):
            time.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            webhook_id = write_event()
            written[webhook_id] = time.time()
        got = collect(arrivals, set(written), timeout=60)
    latencies = [(got[i][0] - written[i]) * 1000 for i in written if i in got]
    print(
        f"latency, 1 worker, {args.rate:g} events/s for {args.seconds:g} s: {len(latencies)}/{total} arrived; "
        f"p50 {statistics.median(latencies):.0f} ms, p95 {pct(latencies, 95):.0f} ms, "
        f"p99 {pct(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
    )

    for accounts in [int(a) for a in args.accounts.split(",")]:
        for count in [int(c) for c in args.workers.split(",")]:
            with workers(count, env):
                warm_up()
                with transaction.atomic():
                    ids = {write_event(n % accounts) for n in range(args.backlog)}
                committed = time.time()
                got = collect(arrivals, ids, timeout=300)
            last = max(times[0] for key, times in got.items() if key in ids)
            twice = sum(1 for key, times in got.items() if key in ids and len(times) > 1)
            arrived = len(ids & got.keys())
            print(
                f"throughput, backlog {args.backlog} over {accounts} account(s), {count} worker(s): "
                f"{arrived}/{len(ids)} arrived, {arrived / (last - committed):.0f} events/s, {twice} delivered twice"
            )
    receiver.terminate()


if __name__ == "__main__":
    main()
