"""POST /api/v1/send/bulk: a JSON array or a CSV upload, validated per row, debited once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Account, LedgerEntry
from devices import services as device_services
from messaging.models import Message
from tests import factories


@pytest.fixture
def bulk(client, alice_key):
    _key, secret = alice_key

    def _bulk(**data):
        return client.post(
            "/api/v1/send/bulk", data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
        )

    return _bulk


def receive(layer, channel, timeout=5.0):
    """The next event on the channel, or a failure instead of a hang."""

    async def _receive():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(_receive)()


def test_it_queues_one_message_per_recipient_and_debits_once_for_all(bulk, alice):
    response = bulk(
        msg="Sale starts now",
        recipients=[
            {"to": "+393331111111"},
            {"to": "3332222222", "msg": "Ciao Anna", "ref": "anna"},
            {"to": "+393333333333", "msg": "x" * 200},
        ],
    )
    body = response.json()
    assert (response.status_code, body["status_code"]) == (200, "2")
    assert (body["accepted"], body["rejected"], body["parts"], body["cost"]) == (3, 0, 4, 4)
    assert body["batch_id"].startswith("bat_")
    messages = {m.to: m for m in Message.objects.filter(batch_id=body["batch_id"])}
    assert messages["+393331111111"].text == "Sale starts now"
    assert (messages["+393332222222"].text, messages["+393332222222"].ref) == ("Ciao Anna", "anna")
    assert messages["+393333333333"].parts == 2
    assert [messages[n].cost for n in ("+393331111111", "+393332222222", "+393333333333")] == [1, 1, 2]
    assert {m.status for m in messages.values()} == {"queued"}
    assert [m["message_id"] for m in body["messages"]] == [
        messages[n].public_id for n in ("+393331111111", "+393332222222", "+393333333333")
    ]
    assert Account.objects.get(pk=alice.pk).balance == 96
    debits = LedgerEntry.objects.filter(kind="debit")
    assert debits.count() == 3
    assert sum(d.amount for d in debits) == -4


def test_invalid_rows_are_reported_and_the_valid_ones_sent(bulk, alice):
    body = bulk(
        recipients=[
            {"to": "+393331111111", "msg": "ok"},
            {"to": "", "msg": "no number"},
            {"to": "+393332222222"},
            {"to": "banana", "msg": "bad number"},
            {"to": "+393334444444", "msg": "x" * 2000},
        ]
    ).json()
    assert (body["accepted"], body["rejected"]) == (1, 4)
    assert [(e["row"], e["status_code"]) for e in body["errors"]] == [(2, "7"), (3, "8"), (4, "5"), (5, "5")]
    assert all(e["error"] for e in body["errors"])
    assert Message.objects.count() == 1
    assert Account.objects.get(pk=alice.pk).balance == 99


def test_when_no_row_is_valid_nothing_is_sent_and_the_rows_are_reported(bulk, alice):
    response = bulk(msg="hi", recipients=[{"to": "x"}, {"to": "y"}])
    body = response.json()
    assert (response.status_code, body["status_code"]) == (400, "5")
    assert [e["row"] for e in body["errors"]] == [1, 2]
    assert not Message.objects.exists()


def test_credit_is_all_or_nothing(client, db):
    account = factories.make_account(credit=2)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    response = client.post(
        "/api/v1/send/bulk",
        {"msg": "hi", "recipients": [{"to": "+393331111111"}, {"to": "+393332222222"}, {"to": "+393333333333"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert (response.status_code, response.json()["status_code"]) == (402, "9")
    assert not Message.objects.exists()
    assert Account.objects.get(pk=account.pk).balance == 2


def test_a_csv_upload_with_per_row_text_and_ref(client, alice_key, alice):
    _key, secret = alice_key
    csv_file = SimpleUploadedFile(
        "numbers.csv", b'to,msg,ref\n+393331111111,Hello Bea,bea\n3332222222,,\n\n+393333333333,"Hi, Carlo",c\n'
    )
    response = client.post(
        "/api/v1/send/bulk", {"file": csv_file, "msg": "Default text"}, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    body = response.json()
    assert (response.status_code, body["accepted"], body["rejected"]) == (200, 3, 0)
    texts = dict(Message.objects.values_list("to", "text"))
    assert texts == {"+393331111111": "Hello Bea", "+393332222222": "Default text", "+393333333333": "Hi, Carlo"}
    assert Message.objects.get(to="+393331111111").ref == "bea"


def test_more_than_ten_thousand_rows_are_refused_with_a_4xx(bulk):
    response = bulk(msg="hi", recipients=[{"to": "+393331111111"}] * 10_001)
    assert (response.status_code, response.json()["status_code"]) == (400, "5")
    assert not Message.objects.exists()


def test_a_bulk_to_another_accounts_list_is_code_6(bulk, bob_list):
    response = bulk(list=bob_list.token, msg="hi", recipients=[{"to": "+393331111111"}])
    assert (response.status_code, response.json()["status_code"]) == (400, "6")


def test_no_recipients_is_code_7(bulk):
    response = bulk(msg="hi", recipients=[])
    assert (response.status_code, response.json()["status_code"]) == (400, "7")


def test_phones_are_told_that_work_waits_after_commit(
    bulk, alice_list, django_capture_on_commit_callbacks, in_memory_layer
):
    # What is sent to the group (tests/messaging/test_offers.py covers the Redis path).
    layer = in_memory_layer
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(device_services.list_group(alice_list.pk), channel)
    with django_capture_on_commit_callbacks(execute=True):
        bulk(msg="hi", recipients=[{"to": "+393331111111"}, {"to": "+393332222222"}])
    assert receive(layer, channel) == {"type": "work.available"}


def test_ten_thousand_recipients_are_accepted_in_one_request(client, db):
    account = factories.make_account(credit=10_000)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    recipients = [{"to": f"+3933{n:08d}"} for n in range(10_000)]
    response = client.post(
        "/api/v1/send/bulk",
        {"msg": "Flash sale", "recipients": recipients},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["accepted"] == 10_000
    assert Message.objects.count() == 10_000
    assert Account.objects.get(pk=account.pk).balance == 0


def test_a_total_past_32_bits_is_charged_exactly(client, db):
    # 20 parts at 200,000,000 credits is 4,000,000,000: more than a 32-bit integer holds.
    price = 200_000_000
    account = factories.make_account(credit=10**12)
    Account.objects.filter(pk=account.pk).update(price_per_part=price)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    response = client.post(
        "/api/v1/send/bulk",
        {"msg": "hi", "recipients": [{"to": f"+3933{n:08d}"} for n in range(20)]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["accepted"] == 20
    assert Account.objects.get(pk=account.pk).balance == 10**12 - 20 * price
    assert LedgerEntry.objects.filter(account=account, amount__lt=0).count() == 20


def test_recipients_that_are_not_an_array_are_code_5(bulk):
    response = bulk(msg="hi", recipients={"to": "+393331111111"})
    assert (response.status_code, response.json()["status_code"]) == (400, "5")


def test_a_row_may_be_a_bare_number_as_a_string_or_a_json_number(bulk, alice):
    body = bulk(msg="hi", recipients=["+393331111111", 393332222222, {"to": "+393333333333"}]).json()
    assert (body["accepted"], body["rejected"]) == (3, 0)
    assert [m["to"] for m in body["messages"]] == ["+393331111111", "+393332222222", "+393333333333"]
    assert Message.objects.filter(account=alice, text="hi").count() == 3


@pytest.mark.parametrize("bad", [None, True, ["+393331111111"], {"to": {"n": 1}}, {"to": "+393331111111", "msg": [1]}])
def test_a_row_of_another_shape_is_reported_on_its_own_row_not_fatal(bulk, bad):
    body = bulk(msg="hi", recipients=[{"to": "+393332222222"}, bad]).json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    (error,) = body["errors"]
    assert (error["row"], error["status_code"]) == (2, "5")
    assert "recipient" in error["error"]


def test_common_options_are_stored_on_every_row(bulk, alice, alice_list):
    phone = factories.make_device(phone_list=alice_list)
    body = bulk(
        device_id=phone.public_id,
        msg="Ciao 👋",
        sim=2,
        ttl=600,
        recipients=[{"to": "+393331111111", "ref": "r1"}, {"to": "+393332222222"}],
    ).json()
    rows = list(Message.objects.filter(batch_id=body["batch_id"]).order_by("pk"))
    assert [m.public_id for m in rows] == [m["message_id"] for m in body["messages"]]
    for message in rows:
        assert (message.sim, message.encoding, message.parts, message.status) == (2, "ucs2", 1, "queued")
        assert (message.pinned_device_id, message.phone_list_id, message.account_id) == (
            phone.pk,
            alice_list.pk,
            alice.pk,
        )
        assert message.expires_at - message.send_at == dt.timedelta(seconds=600)
    assert rows[0].ref == "r1"
    assert LedgerEntry.objects.filter(message__in=rows, kind="debit").count() == 2
