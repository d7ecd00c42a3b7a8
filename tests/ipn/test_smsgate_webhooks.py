"""SMSGate webhooks, delivered by the server: registration rules, which events each webhook
gets, SMSGate's envelope and signature, and the outbox's retries, log and switch-off."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts import errors
from ipn import delivery
from ipn import services as ipn_services
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent, SmsGateWebhook
from messaging.models import Message
from messaging.services import accept, dispatch, inbox
from tests import factories
from tests.ipn.conftest import Reply


def verify_as_smsgate_documents(key: str, body: bytes, timestamp: str, signature: str) -> bool:
    """The receiver's check from SMSGate's webhook docs (raw body + X-Timestamp, hex HMAC-SHA256)."""
    expected = hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@pytest.fixture
def phone(alice_list):
    device, _token = factories.make_enrolled_device(phone_list=alice_list, name="Pixel 7")
    return device


def register(account, url, event="sms:sent", **fields) -> SmsGateWebhook:
    return ipn_services.register_smsgate_webhook(account_id=account.pk, url=url, event=event, **fields)


def report(phone, status: str, sim: int | None = None, **fields) -> Message:
    message = factories.make_message(phone_list=phone.phone_list, **fields)
    if sim:
        Message.objects.filter(pk=message.pk).update(sim=sim)
    assert dispatch.claim_message(device=phone, message_id=message.public_id) is not None
    dispatch.report_message(device=phone, message_id=message.public_id, status=status, error="RADIO_OFF")
    return message


def deliver_all() -> None:
    """Worker steps until no event is left to attempt. A step says more is waiting only
    after a full claim; one message's events to different webhooks go a step apart (the
    later one waits for the earlier one's attempt: they may share a URL)."""
    for _ in range(20):
        delivery.deliver_one_due_event()
        if not IpnEvent.objects.filter(status=IpnEvent.Status.PENDING, attempts=0).exists():
            return
    raise AssertionError("events left unattempted")


@pytest.mark.parametrize("event", ["mms:received", "system:ping", "sms:data-received", "app:started"])
def test_it_refuses_events_phonefleet_does_not_emit_and_says_why(alice, private_ok, receiver, event):
    with pytest.raises(errors.InvalidParameter, match=rf"`{event}` is not supported: .+ Supported events: sms:rec"):
        register(alice, receiver.url, event=event)
    with pytest.raises(errors.InvalidParameter, match="Unknown event `sms:bogus`"):
        register(alice, receiver.url, event="sms:bogus")
    assert not SmsGateWebhook.objects.exists()


def test_it_refuses_private_addresses_unless_the_operator_allows_them(alice):
    with pytest.raises(errors.InvalidParameter, match="IPN_ALLOW_PRIVATE_NETWORKS"):
        register(alice, "http://127.0.0.1:9/hook")


def test_a_sent_report_reaches_the_webhook_in_smsgates_envelope_and_signature(alice, phone, receiver, private_ok):
    hook = register(alice, receiver.url, public_id="my-hook-1")
    message = report(phone, "sent", text="Hi", sim=2)
    deliver_all()
    got = receiver.wait_for(1)[0]
    key = IpnEndpoint.objects.get(account=alice).smsgate_signing_key
    assert verify_as_smsgate_documents(key, got.body, got.headers["x-timestamp"], got.headers["x-signature"])
    assert abs(int(got.headers["x-timestamp"]) - timezone.now().timestamp()) < 5
    body = json.loads(got.body)
    event = IpnEvent.objects.get(smsgate_webhook=hook)
    assert body == {
        "id": event.webhook_id,
        "webhookId": "my-hook-1",
        "event": "sms:sent",
        "deviceId": phone.public_id,
        "payload": {
            "messageId": message.public_id,
            "phoneNumber": "+393331234567",
            "recipient": "+393331234567",
            "simNumber": 2,
            "partsCount": 1,
            "sentAt": body["payload"]["sentAt"],
        },
    }
    assert body["payload"]["sentAt"].endswith("+00:00") and len(body["payload"]["sentAt"]) == 29
    # A tampered body or timestamp fails the receiver's check.
    assert not verify_as_smsgate_documents(key, got.body + b" ", got.headers["x-timestamp"], got.headers["x-signature"])
    stale = str(int(got.headers["x-timestamp"]) - 1)
    assert not verify_as_smsgate_documents(key, got.body, stale, got.headers["x-signature"])


