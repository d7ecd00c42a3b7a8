"""Reading and managing: messages (detail, list, cancel), lists, devices, inbox."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from messaging.models import InboundSms, Message, MessageEvent
from tests import factories

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def api(client, alice_key):
    """Calls the API with Alice's key as a Bearer header."""
    _key, secret = alice_key

    def _call(method, path, data=None, secret=secret):
        return getattr(client, method)(path, data or {}, HTTP_AUTHORIZATION=f"Bearer {secret}")

    return _call


def send(api, **params):
    data = {"to": "+393331234567", "msg": "Hello"}
    data.update(params)
    response = api("post", "/api/v1/send", data)
    assert response.status_code == 200, response.json()
    return response.json()["message_id"]


# --- One message ----------------------------------------------------------------------


def test_a_message_shows_its_status_timeline_phone_parts_cost_and_ref(api, alice_list):
    phone = factories.make_device(phone_list=alice_list, name="Pixel 7")
    message_id = send(api, msg="x" * 200, ref="order-7")
    message = Message.objects.get(public_id=message_id)
    Message.objects.filter(pk=message.pk).update(status="sent", device=phone, sent_at=timezone.now())
    MessageEvent.objects.create(message=message, status="assigned", device=phone)
    MessageEvent.objects.create(message=message, status="sent", device=phone, detail="")
    body = api("get", f"/api/v1/messages/{message_id}").json()
    assert (body["response"], body["status_code"]) == ("200", "2")
    assert body["message_id"] == message_id
    assert (body["status"], body["parts"], body["cost"], body["ref"]) == ("sent", 2, 2, "order-7")
    assert (body["device_id"], body["device_name"]) == (phone.public_id, "Pixel 7")
    assert body["list"] == alice_list.token
    assert [(e["status"], e["device_id"]) for e in body["timeline"]] == [
        ("queued", None),
        ("assigned", phone.public_id),
        ("sent", phone.public_id),
    ]


def test_an_unknown_message_id_is_404_with_code_6(api):
    response = api("get", "/api/v1/messages/msg_nope")
    assert response.status_code == 404
    assert (response.json()["response"], response.json()["status_code"]) == ("404", "6")


# --- Object-level authorization ---------------------------------------------------


def test_bobs_key_finds_none_of_alices_objects(api, client, alice_list, bob_key):
    phone = factories.make_device(phone_list=alice_list, online=True)
    message_id = send(api, ref="secret-ref")
    _key, bob_secret = bob_key
    bob = {"HTTP_AUTHORIZATION": f"Bearer {bob_secret}"}
    for path in (f"/api/v1/messages/{message_id}", f"/api/v1/messages/{message_id}/cancel"):
        response = client.get(path, **bob) if "cancel" not in path else client.post(path, **bob)
        assert response.status_code == 404
        assert response.json()["status_code"] == "6"
        assert "secret-ref" not in response.content.decode()
    assert Message.objects.get(public_id=message_id).status == "queued"
    for path in ("/api/v1/messages", "/api/v1/devices", "/api/v1/lists", "/api/v1/inbox"):
        content = client.get(path, **bob).content.decode()
        assert message_id not in content
        assert phone.public_id not in content
        assert alice_list.token not in content
    response = client.get("/api/v1/messages", {"list": alice_list.token}, **bob)
    assert (response.status_code, response.json()["status_code"]) == (400, "6")
    response = client.post("/api/v1/send", {"device_id": phone.public_id, "to": "+393331234567", "msg": "x"}, **bob)
    assert (response.status_code, response.json()["status_code"]) == (400, "6")


# --- Cancel --------------------------------------------------------------------------------


