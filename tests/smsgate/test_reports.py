"""How `PATCH /message` states map onto the lifecycle, by app version."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import time_machine

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


# --- Reports in the order the phone sent them (R29) --------------------------------------


def patch_states(client, phone, message_id: str, state: str, states: dict[str, str]) -> int:
    """One PATCH as the app's SendStateWorker sends it: the latest state and its history."""
    recipients = [{"phoneNumber": "+39333", "state": state}]
    body = [{"id": message_id, "state": state, "recipients": recipients, "states": states}]
    return client.patch(
        URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {phone.token}"
    ).status_code


@pytest.fixture
def callbacks_on(alice):
    from ipn.models import IpnEndpoint

    return IpnEndpoint.objects.create(account=alice, url="https://hooks.example/ipn", enabled=True, secret="whsec_x")


def callback_types(message) -> list[str]:
    from ipn.models import IpnEvent

    return list(IpnEvent.objects.filter(message=message).order_by("id").values_list("type", flat=True))


def test_one_patch_carrying_sent_and_delivered_records_both_in_order_with_the_phones_times(
    client, phone, alice_list, callbacks_on
):
    with time_machine.travel("2026-05-13T09:49:10Z", tick=False) as clock:
        message = factories.make_message(phone_list=alice_list)
        fetch(client, phone)
        clock.move_to("2026-05-13T09:50:00Z")
        # The app PATCHes the latest snapshot only: one Delivered, with both times in
        # `states`, in the phone's own offset.
        states = {"Sent": "2026-05-13T16:49:17.357+07:00", "Delivered": "2026-05-13T16:49:19.001+07:00"}
        assert patch_states(client, phone, message.public_id, "Delivered", states) == 204
    message.refresh_from_db()
    assert (message.sent_at, message.delivered_at) == (
        datetime(2026, 5, 13, 9, 49, 17, 357000, tzinfo=UTC),
        datetime(2026, 5, 13, 9, 49, 19, 1000, tzinfo=UTC),
    )
    assert list(message.events.values_list("status", flat=True)) == ["assigned", "sent", "delivered"]
    assert callback_types(message) == ["message.sent", "message.delivered"]


def test_a_delivered_webhook_before_the_sent_one_records_sent_first_and_the_late_one_changes_nothing(
    phone, alice_list, callbacks_on
):
    message = factories.make_message(phone_list=alice_list)
    smsgate.fetch_jobs(device=phone.device)
    smsgate._apply_webhook(device=phone.device, event="sms:delivered", payload={"messageId": message.public_id})
    smsgate._apply_webhook(device=phone.device, event="sms:sent", payload={"messageId": message.public_id})
    assert list(message.events.values_list("status", flat=True)) == ["assigned", "sent", "delivered"]
    assert callback_types(message) == ["message.sent", "message.delivered"]


@pytest.mark.django_db(transaction=True)
def test_sent_and_delivered_patches_arriving_at_once_give_one_callback_each_sent_first(
    phone, alice_list, callbacks_on, postgres_only
):
    """The app's SendStateWorker may run a message's two PATCHes side by side (two
    requests, two server threads): whichever is applied first, the outcome is the same."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections
    from django.test import Client

    messages = [factories.make_message(phone_list=alice_list) for _ in range(smsgate.FETCH_LIMIT)]
    assert len(smsgate.fetch_jobs(device=phone.device)) == len(messages)

    def send(job: tuple[str, str]) -> int:
        message_id, state = job
        try:
            return patch_states(Client(), phone, message_id, state, {state: now})
        finally:
            connections.close_all()

    now = datetime.now(UTC).isoformat(timespec="milliseconds")  # both at once, as the phone saw them
    jobs = [(m.public_id, state) for m in messages for state in ("Sent", "Delivered")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, jobs)) == {204}
    for message in messages:
        assert list(message.events.values_list("status", flat=True)) == ["assigned", "sent", "delivered"]
        assert callback_types(message) == ["message.sent", "message.delivered"]


def patch_failed(client, phone, message_id: str, error: str) -> int:
    body = [
        {
            "id": message_id,
            "state": "Failed",
            "recipients": [{"phoneNumber": "+39333", "state": "Failed", "error": error}],
            "states": {},
        }
    ]
    return client.patch(
        URL,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {phone.token}",
        HTTP_USER_AGENT="me.capcom.smsgateway/1.68.0",
    ).status_code


@pytest.fixture
def second_phone(alice_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    return smsgate.register_device(credential=smsgate.resolve_private_token(secret=secret), name="Second")


def test_the_app_s_radio_off_failure_goes_to_another_phone_and_pauses_this_one(
    client, phone, second_phone, alice_list, alice
):
    message = factories.make_message(phone_list=alice_list)
    assert [job["id"] for job in fetch(client, phone)] == [message.public_id]
    balance = type(alice).objects.get(pk=alice.pk).balance
    error = "Send result: RESULT_ERROR_RADIO_OFF (Failed because radio was explicitly turned off)"
    assert patch_failed(client, phone, message.public_id, error) == 204
    message.refresh_from_db()
    assert (message.status, message.device_id) == (Message.Status.QUEUED, None)
    assert fetch(client, phone) == []  # paused, and it failed this one
    assert [job["id"] for job in fetch(client, second_phone)] == [message.public_id]
    assert patch(client, second_phone, message.public_id, "Sent") == 204
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert type(alice).objects.get(pk=alice.pk).balance == balance  # paid once, never refunded
    failed = MessageEvent.objects.get(message=message, status="failed")
    assert failed.detail == error


def test_the_app_s_invalid_number_failure_fails_at_once(client, phone, second_phone, alice_list, alice):
    message = factories.make_message(phone_list=alice_list)
    fetch(client, phone)
    balance = type(alice).objects.get(pk=alice.pk).balance
    assert patch_failed(client, phone, message.public_id, "sendSMS: Invalid phone number") == 204
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert type(alice).objects.get(pk=alice.pk).balance == balance + message.cost
    assert fetch(client, second_phone) == []
