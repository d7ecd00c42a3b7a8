"""SMSGate messages: several recipients, one Phonefleet message each, one debit each as
the bulk path books them, all or nothing; the client's id; states by SMSGate's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from accounts.models import LedgerEntry
from messaging.models import Message, SmsGateMessage
from messaging.services import smsgate as services
from tests import factories
from tests.smsgate_api.conftest import BASE

pytestmark = pytest.mark.django_db

CURRENT_TIME = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TWO = ["+393331111111", "+393332222222"]


def send(client, body, path="messages", **extra):
    return client.post(f"{BASE}/{path}", data=json.dumps(body), content_type="application/json", **extra)


def test_it_sends_one_message_to_two_numbers_with_one_debit_each(as_key, alice):
    answer = send(as_key, {"textMessage": {"text": "Hello"}, "phoneNumbers": TWO, "id": "order-42"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["id"] == "order-42"
    assert body["state"] == "Pending"
    assert [r["phoneNumber"] for r in body["recipients"]] == TWO
    assert {r["state"] for r in body["recipients"]} == {"Pending"}
    assert answer["Location"] == f"{BASE}/messages/order-42"
    messages = Message.objects.filter(account=alice).order_by("id")
    assert [m.to for m in messages] == TWO
    assert {m.ref for m in messages} == {"order-42"}
    assert len({m.batch_id for m in messages}) == 1
    assert LedgerEntry.objects.filter(account=alice, kind="debit").count() == 2
    alice.refresh_from_db()
    assert alice.balance == 98


def test_the_legacy_text_field_and_the_singular_path_work(as_login):
    answer = send(as_login, {"message": "Hi", "phoneNumbers": ["+393331111111"]}, path="message")
    assert answer.status_code == 202
    assert len(answer.json()["id"]) == services.GENERATED_ID_LENGTH
    assert as_login.get(f"{BASE}/message/{answer.json()['id']}").json()["textMessage"] == {"text": "Hi"}


def test_a_repeated_id_gets_409_and_takes_nothing(as_key, alice):
    assert send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "same"}).status_code == 202
    again = send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "same"})
    assert again.status_code == 409
    assert set(again.json()) == {"message"}
    assert Message.objects.filter(account=alice).count() == 2


def test_another_account_may_use_the_same_id(as_key, bob_key, client):
    assert send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "shared"}).status_code == 202
    bob = send(
        client, {"message": "Hi", "phoneNumbers": TWO, "id": "shared"}, HTTP_AUTHORIZATION=f"Bearer {bob_key[1]}"
    )
    assert bob.status_code == 202


def test_not_enough_credit_for_all_recipients_sends_none(as_key, alice):
    alice.balance = 1
    alice.save(update_fields=["balance"])
    answer = send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "poor"})
    assert answer.status_code == 402
    assert not Message.objects.filter(account=alice).exists()
    assert not SmsGateMessage.objects.filter(account=alice).exists()


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"phoneNumbers": TWO}, "msg"),
        ({"message": "Hi", "phoneNumbers": []}, "phoneNumbers"),
        ({"message": "Hi", "phoneNumbers": ["+39333"] * 101}, "phoneNumbers"),
        ({"message": "Hi", "phoneNumbers": ["+393331111111", "not a number"]}, "not a number"),
        ({"message": "Hi", "phoneNumbers": ["+393331111111", "+39 333 111 1111"]}, "twice"),
        ({"dataMessage": {"data": "AAE=", "port": 53739}, "phoneNumbers": TWO}, "dataMessage"),
        ({"mmsMessage": {"text": "x"}, "phoneNumbers": TWO}, "mmsMessage"),
        ({"message": "Hi", "phoneNumbers": TWO, "isEncrypted": True}, "isEncrypted"),
        ({"message": "Hi", "phoneNumbers": TWO, "ttl": 60, "validUntil": "2099-01-01T00:00:00Z"}, "ttl"),
        ({"message": "Hi", "phoneNumbers": TWO, "priority": 300}, "priority"),
        ({"message": "Hi", "phoneNumbers": TWO, "simNumber": 9}, "simNumber"),
        ({"message": "Hi", "phoneNumbers": TWO, "id": "has/slash"}, "id"),
        ({"message": "Hi", "phoneNumbers": TWO, "scheduleAt": "2026-02-30T00:00:00Z"}, "scheduleAt"),
        ({"message": "Hi\u0000", "phoneNumbers": TWO}, "NUL"),  # the JSON parser refuses it first
    ],
)
def test_it_refuses_bad_messages_whole_with_400(as_key, alice, body, word):
    answer = send(as_key, body)
    assert answer.status_code == 400, answer.content
    assert word in answer.json()["message"]
    assert not Message.objects.filter(account=alice).exists()


def test_a_body_that_is_not_an_object_gets_400(as_key):
    for raw in ("[]", "42", "{", '"x"'):
        answer = as_key.post(f"{BASE}/messages", data=raw, content_type="application/json")
        assert answer.status_code == 400
        assert set(answer.json()) == {"message"}


@time_machine.travel(CURRENT_TIME, tick=False)
def test_ttl_valid_until_and_schedule_at_set_the_messages_times(as_key, alice):
    send(as_key, {"message": "Hi", "phoneNumbers": TWO[:1], "ttl": 600})
    send(
        as_key,
        {
            "message": "Hi",
            "phoneNumbers": TWO[1:],
            "scheduleAt": "2026-12-03T13:00:00Z",
            "validUntil": "2026-12-03T15:00:00+00:00",
        },
    )
    first, second = Message.objects.filter(account=alice).order_by("id")
    assert first.expires_at == CURRENT_TIME + timedelta(seconds=600)
    assert second.send_at == CURRENT_TIME + timedelta(hours=1)
    assert second.expires_at == CURRENT_TIME + timedelta(hours=3)


def test_states_follow_the_recipients_by_smsgates_rules(as_key, alice_list):
    message_id = send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "m1"}).json()["id"]
    phone = factories.make_device(phone_list=alice_list, name="P", online=True)
    first, second = Message.objects.filter(ref="m1").order_by("id")

    def state():
        body = as_key.get(f"{BASE}/messages/{message_id}").json()
        return body["state"], [r["state"] for r in body["recipients"]], body

    Message.objects.filter(pk=first.pk).update(status="assigned", device=phone, assigned_at=timezone.now())
    assert state()[:2] == ("Pending", ["Processed", "Pending"])
    Message.objects.filter(pk=second.pk).update(status="sent", device=phone, sent_at=timezone.now())
    assert state()[:2] == ("Processed", ["Processed", "Sent"])
    Message.objects.filter(pk=first.pk).update(status="failed", error="Generic failure", failed_at=timezone.now())
    aggregate, recipients, body = state()
    assert (aggregate, recipients) == ("Sent", ["Failed", "Sent"])
    assert body["recipients"][0]["error"] == "Generic failure"
    assert body["deviceId"] == phone.public_id
    assert {"Pending", "Sent"} <= set(body["states"])
    Message.objects.filter(pk=second.pk).update(status="failed", failed_at=timezone.now())
    assert state()[0] == "Failed"
    Message.objects.filter(pk__in=[first.pk, second.pk]).update(status="delivered", delivered_at=timezone.now())
    aggregate, _recipients, body = state()
    assert aggregate == "Delivered"
    assert "Delivered" in body["states"]


def test_the_list_filters_pages_and_counts(as_key, alice_list):
    for n in range(3):
        send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": f"list-{n}"})
    Message.objects.filter(ref="list-0").update(status="delivered")
    page = as_key.get(f"{BASE}/messages", {"limit": 2, "offset": 0})
    assert page["X-Total-Count"] == "3"
    assert [m["id"] for m in page.json()] == ["list-2", "list-1"]
    oldest = as_key.get(f"{BASE}/messages", {"limit": 1, "sort": "created_at"}).json()
    assert [m["id"] for m in oldest] == ["list-0"]
    delivered = as_key.get(f"{BASE}/messages", {"state": "Delivered"})
    assert [m["id"] for m in delivered.json()] == ["list-0"]
    assert delivered["X-Total-Count"] == "1"
    assert as_key.get(f"{BASE}/messages", {"state": "Pending"})["X-Total-Count"] == "2"
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert as_key.get(f"{BASE}/messages", {"from": later}).json() == []


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"offset": -1},
        {"offset": "9" * 30},
        {"state": "Lost"},
        {"from": "yesterday"},
        {"to": "2026-13-01T00:00:00"},
        {"sort": "id"},
        {"includeContent": "maybe"},
    ],
)
def test_bad_list_parameters_get_400(as_key, query):
    answer = as_key.get(f"{BASE}/messages", query)
    assert answer.status_code == 400
    assert set(answer.json()) == {"message"}


def test_cancel_cancels_and_refunds_every_pending_recipient(as_key, alice):
    send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "c1"})
    answer = as_key.delete(f"{BASE}/messages/c1")
    assert answer.status_code == 204
    body = as_key.get(f"{BASE}/messages/c1").json()
    assert body["state"] == "Cancelled"
    assert {r["state"] for r in body["recipients"]} == {"Cancelled"}
    alice.refresh_from_db()
    assert alice.balance == 100
    assert as_key.delete(f"{BASE}/messages/c1").status_code == 204  # again: nothing left, no error


def test_cancel_of_a_message_phones_already_have_gets_409(as_key):
    send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "c2"})
    Message.objects.filter(ref="c2").update(status="sent")
    answer = as_key.delete(f"{BASE}/messages/c2")
    assert answer.status_code == 409
    assert "Sent" in answer.json()["message"]


def test_another_accounts_message_is_not_found(as_key, bob_key, client):
    send(as_key, {"message": "Hi", "phoneNumbers": TWO, "id": "mine"})
    bob = {"HTTP_AUTHORIZATION": f"Bearer {bob_key[1]}"}
    assert client.get(f"{BASE}/messages/mine", **bob).status_code == 404
    assert client.delete(f"{BASE}/messages/mine", **bob).status_code == 404
    assert client.get(f"{BASE}/messages", **bob).json() == []


def test_a_login_sees_only_its_lists_messages(as_key, client, alice, alice_login):
    other = factories.make_list(account=alice, name="Other")
    _key, secret = factories.make_api_key(account=alice, default_list=other)
    send(client, {"message": "Hi", "phoneNumbers": TWO, "id": "other-list"}, HTTP_AUTHORIZATION=f"Bearer {secret}")
    from tests.smsgate_api.conftest import basic

    login = {"HTTP_AUTHORIZATION": basic(*alice_login)}
    assert client.get(f"{BASE}/messages/other-list", **login).status_code == 404
    assert as_key.get(f"{BASE}/messages/other-list").status_code == 200  # the key sees its account


def test_a_device_id_pins_the_message_to_that_phone(as_key, alice_list, bob_list):
    phone = factories.make_device(phone_list=alice_list)
    body = send(as_key, {"message": "Hi", "phoneNumbers": TWO, "deviceId": phone.public_id}).json()
    assert body["deviceId"] == phone.public_id
    assert set(Message.objects.filter(ref=body["id"]).values_list("pinned_device", flat=True)) == {phone.pk}
    bobs = factories.make_device(phone_list=bob_list)
    assert send(as_key, {"message": "Hi", "phoneNumbers": TWO, "deviceId": bobs.public_id}).status_code == 400


def test_a_send_to_two_numbers_costs_a_few_statements(as_key, alice_key, django_assert_max_num_queries):
    send(as_key, {"message": "warm the key and list caches", "phoneNumbers": TWO[:1]})
    # The id's row (in a savepoint, for the 409) and, on PostgreSQL, one statement for the
    # debit, both messages and their ledger rows (SQLite: the same in a few more).
    budget = 6 if connection.vendor == "postgresql" else 10  # savepoints and BEGIN/COMMIT included
    with django_assert_max_num_queries(budget):
        assert send(as_key, {"message": "Hi", "phoneNumbers": TWO}).status_code == 202
