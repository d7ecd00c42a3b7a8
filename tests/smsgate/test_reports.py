"""How `PATCH /message` states map onto the lifecycle, by app version."""

from __future__ import annotations

import asyncio
import json

import pytest

from devices.smsgate import services as smsgate
from messaging.models import Message, MessageEvent
from tests import factories

URL = "/api/mobile/v1/message"


@pytest.fixture
def phone(alice_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    credential = smsgate.resolve_private_token(secret=secret)
    registration = smsgate.register_device(credential=credential, name="Pixel")
    return registration


def fetch(client, phone) -> list[dict]:
    answer = client.get(URL, {"order": "fifo"}, HTTP_AUTHORIZATION=f"Bearer {phone.token}")
    assert answer.status_code == 200
    return answer.json()


def patch(client, phone, message_id: str, state: str, version: str = "1.68.0") -> int:
    body = [{"id": message_id, "state": state, "recipients": [{"phoneNumber": "+39333", "state": state}], "states": {}}]
    return client.patch(
        URL,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {phone.token}",
        HTTP_USER_AGENT=f"me.capcom.smsgateway/{version}",
    ).status_code


def test_a_cancelled_report_fails_and_refunds_for_apps_that_know_cancellation(client, phone, alice_list, alice):
    message = factories.make_message(phone_list=alice_list)
    fetch(client, phone)
    balance = type(alice).objects.get(pk=alice.pk).balance
    assert patch(client, phone, message.public_id, "Cancelled", version="1.67.0") == 204
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert type(alice).objects.get(pk=alice.pk).balance == balance + message.cost


def test_a_cancelled_state_from_an_older_app_changes_nothing(client, phone, alice_list):
    message = factories.make_message(phone_list=alice_list)
    fetch(client, phone)
    assert patch(client, phone, message.public_id, "Cancelled", version="1.66.0") == 204
    message.refresh_from_db()
    assert message.status == Message.Status.ASSIGNED


def test_a_delivered_report_without_a_sent_one_records_both(client, phone, alice_list):
    message = factories.make_message(phone_list=alice_list)
    fetch(client, phone)
    assert patch(client, phone, message.public_id, "Delivered") == 204
    statuses = list(MessageEvent.objects.filter(message=message).values_list("status", flat=True))
    assert statuses == ["assigned", "sent", "delivered"]


@pytest.mark.parametrize("order", ["lifo", "fifo", None])
def test_the_fetch_offers_the_oldest_first_whatever_order_the_app_asks(client, phone, alice_list, order):
    """The app asks `order=lifo` unless its user chose FIFO; the queue is offered oldest
    first, as to every other phone (docs/android.md)."""
    first = factories.make_message(phone_list=alice_list, text="first")
    second = factories.make_message(phone_list=alice_list, text="second")
    query = {"order": order} if order else {}
    answer = client.get(URL, query, HTTP_AUTHORIZATION=f"Bearer {phone.token}").json()
    assert [job["id"] for job in answer] == [first.public_id, second.public_id]
    texts = [(job["textMessage"]["text"], job["message"]) for job in answer]
    assert texts == [("first", "first"), ("second", "second")]


def test_messages_is_an_alias_of_message(client, phone, alice_list):
    message = factories.make_message(phone_list=alice_list)
    answer = client.get("/api/mobile/v1/messages", HTTP_AUTHORIZATION=f"Bearer {phone.token}")
    assert [job["id"] for job in answer.json()] == [message.public_id]


def test_a_fetch_returns_the_sim_when_the_message_asks_for_one(client, phone, alice_list):
    message = factories.make_message(phone_list=alice_list)
    Message.objects.filter(pk=message.pk).update(sim=2)
    assert fetch(client, phone)[0]["simNumber"] == 2


def test_a_report_with_more_work_waiting_wakes_the_phone_again(client, phone, alice_list, settings):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from devices.services import device_group

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(device_group(phone.device.pk), channel)
    messages = [factories.make_message(phone_list=alice_list) for _ in range(smsgate.FETCH_LIMIT + 1)]
    jobs = fetch(client, phone)
    assert len(jobs) == smsgate.FETCH_LIMIT
    for job in jobs[:-1]:
        assert patch(client, phone, job["id"], "Sent") == 204
    # Not while the phone still works through its batch: one wake-up when it is done.
    assert patch(client, phone, jobs[-1]["id"], "Processed") == 204
    assert patch(client, phone, jobs[-1]["id"], "Sent") == 204
    assert async_to_sync(layer.receive)(channel) == {"type": "work.available"}
    with pytest.raises(asyncio.TimeoutError):
        async_to_sync(asyncio.wait_for)(layer.receive(channel), 0.05)
    assert Message.objects.filter(pk=messages[-1].pk, status="queued").exists()
