"""What a phone's report costs, in one process: `dispatch.report_message` with callbacks on
(the general path: read, conditional UPDATE, timeline, outbox row, in one transaction)
and off (PostgreSQL's one-statement report).

    .venv/bin/python bench/reports.py            # options: --messages 300 --batches 5

Sets up a fresh PostgreSQL database (`phonefleet_reports`, dropped and re-created; or
REPORTS_DATABASE_URL), one account, list and phone, and for each case claims
`--messages` messages and then reports each `sent` and then `delivered`, timing each
report: CPU of this process (the ORM and the driver) and wall time (which adds
PostgreSQL's work and the round trips). Prints the median of each batch's per-report
mean, and the best batch. The `delivered (no sent)` case is one `delivered` report for a
message whose `sent` never came (it records both).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import cpu_sample, django_in_process

DB_URL = os.environ.get("REPORTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonefleet_reports")


def _backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (a local server)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return sum(cpu_sample({pid}).values())


def measure(name: str, batches: int, prepare: Callable[[], list[Callable[[], object]]]) -> None:
    cpu, wall = [], []
    backend, calls_made = 0.0, 0
    for _ in range(batches):
        calls = prepare()
        backend_started = _backend_cpu()
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for call in calls:
            call()
        cpu.append((time.process_time() - cpu_started) / len(calls) * 1e6)
        wall.append((time.perf_counter() - wall_started) / len(calls) * 1e6)
        backend += _backend_cpu() - backend_started
        calls_made += len(calls)
    print(
        f"{name:40s} CPU {statistics.median(cpu):6.0f} µs (best {min(cpu):6.0f})"
        f"   wall {statistics.median(wall):6.0f} µs (best {min(wall):6.0f})"
        f"   PostgreSQL backend {backend / calls_made * 1e6:6.0f} µs (all batches; 10 ms ticks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    django_in_process(DB_URL)
    from ipn.models import IpnEndpoint
    from messaging.services import dispatch
    from tests import factories

    account = factories.make_account(credit=10**9)
    phone_list = factories.make_list(account=account)
    device, _token = factories.make_enrolled_device(phone_list=phone_list)
    device.phone_list = phone_list
    endpoint = IpnEndpoint.objects.create(account=account, url="https://hooks.example/ipn", secret="whsec_x")

    def claimed() -> list[str]:
        ids = [factories.make_message(phone_list=phone_list).public_id for _ in range(args.messages)]
        for message_id in ids:
            assert dispatch.claim_message(device=device, message_id=message_id)
        return ids

    def reports(*statuses: str) -> Callable[[], list[Callable[[], object]]]:
        def prepare() -> list[Callable[[], object]]:
            ids = claimed()
            for status in statuses[:-1]:  # the reports before the measured one
                for message_id in ids:
                    dispatch.report_message(device=device, message_id=message_id, status=status)
            last = functools.partial(dispatch.report_message, device=device, status=statuses[-1])
            return [functools.partial(last, message_id=message_id) for message_id in ids]

        return prepare

    for callbacks in (True, False):
        IpnEndpoint.objects.filter(pk=endpoint.pk).update(enabled=callbacks)
        label = "callbacks on" if callbacks else "callbacks off"
        measure(f"sent ({label})", args.batches, reports("sent"))
        measure(f"delivered after sent ({label})", args.batches, reports("sent", "delivered"))
        measure(f"delivered, no sent ({label})", args.batches, reports("delivered"))


if __name__ == "__main__":
    main()
