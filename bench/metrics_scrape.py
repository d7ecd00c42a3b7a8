"""What one /metrics scrape costs with a large fleet, in one process.

    .venv/bin/python bench/metrics_scrape.py

Sets up a fresh PostgreSQL database (`phonefleet_scrape`, dropped and re-created) holding
10,000 phones in 100 lists (8,000 online), 20,000 queued messages beside 100,000 sent ones,
and 5,000 pending callbacks beside 50,000 delivered ones, then times the exposition the view
returns (`monitoring.exposition.scrape()`, counters from a PROMETHEUS_MULTIPROC_DIR plus the
database's state): wall and CPU time per scrape, best and median of 20, and its size.
Environment: SCRAPE_DATABASE_URL.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import base_env, machine_speed, manage, reset_database

DB_URL = os.environ.get("SCRAPE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonefleet_scrape")
LISTS, PHONES, QUEUED, SENT, PENDING, DELIVERED = 100, 10_000, 20_000, 100_000, 5_000, 50_000


def fill() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.lib import tokens
    from devices.models import Device
    from ipn.models import IpnEvent
    from messaging.models import Message
    from tests import factories

    now = timezone.now()
    account = factories.make_account()
    lists = [factories.make_list(account=account, name=f"List {n}") for n in range(LISTS)]
    Device.objects.bulk_create(
        Device(
            account=account,
            phone_list=lists[n % LISTS],
            public_id=tokens.public_id("dev"),
            name=f"Phone {n}",
            token_digest=tokens.public_id("digest"),
            is_connected=n % 5 != 0,
            last_seen_at=now,
        )
        for n in range(PHONES)
    )

    def messages(count: int, status: str) -> None:
        Message.objects.bulk_create(
            (
                Message(
                    public_id=tokens.public_id("msg"),
                    account=account,
                    phone_list_id=lists[n % LISTS].pk,
                    to="+393331234567",
                    text="Scrape",
                    status=status,
                    send_at=now - timedelta(seconds=n % 600),
                    expires_at=now + timedelta(hours=1),
                )
                for n in range(count)
            ),
            batch_size=5000,
        )

    messages(QUEUED, Message.Status.QUEUED)
    messages(SENT, Message.Status.SENT)
    for count, status in ((PENDING, IpnEvent.Status.PENDING), (DELIVERED, IpnEvent.Status.DELIVERED)):
        IpnEvent.objects.bulk_create(
            (
                IpnEvent(
                    webhook_id=tokens.public_id("evt"), account=account, type="message.sent", body="{}", status=status
                )
                for _ in range(count)
            ),
            batch_size=5000,
        )


def main() -> None:
    reset_database(DB_URL)
    os.environ.update(base_env(DB_URL, None))
    manage(dict(os.environ), "migrate", "--noinput")
    metrics_dir = tempfile.mkdtemp(prefix="phonefleet-scrape-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    import django

    django.setup()
    from django.db import connection

    from monitoring import exposition

    fill()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    exposition.scrape()  # warm up
    walls, cpus = [], []
    for _ in range(20):
        started, cpu = time.perf_counter(), time.process_time()
        text = exposition.scrape()
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    print(f"Python loop yardstick {machine_speed():.0f} ms")
    print(f"{PHONES:,} phones in {LISTS} lists, {QUEUED:,} queued of {QUEUED + SENT:,} messages, ", end="")
    print(f"{PENDING:,} pending of {PENDING + DELIVERED:,} callbacks")
    print(f"scrape wall ms: best {min(walls):.1f}, median {statistics.median(walls):.1f}")
    print(f"scrape CPU ms in this process: best {min(cpus):.1f}, median {statistics.median(cpus):.1f}")
    lines = text.count(b"\n")
    print(f"exposition: {len(text):,} bytes, {lines:,} lines")
    shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
