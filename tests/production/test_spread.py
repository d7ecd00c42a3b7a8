"""Spread over the fleet, on the real stack: equally fast phones share a list's messages,
and a phone that never claims holds none of them (docs/device-protocol.md, "Who gets a
message")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from accounts.models import ApiKey
from messaging.models import Message
from tests import factories
from tests.production.conftest import api, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MESSAGES = 200


def send_all(url: str, secret: str, count: int) -> list[str]:
    def send(n: int) -> str:
        status, body, _ = api(
            "POST", f"{url}/api/v1/send", secret=secret, body={"to": f"+39333{n:07d}", "msg": f"m{n}"}
        )
        assert status == 200, body
        return body["message_id"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, range(count)))


def fleet(phones: int):
    account = factories.make_account(credit=MESSAGES)
    phone_list = factories.make_list(account=account)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    tokens = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[1] for n in range(phones)]
    return secret, tokens


def test_two_hundred_messages_are_spread_over_five_equally_fast_phones(stack, raw_phones):
    secret, tokens = fleet(5)
    server = stack.daphne("daphne")
    raw_phones.start(server.url, tokens, mode="send")
    wait_for(lambda: len(raw_phones.connected) == 5, timeout=60, what="five phones connected")

    ids = send_all(server.url, secret, MESSAGES)
    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == MESSAGES, timeout=120, what="every message sent", every=0.3)

    assert set(raw_phones.radio) == set(ids)  # 0 lost
    assert max(raw_phones.radio.values()) == 1  # 0 sent twice
    per_phone = [raw_phones.by_phone[token] for token in tokens]
    assert sum(per_phone) == MESSAGES
    assert all(20 <= n <= 80 for n in per_phone), per_phone
    assert raw_phones.errors == []


def test_a_phone_that_never_claims_holds_no_message(stack, raw_phones):
    secret, tokens = fleet(3)
    silent, senders = tokens[0], tokens[1:]
    server = stack.daphne("daphne")
    raw_phones.start(server.url, [silent], mode="silent")
    raw_phones.start(server.url, senders, mode="send")
    wait_for(lambda: len(raw_phones.connected) == 3, timeout=60, what="three phones connected")

    ids = send_all(server.url, secret, 60)
    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == 60, timeout=120, what="every message sent", every=0.3)

    assert raw_phones.by_phone[silent] == 0
    assert set(raw_phones.radio) == set(ids) and max(raw_phones.radio.values()) == 1
    assert all(raw_phones.by_phone[token] >= 10 for token in senders), raw_phones.by_phone


def test_phones_of_one_list_on_two_servers_share_the_work_and_send_each_message_once(stack, raw_phones):
    # Each server process runs its own rounds for its own phones; between the two chosen
    # phones of a message the database decides, and a phone ahead of its turn lets the
    # other server's go first. Exactly once is not weakened.
    secret, tokens = fleet(5)
    server1, server2 = stack.daphne("daphne-1"), stack.daphne("daphne-2")
    web = stack.gunicorn("gunicorn")  # the production layout: the API is not on the phones' servers
    raw_phones.start(server1.url, tokens[:3], mode="send")
    raw_phones.start(server2.url, tokens[3:], mode="send")
    wait_for(lambda: len(raw_phones.connected) == 5, timeout=60, what="five phones connected")

    ids = send_all(web.url, secret, MESSAGES)
    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == MESSAGES, timeout=120, what="every message sent", every=0.3)

    assert set(raw_phones.radio) == set(ids) and max(raw_phones.radio.values()) == 1
    assert max(raw_phones.assigned.values()) == 1  # never assigned to two phones
    per_phone = [raw_phones.by_phone[token] for token in tokens]
    # Runs here gave 34-45 each; asserted loosely, as which server is faster varies.
    assert all(n >= 10 for n in per_phone), per_phone
