"""What Django needs behind PgBouncer in transaction mode, shown against a real PgBouncer.

In transaction mode each transaction may run on another server connection, so whatever
lives on a server connection between transactions is lost. `DATABASE_TRANSACTION_POOLING`
turns off the two things Django and psycopg would keep there: prepared statements (the
race and fault tests run through PgBouncer with it: tests/messaging/test_*_race.py,
test_faults.py, test_scale_out.py) and the cursor `.iterator()` declares (here).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from devices.models import Subscriber
from tests import factories
from tests.live import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Iterates over the subscribers as the CSV export does (`.iterator()`), and between two
# chunks lets another client run a transaction through PgBouncer. PgBouncer hands out the
# server connection released last first (LIFO), so that client takes the one the first
# chunk was read on and keeps it; the next chunk is read on another server connection.
ITERATE_WHILE_ANOTHER_CLIENT_WORKS = """
import sys

import django, psycopg
django.setup()
from django.db import connection
from devices.models import Subscriber

print(connection.settings_dict["OPTIONS"]["prepare_threshold"], connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"])
numbers = Subscriber.objects.order_by("pk").values_list("number", flat=True).iterator(chunk_size=2)
read = [next(numbers), next(numbers)]
with psycopg.connect(sys.argv[1]) as other:
    other.execute("SELECT 1")  # a transaction left open: it holds its server connection
    read += list(numbers)
    print(len(read))
"""


def iterate_through(bouncer, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs the script above with the test database reached through `bouncer`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    environment.update(DATABASE_URL=bouncer.url(), SECRET_KEY=settings.SECRET_KEY, **env)
    return subprocess.run(
        [sys.executable, "-c", ITERATE_WHILE_ANOTHER_CLIENT_WORKS, bouncer.url()],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_iterating_a_queryset_works_through_pgbouncer_with_transaction_pooling_on(pgbouncer):
    phone_list = factories.make_list(account=factories.make_account())
    Subscriber.objects.bulk_create(Subscriber(phone_list=phone_list, number=f"+3933300000{n}") for n in range(7))

    pooled = iterate_through(pgbouncer, DATABASE_TRANSACTION_POOLING="true")
    assert pooled.returncode == 0, pooled.stderr
    # No prepared statements, no server-side cursor, and every row read.
    assert pooled.stdout.split() == ["None", "True", "7"]

    # The control: with Django's defaults the second chunk is fetched from a cursor that
    # is not on that server connection.
    default = iterate_through(pgbouncer)
    assert default.returncode != 0
    assert "InvalidCursorName" in default.stderr, default.stderr