def test_each_webhook_gets_only_its_event_list_and_phone(alice, alice_list, phone, make_receiver, private_ok):
    other_list = factories.make_list(account=alice, name="Other")
    other_phone, _token = factories.make_enrolled_device(phone_list=other_list)
    sent, failed, listed, pinned, elsewhere = (make_receiver() for _ in range(5))
    register(alice, sent.url, event="sms:sent")
    register(alice, failed.url, event="sms:failed")
    register(alice, listed.url, event="sms:sent", phone_list_id=alice_list.pk)
    register(alice, pinned.url, event="sms:sent", device_id=other_phone.pk)
    register(alice, elsewhere.url, event="sms:sent", phone_list_id=other_list.pk)
    report(phone, "sent")
    deliver_all()
    assert [len(r.requests) for r in (sent, failed, listed, pinned, elsewhere)] == [1, 0, 1, 0, 0]


def test_failed_expired_and_received_sms_have_smsgates_payloads(alice, alice_list, phone, receiver, private_ok):
    for event in ("sms:failed", "sms:received"):
        register(alice, receiver.url, event=event)
    failed = report(phone, "failed")
    expiring = factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=5))
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        assert dispatch.expire_one_overdue_message()
        inbox.record_incoming_sms(device=phone, sender="+393330000001", text="Ciao", received_at=timezone.now(), sim=1)
        deliver_all()
    bodies = {(b := json.loads(r.body))["payload"]["messageId"]: b for r in receiver.wait_for(3)}
    assert bodies[failed.public_id]["payload"]["reason"] == "RADIO_OFF"
    assert bodies[expiring.public_id]["payload"]["reason"] == "TTL expired"
    assert bodies[expiring.public_id]["deviceId"] == ""
    received = next(b for b in bodies.values() if b["event"] == "sms:received")["payload"]
    assert received | {"messageId": "x", "receivedAt": "x"} == {
        "messageId": "x",
        "message": "Ciao",
        "phoneNumber": "+393330000001",
        "sender": "+393330000001",
        "simNumber": 1,
        "receivedAt": "x",
    }


def test_a_retry_keeps_the_event_id_and_signs_anew(alice, phone, receiver, private_ok):
    register(alice, receiver.url)
    receiver.replies.append(Reply(status=503))
    report(phone, "sent")
    deliver_all()
    event = IpnEvent.objects.get(type="sms:sent")
    assert event.status == IpnEvent.Status.PENDING and event.attempts == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        deliver_all()
    first, second = receiver.wait_for(2)
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"] == event.webhook_id
    assert int(second.headers["x-timestamp"]) - int(first.headers["x-timestamp"]) >= 300
    outcomes = list(IpnAttempt.objects.filter(event=event).values_list("outcome", "url"))
    assert outcomes == [("retry", receiver.url), ("success", receiver.url)]


def test_a_410_switches_off_that_webhook_only_and_registering_again_switches_it_on(
    alice, phone, make_receiver, private_ok
):
    gone, fine = make_receiver(), make_receiver()
    gone.default = Reply(status=410)
    register(alice, gone.url, public_id="gone")
    register(alice, fine.url, public_id="fine")
    report(phone, "sent")
    deliver_all()
    states = dict(SmsGateWebhook.objects.values_list("public_id", "disabled_reason"))
    assert states == {"gone": delivery.DISABLED_GONE, "fine": ""}
    report(phone, "sent")
    deliver_all()
    assert (len(gone.requests), len(fine.requests)) == (1, 2)
    assert IpnEvent.objects.filter(smsgate_webhook__public_id="gone", status="skipped").count() == 1

    register(alice, gone.url, public_id="gone")  # the client registers it again
    assert SmsGateWebhook.objects.get(public_id="gone").disabled_at is None


