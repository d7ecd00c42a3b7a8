"""Exactly one phone sends each message, proven with real connections.

Two levels: many threads (each its own database connection) racing the claim UPDATE on
PostgreSQL, and real agent phones against a live Daphne server started here.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from accounts import services as account_services
from devices.models import Device
from messaging.models import Message, MessageEvent
from messaging.services import accept, dispatch
from tests import factories
from tests.live import agent_phones, daphne_server, live_server_url, wait_for  # noqa: F401 - fixtures


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)
def test_threads_racing_to_claim_the_same_messages_never_both_win(postgres_only, db_route):
    account = factories.make_account(credit=2000)
    phone_list = factories.make_list(account=account)
    phones = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[0] for n in range(4)]
    messages = [factories.make_message(phone_list=phone_list, cost=0).public_id for _ in range(1000)]
    barrier = threading.Barrier(len(phones))
    wins: list[tuple[str, int]] = []
    lock = threading.Lock()

    def race(device: Device) -> None:
        device = Device.objects.select_related("phone_list").get(pk=device.pk)
        try:
            for message_id in messages:
                barrier.wait()  # all threads fire at the same message together
                if dispatch.claim_message(device=device, message_id=message_id) is not None:
                    with lock:
                        wins.append((message_id, device.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(phone,)) for phone in phones]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = Counter(message_id for message_id, _ in wins)
    assert len(winners) == len(messages)  # none lost
    assert max(winners.values()) == 1  # never two winners
    assert MessageEvent.objects.filter(status="assigned").count() == len(messages)
    assert len({device for _, device in wins}) > 1  # it really was a race


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)
def test_one_phone_claiming_from_many_threads_never_passes_its_rate_limit(postgres_only, db_route):
    """Its list allows 3 a minute; 12 claims of 12 different messages fire at once."""
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    phone_list.rate_limit_per_minute = 3
    phone_list.save(update_fields=["rate_limit_per_minute"])
    phone = factories.make_enrolled_device(phone_list=phone_list)[0]
    messages = [factories.make_message(phone_list=phone_list, cost=0).public_id for _ in range(12)]
    barrier = threading.Barrier(len(messages))

    def claim(message_id: str) -> bool:
        device = Device.objects.select_related("phone_list").get(pk=phone.pk)
        try:
            barrier.wait()
            return dispatch.claim_message(device=device, message_id=message_id) is not None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(messages)) as pool:
        won = [message_id for message_id, claimed in zip(messages, pool.map(claim, messages)) if claimed]
    assert len(won) == 3
    assert Message.objects.filter(device=phone, status="assigned").count() == 3


# --- A live server with real agent phones ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_five_agent_phones_send_every_message_exactly_once(tmp_path, agent_phones):  # noqa: F811
    account = factories.make_account(credit=1000)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    key = account_services.authenticate_api_key(secret=secret)
    sent_log = tmp_path / "sent.log"
    agent_phones(pin=phone_list.pin, count=5, sent_log=sent_log)
    online = Device.objects.filter(phone_list=phone_list, is_connected=True)
    wait_for(lambda: online.count() == 5, timeout=30, what="five phones online")

    ids = []
    for n in range(200):
        accepted = accept.accept_message(
            key=key, list_token=None, device_id=None, to=f"+39333{n:07d}", text=f"Message {n}"
        )
        ids.append(accepted.message.public_id)

    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == len(ids), timeout=90, what="every message sent")
    radio = Counter(sent_log.read_text().split())
    assert set(radio) == set(ids)  # 0 lost
    assert max(radio.values()) == 1  # 0 sent twice
    senders = set(Message.objects.filter(public_id__in=ids).values_list("device", flat=True))
    assert len(senders) > 1
    assert MessageEvent.objects.filter(message__public_id__in=ids, status="sent").count() == len(ids)
