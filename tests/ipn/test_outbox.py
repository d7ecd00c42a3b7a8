"""Events written in the transaction that caused them, and what each one says."""

import json
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs

import pytest
import time_machine
from django.utils import timezone

from ipn import services as ipn_services
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Message
from messaging.services import callbacks, dispatch, inbox
from tests import factories


@pytest.fixture
def phone(alice_list):
    device, _token = factories.make_enrolled_device(phone_list=alice_list, name="Pixel 7 ✨")
    return device


def assigned_message(phone, **fields) -> Message:
    message = factories.make_message(phone_list=phone.phone_list, **fields)
    assert dispatch.claim_message(device=phone, message_id=message.public_id) is not None
    return message


def only_event() -> dict:
    return json.loads(IpnEvent.objects.get().body)


def test_a_sent_report_writes_the_spec_body(endpoint, phone):
    message = assigned_message(phone, text="Hi")
    Message.objects.filter(pk=message.pk).update(ref="order-7")
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    body = only_event()
    assert body["type"] == "message.sent"
    assert body["data"] == {
        "message_id": message.public_id,
        "ref": "order-7",
        "to": "+393331234567",
        "status": "sent",
        "device_id": phone.public_id,
        "device_name": "Pixel 7 ✨",
        "parts": 1,
        "error": None,
        "sent_at": body["occurred_at"],
        "delivered_at": None,
    }
    assert body["timestamp"] == body["occurred_at"]


def test_delivered_and_failed_reports_write_their_events(endpoint, phone):
    delivered = assigned_message(phone)
    dispatch.report_message(device=phone, message_id=delivered.public_id, status="delivered")
    failed = assigned_message(phone)
    dispatch.report_message(device=phone, message_id=failed.public_id, status="failed", error="RADIO_OFF")
    events = {e.type: json.loads(e.body) for e in IpnEvent.objects.all()}
    assert events["message.delivered"]["data"]["status"] == "delivered"
    assert events["message.delivered"]["data"]["delivered_at"] is not None
    assert events["message.failed"]["data"]["error"] == "RADIO_OFF"
    assert events["message.failed"]["data"]["message_id"] == failed.public_id


def test_an_expired_message_writes_message_expired(endpoint, alice_list):
    message = factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=5))
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        assert dispatch.expire_one_overdue_message() is True
    body = only_event()
    assert (body["type"], body["data"]["message_id"], body["data"]["status"]) == (
        "message.expired",
        message.public_id,
        "expired",
    )
    assert body["data"]["device_id"] is None


def test_a_received_sms_writes_sms_received(endpoint, phone):
    at = timezone.now() - timedelta(seconds=3)
    inbound = inbox.record_incoming_sms(device=phone, sender="+393339998888", text="Ciao 👋", received_at=at, sim=2)
    body = only_event()
    assert body["type"] == "sms.received"
    assert body["data"] == {
        "id": inbound.public_id,
        "from": "+393339998888",
        "msg": "Ciao 👋",
        "at": body["occurred_at"],
        "device_id": phone.public_id,
        "list": phone.phone_list.token,
        "sim": 2,
    }


def test_the_same_sms_from_two_phones_writes_one_event(endpoint, phone, alice_list):
    other, _ = factories.make_enrolled_device(phone_list=alice_list, name="Other")
    at = timezone.now()
    inbox.record_incoming_sms(device=phone, sender="+39333", text="OK", received_at=at)
    inbox.record_incoming_sms(device=other, sender="+39333", text="OK", received_at=at)
    assert IpnEvent.objects.count() == 1


def test_a_crash_after_the_status_update_leaves_neither_status_nor_event(endpoint, phone):
    """The report's transaction (here a `delivered` that records `sent` first). A plain
    `sent` or `delivered` is one statement on PostgreSQL, with no moment between the status
    change and the outbox row: tests/messaging/test_reports.py has the database refuse its row."""
    message = assigned_message(phone)
    real = callbacks.record_message_event

    def write_then_crash(**kwargs):
        assert real(**kwargs) is not None
        raise RuntimeError("crash before commit")

    with mock.patch.object(callbacks, "record_message_event", side_effect=write_then_crash):
        with pytest.raises(RuntimeError):
            dispatch.report_message(device=phone, message_id=message.public_id, status="delivered")
    message.refresh_from_db()
    assert message.status == Message.Status.ASSIGNED
    assert not IpnEvent.objects.exists()
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    assert IpnEvent.objects.get().message_id == message.pk


