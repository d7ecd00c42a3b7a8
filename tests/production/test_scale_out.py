"""Scale-out (exactly one phone sends, on the real stack): two Daphne processes, gunicorn
and one worker share PostgreSQL and Redis; phones on server 1 get what is sent through
server 2 and gunicorn, exactly once each. The same again with every process behind
PgBouncer in transaction mode."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from accounts.models import ApiKey
from messaging.models import Message
from tests import factories
from tests.production.conftest import api, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONES = 5
MESSAGES = 200


def sql(query: str, *params: int | str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


@pytest.mark.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)
def test_phones_on_one_server_send_exactly_once_what_another_server_accepted(stack, tmp_path):
    account = factories.make_account(credit=MESSAGES)
    phone_list = factories.make_list(account=account)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    server1, server2 = stack.daphne("daphne-1"), stack.daphne("daphne-2")
    web = stack.gunicorn("gunicorn")
    stack.worker()
    sent_log = tmp_path / "radio.log"
    stack.agents("agents", server=server1.url, pin=phone_list.pin, count=PHONES, sent_log=sent_log)

    def online_through_server2() -> list[dict]:
        status, body, _ = api("GET", f"{server2.url}/api/v1/devices", secret=secret)
        assert status == 200, body
        return [d for d in body["devices"] if d["online"] and d["available"]]

    # Presence written by server 1's connections is what server 2's API reports.
    assert (
        len(
            wait_for(
                lambda: len(online_through_server2()) == PHONES and online_through_server2(),
                timeout=30,
                what="five phones online through server 2",
            )
        )
        == PHONES
    )

    def send(n: int) -> str:
        server = (server2, web)[n % 2]  # the production layout's API (gunicorn) and Daphne's
        status, body, _ = api(
            "POST", f"{server.url}/api/v1/send", secret=secret, body={"to": f"+39333{n:07d}", "msg": f"scale-out {n}"}
        )
        assert status == 200, body
        return body["message_id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(send, range(MESSAGES)))
    assert len(set(ids)) == MESSAGES

    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == MESSAGES, timeout=90, what="every message sent", every=0.3)

    radio = Counter(sent_log.read_text().split())
    assert set(radio) == set(ids)  # 0 lost
    assert max(radio.values()) == 1  # no SMS sent twice
    # The database agrees: one assignment and one `sent` per message, spread over the phones.
    per_message = sql(
        "SELECT m.public_id,"
        " count(*) FILTER (WHERE e.status = 'assigned'), count(*) FILTER (WHERE e.status = 'sent')"
        " FROM messaging_message m JOIN messaging_messageevent e ON e.message_id = m.id"
        " WHERE m.account_id = %s GROUP BY m.public_id",
        account.pk,
    )
    assert len(per_message) == MESSAGES
    assert {(assigned, sent) for _id, assigned, sent in per_message} == {(1, 1)}
    senders = sql("SELECT count(DISTINCT device_id) FROM messaging_message WHERE account_id = %s", account.pk)
    assert senders[0][0] > 1
    # Credit: exactly one debit per message, nothing refunded.
    status, body, _ = api("GET", f"{server2.url}/api/v1/balance", secret=secret)
    assert (status, body["balance"]) == (200, 0)
    assert all(proc.alive() for proc in stack.procs), [p.tail() for p in stack.procs if not p.alive()]


def test_three_hundred_phones_connecting_at_once_to_one_server_are_all_accepted(stack, raw_phones):
    # A burst of connects: each joins two groups and marks the phone connected. (With
    # channels_redis, redis-py 8's pool of 100 connections answered this with HTTP 500
    # handshakes; the channel layer now joins groups in the process.)
    account = factories.make_account()
    phone_list = factories.make_list(account=account)
    tokens = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[1] for n in range(300)]
    server = stack.daphne("daphne")
    raw_phones.start(server.url, tokens, mode="send")
    wait_for(lambda: len(raw_phones.connected) == 300, timeout=60, what="300 phones connected")
    assert raw_phones.errors == []
    assert "Traceback" not in server.tail(200_000), server.tail()