def test_the_same_id_replaces_a_webhook_but_not_another_lists(alice, alice_list, receiver, private_ok):
    other_list = factories.make_list(account=alice, name="Other")
    register(alice, receiver.url, public_id="hook", phone_list_id=alice_list.pk)
    replaced = register(
        alice, receiver.url + "?v=2", event="sms:delivered", public_id="hook", phone_list_id=alice_list.pk
    )
    assert (replaced.url, replaced.event, SmsGateWebhook.objects.count()) == (receiver.url + "?v=2", "sms:delivered", 1)
    with pytest.raises(errors.Conflict):
        register(alice, receiver.url, public_id="hook", phone_list_id=other_list.pk)
    with pytest.raises(errors.InvalidParameter, match="`id`"):
        register(alice, receiver.url, public_id="no spaces")


def test_deleting_the_last_webhook_gives_reports_their_one_statement_back(alice, phone, receiver, private_ok):
    register(alice, receiver.url, public_id="only")
    assert IpnEndpoint.objects.get(account=alice).has_webhooks
    with pytest.raises(errors.NotFound):
        ipn_services.delete_smsgate_webhook(account_id=alice.pk, phone_list_id=None, public_id="nope")
    ipn_services.delete_smsgate_webhook(account_id=alice.pk, phone_list_id=None, public_id="only")
    assert not IpnEndpoint.objects.get(account=alice).has_webhooks
    report(phone, "sent")
    assert not IpnEvent.objects.exists()


def test_a_webhook_event_can_be_replayed_with_its_id(alice, phone, receiver, private_ok):
    register(alice, receiver.url)
    report(phone, "sent")
    deliver_all()
    event = IpnEvent.objects.get()
    attempt = ipn_services.replay_event(account=alice, webhook_id=event.webhook_id)
    assert attempt.outcome == "success" and attempt.url == receiver.url
    first, again = receiver.wait_for(2)
    assert first.body == again.body


def test_the_signing_key_can_be_set_to_the_one_a_receiver_already_uses(alice, phone, receiver, private_ok):
    register(alice, receiver.url)
    ipn_services.set_smsgate_signing_key(account_id=alice.pk, key="Ab3dE6gH")
    assert ipn_services.smsgate_signing_key(account_id=alice.pk) == "Ab3dE6gH"
    report(phone, "sent")
    deliver_all()
    got = receiver.wait_for(1)[0]
    assert verify_as_smsgate_documents("Ab3dE6gH", got.body, got.headers["x-timestamp"], got.headers["x-signature"])
    with pytest.raises(errors.InvalidParameter):
        ipn_services.set_smsgate_signing_key(account_id=alice.pk, key="  ")


def test_a_cancelled_message_reaches_sms_cancelled_webhooks_and_no_ipn(alice, alice_list, receiver, private_ok):
    ipn_services.update_endpoint(account=alice, url=receiver.url, enabled=True)
    register(alice, receiver.url, event="sms:cancelled")
    message = factories.make_message(phone_list=alice_list)
    accept.cancel_message(account_id=alice.pk, message_id=message.public_id)
    deliver_all()
    (got,) = receiver.wait_for(1)
    body = json.loads(got.body)
    assert (body["event"], body["payload"]["messageId"]) == ("sms:cancelled", message.public_id)
    assert body["payload"]["cancelledAt"].endswith("+00:00")
    assert list(IpnEvent.objects.values_list("type", flat=True)) == ["sms:cancelled"]