def test_cancelling_a_queued_message_refunds_it_once_and_records_the_event(api, alice):
    message_id = send(api, msg="x" * 200)
    assert Account.objects.get(pk=alice.pk).balance == 98
    response = api("post", f"/api/v1/messages/{message_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Account.objects.get(pk=alice.pk).balance == 100
    message = Message.objects.get(public_id=message_id)
    assert message.cancelled_at is not None
    assert list(message.events.values_list("status", flat=True)) == ["cancelled"]
    again = api("post", f"/api/v1/messages/{message_id}/cancel")
    assert (again.status_code, again.json()["status_code"]) == (409, "5")
    assert "cancelled" in again.json()["error"]
    assert Account.objects.get(pk=alice.pk).balance == 100
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1


@pytest.mark.parametrize("status", ["assigned", "sent", "delivered", "failed", "expired"])
def test_a_message_that_left_queued_cannot_be_cancelled(api, alice, status):
    message_id = send(api)
    Message.objects.filter(public_id=message_id).update(status=status)
    response = api("post", f"/api/v1/messages/{message_id}/cancel")
    assert (response.status_code, response.json()["status_code"]) == (409, "5")
    assert Message.objects.get(public_id=message_id).status == status
    assert Account.objects.get(pk=alice.pk).balance == 99


# --- Listing messages -------------------------------------------------------------------------


def test_messages_are_listed_newest_first_with_cursor_pagination(api):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        ids = []
        for _ in range(5):
            ids.append(send(api))
            traveller.shift(dt.timedelta(seconds=1))
    seen = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api("get", "/api/v1/messages", params).json()
        seen += [m["message_id"] for m in body["messages"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_messages_with_the_same_creation_time_are_not_lost_between_pages(api):
    with time_machine.travel(CURRENT_TIME, tick=False):
        ids = {send(api) for _ in range(3)}
    first = api("get", "/api/v1/messages", {"limit": 2}).json()
    second = api("get", "/api/v1/messages", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert {m["message_id"] for m in first["messages"] + second["messages"]} == ids
    assert second["next_cursor"] is None


def test_messages_are_filtered_by_status_list_ref_and_date(api, alice):
    other_list = factories.make_list(account=alice)
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        early = send(api, ref="a")
        traveller.shift(dt.timedelta(hours=1))
        late = send(api, ref="b", list=other_list.token)
    Message.objects.filter(public_id=early).update(status="sent")

    def ids(**params):
        return [m["message_id"] for m in api("get", "/api/v1/messages", params).json()["messages"]]

    assert ids(status="sent") == [early]
    assert ids(ref="b") == [late]
    assert ids(list=other_list.token) == [late]
    assert ids(**{"from": (CURRENT_TIME + dt.timedelta(minutes=30)).isoformat()}) == [late]
    assert ids(until=(CURRENT_TIME + dt.timedelta(minutes=30)).isoformat()) == [early]


@pytest.mark.parametrize(
    "params", [{"limit": 201}, {"limit": 0}, {"status": "lost"}, {"from": "yesterday"}, {"cursor": "!!"}]
)
def test_bad_list_parameters_are_code_5(api, params):
    response = api("get", "/api/v1/messages", params)
    assert (response.status_code, response.json()["status_code"]) == (400, "5")


# --- Lists, devices, inbox ----------------------------------------------------------------------


def test_lists_show_their_phones_and_how_many_are_online(api, alice_list):
    factories.make_device(phone_list=alice_list, online=True)
    factories.make_device(phone_list=alice_list, online=False)
    body = api("get", "/api/v1/lists").json()
    assert body["lists"] == [
        {
            "list": alice_list.token,
            "name": alice_list.name,
            "default_country": "IT",
            "devices": 2,
            "online": 1,
            "caps": {"minute": None, "hour": None, "day": None},
        }
    ]


def test_devices_show_their_online_state(api, alice_list):
    online = factories.make_device(phone_list=alice_list, name="On", online=True)
    stale = factories.make_device(phone_list=alice_list, name="Stale", online=True)
    stale.last_seen_at = timezone.now() - dt.timedelta(minutes=10)
    stale.save(update_fields=["last_seen_at"])
    body = api("get", "/api/v1/devices").json()
    states = {d["device_id"]: d["online"] for d in body["devices"]}
    assert states == {online.public_id: True, stale.public_id: False}
    assert body["devices"][0]["list"] == alice_list.token


def test_devices_show_their_use_of_their_caps(api, alice_list):
    alice_list.rate_limit_per_hour = 10
    alice_list.save(update_fields=["rate_limit_per_hour"])
    phone = factories.make_device(phone_list=alice_list)
    phone.rate_limit_per_day = 100
    phone.save(update_fields=["rate_limit_per_day"])
    with time_machine.travel(CURRENT_TIME, tick=False):
        for minutes in (0.5, 30, 120):  # in the last minute, hour and day
            message = factories.make_message(phone_list=alice_list, status="sent", device=phone)
            at = CURRENT_TIME - dt.timedelta(minutes=minutes)
            MessageEvent.objects.create(message=message, status="assigned", device=phone, at=at)
        body = api("get", "/api/v1/devices").json()
    assert body["devices"][0]["caps"] == {
        "minute": {"limit": None, "used": 1},
        "hour": {"limit": 10, "used": 2},
        "day": {"limit": 100, "used": 3},
    }


def test_the_inbox_lists_received_sms_newest_first(api, alice, alice_list):
    phone = factories.make_device(phone_list=alice_list)
    for n in range(3):
        InboundSms.objects.create(
            account=alice,
            phone_list=alice_list,
            device=phone,
            public_id=f"sms_{n}",
            sender="+393330000000",
            text=f"reply {n}",
            received_at=CURRENT_TIME + dt.timedelta(minutes=n),
            fingerprint=str(n),
        )
    body = api("get", "/api/v1/inbox", {"limit": 2}).json()
    assert [m["msg"] for m in body["messages"]] == ["reply 2", "reply 1"]
    assert body["messages"][0]["from"] == "+393330000000"
    assert body["messages"][0]["device_id"] == phone.public_id
    rest = api("get", "/api/v1/inbox", {"cursor": body["next_cursor"]}).json()
    assert [m["msg"] for m in rest["messages"]] == ["reply 0"]


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/inbox"])
def test_page_size_is_capped_and_an_empty_cursor_means_the_first_page(api, path):
    over = api("get", path, {"limit": 201})
    assert (over.status_code, over.json()["status_code"]) == (400, "5")
    first = api("get", path, {"cursor": "", "list": ""})
    assert first.status_code == 200
