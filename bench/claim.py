"""What one claim costs in one process: `dispatch.claim_message` of N queued messages by one
phone of a list of five (no caps), one after the other, on PostgreSQL. Wall time per claim
(the conditional UPDATE with its conditions and its timeline row, one round trip).

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/<scratch db> SECRET_KEY=…
    dropdb --if-exists <scratch db>; createdb <scratch db>; .venv/bin/python manage.py migrate
    flock /tmp/pf-bench.lock .venv/bin/python bench/claim.py 2000

Writes into that database (an account, a list, five phones, N messages): use a scratch one.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import connection  # noqa: E402

from devices.models import Device  # noqa: E402
from messaging.services import dispatch  # noqa: E402
from tests import factories  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    account = factories.make_account(credit=count * 2)
    phone_list = factories.make_list(account=account)
    phones = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[0] for n in range(5)]
    device = Device.objects.select_related("phone_list").get(pk=phones[0].pk)
    ids = [factories.make_message(phone_list=phone_list, cost=0).public_id for _ in range(count)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    times = []
    for message_id in ids:
        started = time.perf_counter()
        assert dispatch.claim_message(device=device, message_id=message_id) is not None
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p50, p90, p99 = (times[int(count * q)] for q in (0.5, 0.9, 0.99))
    print(f"claims={count} p50={p50:.3f} ms p90={p90:.3f} ms p99={p99:.3f} ms mean={statistics.mean(times):.3f} ms")


if __name__ == "__main__":
    main()