def test_only_the_chosen_event_types_are_written(alice, endpoint, phone):
    ipn_services.update_endpoint(account=alice, events=["message.delivered"])
    message = assigned_message(phone)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    dispatch.report_message(device=phone, message_id=message.public_id, status="delivered")
    assert list(IpnEvent.objects.values_list("type", flat=True)) == ["message.delivered"]


def test_nothing_is_written_without_an_enabled_endpoint(alice, phone):
    message = assigned_message(phone)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    ipn_services.update_endpoint(account=alice, url="https://8.8.8.8/ipn", enabled=False)
    dispatch.report_message(device=phone, message_id=message.public_id, status="delivered")
    assert not IpnEvent.objects.exists()


def test_a_long_received_text_is_cut_so_the_body_stays_under_20_kb(endpoint, phone):
    inbox.record_incoming_sms(device=phone, sender="+39333", text="é" * 30_000, received_at=timezone.now())
    event = IpnEvent.objects.get()
    assert len(event.body.encode()) <= ipn_services.MAX_BODY_BYTES
    data = json.loads(event.body)["data"]
    assert data["truncated"] is True and set(data["msg"]) == {"é"} and len(data["msg"]) > 9000


# --- GenioSms format -----------------------------------------------------------------


@pytest.fixture
def genio(alice, endpoint):
    return ipn_services.update_endpoint(account=alice, format=IpnEndpoint.Format.GENIOSMS)


def form(event: IpnEvent) -> dict[str, str]:
    assert event.content_type == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(event.body, keep_blank_values=True).items()}


def test_geniosms_sent_and_delivery_carry_the_original_fields(genio, alice):
    phone_list = factories.make_list(account=alice, name="Zero PIN", pin="025719")
    device, _ = factories.make_enrolled_device(phone_list=phone_list)
    device.phone_number = "00393331112222"
    device.save(update_fields=["phone_number"])
    message = assigned_message(device, text="Ciao 😀 & grazie", to="3331234567")
    Message.objects.filter(pk=message.pk).update(ref="my-custom")
    dispatch.report_message(device=device, message_id=message.public_id, status="sent")
    dispatch.report_message(device=device, message_id=message.public_id, status="delivered")
    sent, delivered = (form(e) for e in IpnEvent.objects.order_by("id"))
    assert sent == {
        "status": "RESULT_OK",
        "status_code": "-1",
        "id_smsout": message.public_id,
        "request_code": sent["request_code"],
        "pin": "025719",
        "custom": "my-custom",
        "ipn_type": "SENT",
        "from": "00393331112222",
        "to": "3331234567",
        "msg": "Ciao 😀 & grazie",
    }
    assert len(sent["request_code"]) == 8 and sent["request_code"].isdigit()
    assert delivered == {**sent, "ipn_type": "DELIVERY"}


def test_a_geniosms_failure_is_a_sent_result_error_with_the_android_code(genio, phone):
    message = assigned_message(phone)
    dispatch.report_message(
        device=phone, message_id=message.public_id, status="failed", error="RESULT_ERROR_NO_SERVICE"
    )
    fields = form(IpnEvent.objects.get())
    assert (fields["status"], fields["status_code"], fields["ipn_type"]) == ("RESULT_ERROR", "4", "SENT")


@pytest.mark.parametrize(
    ("error", "code"),
    [("radio off", "2"), ("RESULT_ERROR_GENERIC_FAILURE", "1"), ("error 5", "5"), ("weird", "1"), ("", "1")],
)
def test_android_error_codes_are_read_from_the_phones_error_text(error, code):
    assert callbacks.android_error_code(error) == code


def test_geniosms_has_no_expired_or_received_events(genio, phone, alice_list):
    factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=1))
    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        dispatch.expire_one_overdue_message()
    inbox.record_incoming_sms(device=phone, sender="+39333", text="hi", received_at=timezone.now())
    assert not IpnEvent.objects.exists()


def test_a_long_geniosms_text_is_cut_so_the_form_stays_under_20_kb(genio, phone):
    message = assigned_message(phone, text="😀" * 8_000)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    event = IpnEvent.objects.get()
    assert len(event.body.encode()) <= ipn_services.MAX_BODY_BYTES
    fields = form(event)
    assert set(fields["msg"]) == {"😀"} and len(fields["msg"]) > 1000
    assert fields["id_smsout"] == message.public_id
