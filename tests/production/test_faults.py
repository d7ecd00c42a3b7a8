"""Faults on the real stack: a Daphne process killed under phones that hold work,
the worker stopped with SIGTERM mid-unit, and Redis restarted while messages wait.

The worker killed with SIGKILL mid-delivery is `tests/ipn/test_worker_crash.py`.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest
from django.db import connection

from accounts.models import ApiKey
from devices.models import PhoneList
from ipn import services as ipn_services
from ipn.models import IpnEvent
from messaging.models import Message, MessageEvent
from messaging.services import callbacks
from tests import factories
from tests.ipn.conftest import Reply, make_message
from tests.production.conftest import api, enrol, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LEASE_SECONDS = 3


def make_sender(*, credit: int, lease: int | None = None):
    account = factories.make_account(credit=credit)
    phone_list = factories.make_list(account=account)
    if lease is not None:
        PhoneList.objects.filter(pk=phone_list.pk).update(lease_seconds=lease)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    return account, phone_list, secret


def send_many(server_url: str, secret: str, count: int, label: str) -> list[str]:
    ids = []
    for n in range(count):
        status, body, _ = api(
            "POST", f"{server_url}/api/v1/send", secret=secret, body={"to": f"+39333{n:07d}", "msg": f"{label} {n}"}
        )
        assert status == 200, body
        ids.append(body["message_id"])
    return ids


@pytest.mark.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)
def test_messages_held_by_phones_of_a_killed_server_are_sent_once_after_the_lease(stack, raw_phones):
    _account, phone_list, secret = make_sender(credit=30, lease=LEASE_SECONDS)
    server1, server2 = stack.daphne("daphne-1"), stack.daphne("daphne-2")
    stack.worker()
    tokens = [enrol(server2.url, phone_list.pin, f"phone {n}") for n in range(3)]
    raw_phones.start(server1.url, tokens, mode="hold")  # they claim, then never report
    wait_for(lambda: len(raw_phones.connected) == 3, timeout=15, what="three phones on server 1")

    ids = send_many(server2.url, secret, 30, "held")
    held = Message.objects.filter(public_id__in=ids, status="assigned")
    wait_for(lambda: held.count() == 30, timeout=30, what="every message assigned to a phone on server 1")

    server1.kill_hard()
    wait_for(lambda: not raw_phones.connected, timeout=15, what="the phones to lose server 1")
    # The same phones come back through the other server and now send what they are given.
    raw_phones.start(server2.url, tokens, mode="send")

    sent = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: sent.count() == 30, timeout=60, what="every held message sent after its lease")
    assert set(raw_phones.radio) == set(ids) and max(raw_phones.radio.values()) == 1
    for message in Message.objects.filter(public_id__in=ids):
        events = list(MessageEvent.objects.filter(message=message).values_list("status", flat=True))
        # assigned (server 1) → lease lapsed → queued → assigned (server 2) → sent; never two at once.
        assert events == ["assigned", "queued", "assigned", "sent"], (message.public_id, events)
        assert message.attempts == 2
    first, second = (
        MessageEvent.objects.filter(message__public_id=ids[0], status="assigned")
        .order_by("at")
        .values_list("at", flat=True)
    )
    assert (second - first).total_seconds() >= LEASE_SECONDS
    status, body, _ = api("GET", f"{server2.url}/api/v1/balance", secret=secret)
    assert (status, body["balance"]) == (200, 0)  # charged once each, nothing refunded


def test_sigterm_lets_the_worker_finish_the_delivery_it_is_making_and_take_no_more(
    stack, alice, alice_list, receiver, private_ok
):
    endpoint = ipn_services.update_endpoint(account=alice, url=receiver.url, enabled=True)
    receiver.secret = endpoint.secret
    receiver.default = Reply(200, delay=2)  # every delivery takes 2 s
    events = []
    for _ in range(3):
        event = callbacks.record_message_event(
            message=make_message(account=alice, phone_list=alice_list), status="sent"
        )
        assert event is not None
        events.append(event)
    worker = stack.worker()
    receiver.wait_for(1, timeout=30)
    stopped_at = time.monotonic()
    code = worker.terminate(timeout=20)
    assert code == 0, worker.tail()
    assert time.monotonic() - stopped_at < 5  # it did not go on through the queue
    statuses = Counter(IpnEvent.objects.filter(pk__in=[e.pk for e in events]).values_list("status", flat=True))
    assert statuses == {IpnEvent.Status.DELIVERED: 1, IpnEvent.Status.PENDING: 2}
    assert len(receiver.requests) == 1
    # The unit it finished is fully recorded, and nothing is left locked for the next worker.
    assert IpnEvent.objects.filter(pk__in=[e.pk for e in events], locked_until__isnull=False).count() == 0


@pytest.fixture
def redis_restart(stack, own_redis):
    """The stack's processes use a redis-server of this test's own, stopped and started again on
    request on the same port (the shared Redis stays up for everyone else)."""
    port = own_redis["url"].rsplit(":", 1)[1].split("/")[0]

    def up() -> bool:
        return subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).returncode == 0

    def stop() -> None:
        own_redis["kill"]()
        wait_for(lambda: not up(), timeout=10, what="Redis to stop")

    def start() -> None:
        own_redis["start"]()
        wait_for(up, timeout=20, what="Redis to start")

    wait_for(up, timeout=20, what="Redis to start")
    stack.env["REDIS_URL"] = own_redis["url"]
    return stop, start


# Through PgBouncer: the restart proves the same with the pooler's layout (docs/deploy.md).
@pytest.mark.parametrize("db_route", ["pgbouncer"], indirect=True)
def test_a_redis_restart_while_messages_wait_loses_nothing_and_sends_nothing_twice(stack, tmp_path, redis_restart):
    stop_redis, start_redis_again = redis_restart
    account, phone_list, secret = make_sender(credit=200)
    server1, server2 = stack.daphne("daphne-1"), stack.daphne("daphne-2")
    stack.worker()
    sent_log = tmp_path / "radio.log"
    stack.agents("agents", server=server1.url, pin=phone_list.pin, count=5, sent_log=sent_log, send_time=0.3)
    wait_for(
        lambda: phone_list.devices.filter(is_connected=True).count() == 5,
        timeout=30,
        what="five phones connected",
    )
    # Each phone takes 0.3 s per SMS, so 100 messages keep the five busy for about 6 s: on a
    # loaded machine sending them takes longer than the phones need at 0.05 s.
    ids = send_many(server2.url, secret, 100, "before")
    stop_redis()  # while most of them are still queued
    queued_at_stop = Message.objects.filter(public_id__in=ids, status__in=["queued", "assigned"]).count()
    # Redis stays down a moment; the phones' connections notice the lost channel layer.
    time.sleep(3)  # a fault lasting a known time, not a synchronisation
    start_redis_again()
    ids += send_many(server2.url, secret, 100, "after")

    sent = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: sent.count() == 200, timeout=90, what="every message sent after the restart", every=0.5)
    radio = Counter(sent_log.read_text().split())
    assert set(radio) == set(ids)  # 0 lost
    assert max(radio.values()) == 1  # 0 duplicates
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM messaging_messageevent e JOIN messaging_message m ON m.id = e.message_id"
            " WHERE m.account_id = %s AND e.status = 'sent'",
            [account.pk],
        )
        assert cursor.fetchone()[0] == 200
    assert queued_at_stop > 0, "the restart happened after everything was sent: nothing was tested"
    assert server1.alive() and server2.alive()


def test_sigterm_to_daphne_closes_its_phones_and_they_carry_on_through_the_other(stack, raw_phones):
    _account, phone_list, secret = make_sender(credit=20)
    server1, server2 = stack.daphne("daphne-1"), stack.daphne("daphne-2")
    stack.worker()
    tokens = [enrol(server2.url, phone_list.pin, f"phone {n}") for n in range(3)]
    raw_phones.start(server1.url, tokens, mode="send")
    connected = phone_list.devices.filter(is_connected=True)
    wait_for(lambda: connected.count() == 3, timeout=15, what="three phones on server 1")

    assert server1.terminate(timeout=20) == 0  # graceful: it closes its sockets and exits by itself
    wait_for(lambda: not raw_phones.connected, timeout=10, what="the phones to see their sockets closed")
    # Daphne cancels its consumers on shutdown, so presence is not cleared by a disconnect
    # handler; it is a lease, and a reconnect elsewhere simply takes over.
    raw_phones.start(server2.url, tokens, mode="send")
    wait_for(lambda: len(raw_phones.connected) == 3, timeout=15, what="the phones back through server 2")
    ids = send_many(server2.url, secret, 20, "after")
    sent = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: sent.count() == 20, timeout=30, what="every message sent")
    assert max(raw_phones.radio.values()) == 1
