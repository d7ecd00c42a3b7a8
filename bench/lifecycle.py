"""What one message costs, stage by stage, in one process: the send API, the claim, the
`sent` and `delivered` reports and the worker's delivery of both callbacks, with the
CPU of this process and of its PostgreSQL backend per message for each stage.

    .venv/bin/python bench/lifecycle.py   # options: --messages 500 --batches 3 --history 0 --profile STAGE

Sets up a fresh PostgreSQL database (`phonefleet_lifecycle`, dropped and re-created; or
LIFECYCLE_DATABASE_URL), one account with IPN callbacks on (standard format, every
event) to a local receiver process (keep-alive, answers 200), one list and 10 phones.
`--history N` first writes N delivered messages of the past (timeline, outbox and
attempt rows included) and runs VACUUM ANALYZE, so the planner sees tables the size of
a service in use rather than a fresh database's. Each batch sends `--messages` through
`POST /api/v1/send` (Django's test client: the view, DRF and the middleware, not the
WSGI server), claims each for a phone, reports each `sent`, then `delivered`, then runs
the worker's IPN step until nothing is due; the median over the batches is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import multiprocessing as mp
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import cpu_sample, django_in_process, write_history
from send import _receiver

DB_URL = os.environ.get("LIFECYCLE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonefleet_lifecycle")
PHONES = 10


def backend_cpu() -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return sum(cpu_sample({pid}).values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--profile", default="", help="a stage to profile (cProfile, last batch)")
    args = parser.parse_args()
    os.environ["IPN_ALLOW_PRIVATE_NETWORKS"] = "true"
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    django_in_process(DB_URL)
    from django.db import connection
    from django.test import Client

    from ipn import delivery
    from ipn.models import IpnEndpoint, IpnEvent
    from messaging.services import dispatch
    from tests import factories

    ctx = mp.get_context("spawn")
    port_out, arrivals = ctx.Queue(), ctx.Queue()
    receiver = ctx.Process(target=_receiver, args=(port_out, arrivals), daemon=True)
    receiver.start()
    port = port_out.get(timeout=30)

    account = factories.make_account(credit=10**9)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    devices = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[0] for n in range(PHONES)]
    for device in devices:
        device.phone_list = phone_list
    IpnEndpoint.objects.create(
        account=account, url=f"http://127.0.0.1:{port}/ipn", enabled=True, secret="whsec_" + "A" * 43
    )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_apikey SET rate_limit_per_minute = 1000000000")
    if args.history:
        print(f"history: {args.history} messages in {write_history(DB_URL, args.history):.0f} s")
    with connection.cursor() as cursor:
        if os.environ.get("LIFECYCLE_SETUP_SQL"):
            cursor.execute(os.environ["LIFECYCLE_SETUP_SQL"])
        cursor.execute("VACUUM ANALYZE")
    client = Client(HTTP_HOST="127.0.0.1")
    perf = None
    if os.environ.get("LIFECYCLE_PERF"):
        import subprocess

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (backend_pid,) = cursor.fetchone()
        perf = subprocess.Popen(["perf", "record", "-g", "-p", str(backend_pid), "-o", os.environ["LIFECYCLE_PERF"]])
        time.sleep(1)
    results: dict[str, list[tuple[float, float]]] = {}

    def stage(name: str, calls: Sequence[Callable[[], object]], profile: bool) -> list[object]:
        profiler = cProfile.Profile() if profile else None
        before_backend, before = backend_cpu(), time.process_time()
        if profiler:
            profiler.enable()
        out = [call() for call in calls]
        if profiler:
            profiler.disable()
        own, backend = time.process_time() - before, backend_cpu() - before_backend
        results.setdefault(name, []).append((own / args.messages * 1e3, backend / args.messages * 1e3))
        if profiler:
            pstats.Stats(profiler).sort_stats(os.environ.get("LIFECYCLE_SORT", "cumulative")).print_stats(60)
        return out

    def send() -> str:
        answer = client.post("/api/v1/send", {"api_key": secret, "to": "+393331234567", "msg": "Lifecycle"})
        assert answer.status_code == 200, answer.content
        return str(answer.json()["message_id"])

    def worker() -> None:
        while delivery.deliver_one_due_event():
            pass

    for batch in range(args.batches + 1):  # the first is a warm-up
        profiled = args.profile if batch == args.batches else ""
        ids = [str(m) for m in stage("send", [send] * args.messages, profiled == "send")]
        pairs = [(devices[n % PHONES], message_id) for n, message_id in enumerate(ids)]
        claims = [functools.partial(dispatch.claim_message, device=d, message_id=m) for d, m in pairs]
        stage("claim", claims, profiled == "claim")
        for status in ("sent", "delivered"):
            reports = [
                functools.partial(dispatch.report_message, device=d, message_id=m, status=status) for d, m in pairs
            ]
            stage(status, reports, profiled == status)
        time.sleep(0.1)
        stage("worker", [worker], profiled == "worker")  # per message: both its callbacks
        pending = IpnEvent.objects.filter(status=IpnEvent.Status.PENDING).count()
        assert pending == 0, pending
        if batch == 0:
            results.clear()
    print(f"{'ms per message':16s} {'this process':>14s} {'PostgreSQL':>12s}")
    total_own = total_pg = 0.0
    for name, values in results.items():
        own = statistics.median(v[0] for v in values)
        pg = statistics.median(v[1] for v in values)
        total_own += own
        total_pg += pg
        print(f"{name:16s} {own:14.3f} {pg:12.3f}")
    print(f"{'total':16s} {total_own:14.3f} {total_pg:12.3f}")
    receiver.terminate()
    if perf is not None:
        perf.send_signal(2)
        perf.wait()


if __name__ == "__main__":
    main()
