"""The SMSGate app's exact request sequence against a live Daphne server:
register, patch device, open the event stream, fetch, report states, post signed webhooks."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from django.conf import settings

from accounts.models import Account
from devices import services as device_services
from devices.models import Device, EnrolmentToken
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import InboundSms, Message, MessageEvent
from tests.live import wait_for
from tests.smsgate.phone import EventStream, SmsGateApp, phone_time

pytestmark = pytest.mark.slow

PHONE_ZONE = timezone(timedelta(hours=7))
MILLISECOND_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@pytest.fixture
def phone(server, mobile_token):
    app = SmsGateApp(server.mobile)
    assert app.sign_up(mobile_token).status_code == 201
    assert app.patch_device().status_code == 204
    app.sync_settings()
    yield app
    app.close()


def send(server, alice_key, text: str = "Your code is 1234", to: str = "+393471234567") -> str:
    """A message accepted through the public send API of the same server."""
    _key, secret = alice_key
    answer = httpx.post(
        f"{server.url}/api/v1/send", data={"to": to, "msg": text}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["message_id"]


def test_it_registers_a_phone_in_the_list_of_the_private_token(server, mobile_token, alice_list):
    app = SmsGateApp(server.mobile)
    answer = app.sign_up(mobile_token, name="samsung/a52q")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "token", "login", "password"}
    assert all(isinstance(value, str) and value for value in body.values())
    device = Device.objects.get(public_id=body["id"])
    assert (device.kind, device.phone_list_id, device.name) == (Device.Kind.SMSGATE, alice_list.pk, "samsung/a52q")
    assert device.app_version == "1.68.0"
    assert body["token"] not in device.token_digest
    # The password is stored only as a digest.
    assert not EnrolmentToken.objects.filter(digest__contains=body["password"]).exists()
    assert EnrolmentToken.objects.filter(phone_list=alice_list, prefix=f"login:{body['login']}").exists()


def test_it_answers_401_to_a_wrong_private_token(server, alice_list):
    app = SmsGateApp(server.mobile)
    assert app.sign_up("pf_mobile_not-a-real-token").status_code == 401
    assert not Device.objects.exists()


def test_patch_device_stores_sims_and_answers_401_only_for_dead_tokens(phone):
    sims = [{"slotIndex": 0, "simNumber": 1, "phoneNumber": "****4567", "carrierName": "****TIM"}]
    assert phone.patch_device(sims=sims).status_code == 204
    device = Device.objects.get(public_id=phone.device_id)
    assert device.sims == sims

    good = phone.token
    phone.token = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert phone.patch_device().status_code == 401
    phone.token = good
    Device.objects.filter(pk=device.pk).update(is_enabled=False)
    assert phone.patch_device().status_code == 401
    Device.objects.filter(pk=device.pk).update(is_enabled=True, removed_at=datetime.now(UTC))
    assert phone.patch_device().status_code == 401


def test_settings_provision_the_signing_key_and_sse_only(phone):
    settings_body = phone.sync_settings()
    device = Device.objects.get(public_id=phone.device_id)
    assert settings_body["webhooks"]["signing_key"] == device.webhook_signing_key
    assert settings_body["gateway"] == {"notification_channel": "SSE_ONLY"}
    assert settings_body["messages"] == {"limit_period": "Disabled", "limit_value": 0}
    assert "cloud_url" not in str(settings_body)


def test_webhooks_point_every_event_at_our_receiver(phone, server):
    hooks = phone.webhooks()
    assert {hook["event"] for hook in hooks} == {
        "sms:received",
        "sms:sent",
        "sms:delivered",
        "sms:failed",
        "system:ping",
    }
    assert {hook["url"] for hook in hooks} == {f"{server.mobile}/hooks/{phone.device_id}"}
    assert len({hook["id"] for hook in hooks}) == len(hooks)


def test_the_event_stream_wakes_the_phone_when_a_message_is_accepted(phone, server, alice_key):
    stream = EventStream(phone)
    try:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-accel-buffering"] == "no"
        stream.read_until(lambda s: "keepalive" in s.comments)
        device = wait_for(
            lambda: Device.objects.online().filter(public_id=phone.device_id).first(),
            timeout=10,
            what="the phone connected",
            every=0.02,
        )
        assert device is not None

        send(server, alice_key)
        stream.read_until(lambda s: any(name == "MessageEnqueued" for name, _ in s.events))
        assert all(data for _name, data in stream.events)
    finally:
        stream.close()
    wait_for(
        lambda: Device.objects.filter(public_id=phone.device_id, is_connected=False).exists(),
        timeout=10,
        what="the phone disconnected",
        every=0.02,
    )


def test_the_event_stream_refuses_a_bad_token_with_401(server):
    app = SmsGateApp(server.mobile)
    app.token = "pfd_nope"
    stream = EventStream(app)
    try:
        assert stream.response.status_code == 401
    finally:
        stream.close()
        app.close()


def test_a_settings_change_reaches_the_open_stream(phone):
    if not settings.REDIS_URL:
        pytest.skip("needs the Redis channel layer that the test and the server share (CI has it)")
    stream = EventStream(phone)
    try:
        stream.read_until(lambda s: len(s.events) == 2)
        device = wait_for(
            lambda: Device.objects.online().filter(public_id=phone.device_id).first(),
            timeout=10,
            what="the phone connected",
            every=0.02,
        )
        # Every stream opens with one of each (test_app_startup.py); a change sends another.
        assert stream.events == [("SettingsUpdated", "{}"), ("WebhooksUpdated", "{}")]
        device_services.notify_settings_updated(device_id=device.pk)
        device_services.notify_webhooks_updated(phone_list_id=device.phone_list_id)
        stream.read_until(lambda s: len(s.events) == 4)
        assert sorted(stream.events[2:]) == [("SettingsUpdated", "{}"), ("WebhooksUpdated", "{}")]
    finally:
        stream.close()


def test_fetching_claims_and_a_refetch_is_idempotent(phone, server, alice_key, mobile_token):
    message_id = send(server, alice_key, text="Hello from Phonefleet")
    jobs = phone.fetch()
    assert len(jobs) == 1
    job = jobs[0]
    assert job["id"] == message_id
    assert job["textMessage"] == {"text": "Hello from Phonefleet"}
    assert job["message"] == "Hello from Phonefleet"  # what apps up to v1.39.0 read
    assert job["phoneNumbers"] == ["+393471234567"]
    assert job["withDeliveryReport"] is True
    assert MILLISECOND_DATE.match(job["validUntil"]) and MILLISECOND_DATE.match(job["createdAt"])
    assert None not in job.values() and "simNumber" not in job
    message = Message.objects.get(public_id=message_id)
    assert message.status == Message.Status.ASSIGNED
    assert message.device is not None and message.device.public_id == phone.device_id

    assert [job["id"] for job in phone.fetch()] == [message_id]
    other = SmsGateApp(server.mobile)
    other.sign_up(mobile_token)
    assert other.fetch() == []
    other.close()
    assert Message.objects.get(public_id=message_id).attempts == 1


def in_phone_offset(at: datetime) -> str:
    """An instant written as the phone writes it: milliseconds and its +07:00 offset."""
    return at.astimezone(PHONE_ZONE).isoformat(timespec="milliseconds")


def just_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def test_state_patches_walk_the_lifecycle_with_phone_dates(phone, server, alice_key, alice, alice_list):
    IpnEndpoint.objects.create(account=alice, url="https://hooks.example.com/sms", enabled=True, secret="whsec_x")
    message_id = send(server, alice_key)
    job = phone.fetch()[0]
    # The phone may hold a job a while before its radio sends it; Processed renews the lease.
    Message.objects.filter(public_id=message_id).update(lease_expires_at=datetime.now(UTC) + timedelta(seconds=5))

    pending = processed = in_phone_offset(just_now())
    assert phone.report(job, "Processed", {"Pending": pending, "Processed": processed}) == 204
    message = Message.objects.get(public_id=message_id)
    lease = timedelta(seconds=alice_list.lease_seconds)
    assert message.status == Message.Status.ASSIGNED
    assert message.lease_expires_at is not None
    assert message.lease_expires_at > datetime.now(UTC) + lease - timedelta(seconds=30)

    sent_at = just_now()
    states = {"Pending": pending, "Processed": processed, "Sent": in_phone_offset(sent_at)}
    assert phone.report(job, "Sent", states) == 204
    assert phone.report(job, "Sent", states) == 204
    delivered_at = just_now()
    assert phone.report(job, "Delivered", {**states, "Delivered": in_phone_offset(delivered_at)}) == 204

    message = Message.objects.get(public_id=message_id)
    assert message.status == Message.Status.DELIVERED
    # The phone's +07:00 times are the instants stored (in UTC).
    assert (message.sent_at, message.delivered_at) == (sent_at, delivered_at)
    timeline = list(MessageEvent.objects.filter(message=message).values_list("status", flat=True))
    assert timeline == ["assigned", "sent", "delivered"]
    assert sorted(IpnEvent.objects.filter(message=message).values_list("type", flat=True)) == [
        "message.delivered",
        "message.sent",
    ]


def test_a_failed_patch_fails_the_message_and_refunds_it(phone, server, alice_key, alice):
    message_id = send(server, alice_key)
    balance = Account.objects.get(pk=alice.pk).balance
    job = phone.fetch()[0]
    assert (
        phone.report(job, "Failed", {"Failed": in_phone_offset(just_now())}, error="RESULT_ERROR_GENERIC_FAILURE")
        == 204
    )
    message = Message.objects.get(public_id=message_id)
    assert message.status == Message.Status.FAILED
    assert "RESULT_ERROR_GENERIC_FAILURE" in message.error
    assert Account.objects.get(pk=alice.pk).balance == balance + message.cost


def test_patches_for_unknown_ids_answer_204(phone):
    job = {"id": "msg_unknown", "phoneNumbers": ["+393471234567"]}
    assert phone.report(job, "Sent", {"Sent": phone_time()}) == 204


def test_signed_webhooks_feed_the_lifecycle_and_bad_ones_are_refused(phone, server, alice_key):
    url = phone.webhooks()[0]["url"]
    message_id = send(server, alice_key)
    phone.fetch()
    payload = {"messageId": message_id, "recipient": "+393471234567", "partsCount": 1, "sentAt": phone_time()}

    stale = phone.post_webhook(url, "sms:sent", payload, timestamp=int(time.time()) - 600)
    assert stale.status_code == 401
    key, phone.signing_key = phone.signing_key, "wrong-key"
    assert phone.post_webhook(url, "sms:sent", payload).status_code == 401
    phone.signing_key = key
    assert Message.objects.get(public_id=message_id).status == Message.Status.ASSIGNED

    assert phone.post_webhook(url, "sms:sent", payload).status_code == 200
    assert Message.objects.get(public_id=message_id).status == Message.Status.SENT
    delivered = {"messageId": message_id, "recipient": "+393471234567", "deliveredAt": phone_time()}
    assert phone.post_webhook(url, "sms:delivered", delivered).status_code == 200
    assert Message.objects.get(public_id=message_id).status == Message.Status.DELIVERED
    # The PATCH for the same change afterwards is a no-op (idempotent with the webhook).
    job = {"id": message_id, "phoneNumbers": ["+393471234567"]}
    assert phone.report(job, "Delivered", {"Sent": phone_time(), "Delivered": phone_time()}) == 204
    assert MessageEvent.objects.filter(message__public_id=message_id, status="delivered").count() == 1


def test_a_tampered_webhook_body_is_refused(phone):
    url = phone.webhooks()[0]["url"]
    stamp = str(int(time.time()))
    body = b'{"id":"x","event":"system:ping","payload":{}}'
    from devices.smsgate import wire

    signature = wire.webhook_signature(phone.signing_key, body, stamp)
    tampered = body.replace(b"ping", b"pong")
    answer = phone.http.post(url, content=tampered, headers={"X-Timestamp": stamp, "X-Signature": signature})
    assert answer.status_code == 401


def test_a_repeated_webhook_id_is_applied_once(phone):
    url = phone.webhooks()[0]["url"]
    level: dict[str, Any] = {"observedValue": 80, "observedUnit": "%"}
    ping = {"health": {"status": "pass", "checks": {"battery:level": level}}}
    assert phone.post_webhook(url, "system:ping", ping, event_id="evt-1").status_code == 200
    level["observedValue"] = 20
    assert phone.post_webhook(url, "system:ping", ping, event_id="evt-1").status_code == 200
    assert Device.objects.get(public_id=phone.device_id).battery == 80
    assert phone.post_webhook(url, "system:ping", ping, event_id="evt-2").status_code == 200
    assert Device.objects.get(public_id=phone.device_id).battery == 20


def test_a_received_sms_lands_in_the_inbox(phone, alice_list):
    url = phone.webhooks()[0]["url"]
    received = {
        "messageId": "a1b2c3",
        "message": "OK",
        "sender": "+393339876543",
        "phoneNumber": "+393339876543",
        "simNumber": 1,
        "receivedAt": phone_time("2024-05-13T16:49:17.357"),
    }
    assert phone.post_webhook(url, "sms:received", received).status_code == 200
    assert phone.post_webhook(url, "sms:received", received).status_code == 200  # a retry with a new id
    inbound = InboundSms.objects.get(phone_list=alice_list)
    assert (inbound.sender, inbound.text, inbound.sim) == ("+393339876543", "OK", 1)
    assert inbound.received_at == datetime(2024, 5, 13, 9, 49, 17, 357000, tzinfo=UTC)
    assert inbound.device is not None and inbound.device.public_id == phone.device_id
