"""Reports from phones: the lifecycle moves forward only, refunds happen once."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import IntegrityError, connection
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from config.asgi import application
from ipn import services as ipn_services
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Message
from messaging.services import callbacks, dispatch
from tests import factories


@pytest.fixture
def phone(alice_list):
    return factories.make_enrolled_device(phone_list=alice_list, name="A")[0]


@pytest.fixture
def assigned(alice_list, phone):
    message = factories.make_message(phone_list=alice_list)
    assert dispatch.claim_message(device=phone, message_id=message.public_id)
    return message


@pytest.fixture
def ipn_on(alice):
    return IpnEndpoint.objects.create(account=alice, url="https://hooks.example/ipn", enabled=True, secret="whsec_x")


def report(**kwargs) -> Message:
    message = dispatch.report_message(**kwargs)
    assert message is not None
    return message


def balance(account) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)


def test_sent_then_delivered_records_a_timeline_with_the_device(phone, assigned):
    report(device=phone, message_id=assigned.public_id, status="sent")
    message = report(device=phone, message_id=assigned.public_id, status="delivered")
    assert message.status == "delivered" and message.sent_at and message.delivered_at
    assert list(message.events.values_list("status", "device")) == [
        ("assigned", phone.pk),
        ("sent", phone.pk),
        ("delivered", phone.pk),
    ]
    assert message.lease_expires_at is None


def test_a_duplicate_report_changes_nothing(phone, assigned):
    first = report(device=phone, message_id=assigned.public_id, status="sent")
    again = report(device=phone, message_id=assigned.public_id, status="sent")
    assert again.status == "sent" and again.sent_at == first.sent_at
    assert assigned.events.filter(status="sent").count() == 1


def test_a_report_never_moves_a_message_backwards(phone, assigned):
    report(device=phone, message_id=assigned.public_id, status="delivered")
    for late in ("sent", "failed"):
        assert report(device=phone, message_id=assigned.public_id, status=late).status == "delivered"
    message = Message.objects.get(pk=assigned.pk)
    assert message.sent_at is not None  # delivered implies sent
    assert not LedgerEntry.objects.filter(message=message, kind="refund").exists()


def test_failed_refunds_the_credit_exactly_once(alice, phone, assigned, ipn_on):
    before = balance(alice)
    for _ in range(2):
        message = report(device=phone, message_id=assigned.public_id, status="failed", error="SIM blocked")
    assert (message.status, message.error) == ("failed", "SIM blocked")
    assert balance(alice) == before + 1
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1
    assert list(IpnEvent.objects.values_list("type", flat=True)) == ["message.failed"]


def test_each_transition_writes_its_ipn_event(phone, assigned, ipn_on):
    report(device=phone, message_id=assigned.public_id, status="sent")
    report(device=phone, message_id=assigned.public_id, status="delivered")
    assert list(IpnEvent.objects.order_by("id").values_list("type", flat=True)) == [
        "message.sent",
        "message.delivered",
    ]


@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the report
def test_the_status_change_rolls_back_with_a_failing_ipn_write(phone, assigned, ipn_on, monkeypatch):
    """The outbox row is written with the status change or neither is (R5): here the
    database refuses the row (no event type), inside the report's one
    statement on PostgreSQL, inside its transaction elsewhere."""
    build_event = ipn_services.build_event

    def broken(**kwargs):
        row = build_event(**kwargs)
        assert row is not None
        row.type = None  # type: ignore[assignment]
        return row

    monkeypatch.setattr(ipn_services, "build_event", broken)
    if connection.vendor == "postgresql":
        # The one statement builds its row itself: give it no event type either.
        monkeypatch.setitem(callbacks.MESSAGE_EVENT_TYPES, "sent", None)
    with pytest.raises(IntegrityError):
        report(device=phone, message_id=assigned.public_id, status="sent")
    assert Message.objects.get(pk=assigned.pk).status == "assigned"
    assert not assigned.events.filter(status="sent").exists()
    assert not IpnEvent.objects.exists()


def overtaken_reads(monkeypatch, *, times: int) -> None:
    """The next `times` reads of a reporting message are overtaken by another change of it
    (as a lease lapse and a new claim would) before the report's UPDATE runs."""
    real_read = dispatch._reporting_message
    left = [times]

    def read_then_overtaken(**kwargs):
        found = real_read(**kwargs)
        assert found is not None
        if left[0] > 0:
            left[0] -= 1
            Message.objects.filter(pk=found[0].pk).update(attempts=F("attempts") + 1)
        return found

    monkeypatch.setattr(dispatch, "_reporting_message", read_then_overtaken)


def test_a_report_overtaken_by_a_concurrent_change_reads_again_and_applies_once(
    alice, phone, assigned, ipn_on, monkeypatch
):
    before = balance(alice)
    overtaken_reads(monkeypatch, times=dispatch.REPORT_TRIES - 1)
    message = report(device=phone, message_id=assigned.public_id, status="failed", error="No signal")
    assert message.status == "failed"
    assert balance(alice) == before + 1
    assert assigned.events.filter(status="failed").count() == 1
    assert list(IpnEvent.objects.values_list("type", flat=True)) == ["message.failed"]


def test_a_report_overtaken_on_every_try_writes_nothing_and_is_not_acknowledged(
    alice, phone, assigned, ipn_on, monkeypatch
):
    before = balance(alice)
    overtaken_reads(monkeypatch, times=dispatch.REPORT_TRIES)
    with pytest.raises(dispatch.ReportNotApplied):
        dispatch.report_message(device=phone, message_id=assigned.public_id, status="failed")
    assert Message.objects.get(pk=assigned.pk).status == "assigned"
    assert balance(alice) == before
    assert not IpnEvent.objects.exists()
    # Reported again (the phone keeps what was not acknowledged), it applies.
    assert report(device=phone, message_id=assigned.public_id, status="failed").status == "failed"


def test_a_phone_that_never_held_the_message_cannot_report_it(alice_list, assigned):
    stranger = factories.make_enrolled_device(phone_list=alice_list, name="B")[0]
    assert dispatch.report_message(device=stranger, message_id=assigned.public_id, status="sent") is None
    assert dispatch.report_message(device=stranger, message_id="msg_nope", status="sent") is None
    assert Message.objects.get(pk=assigned.pk).status == "assigned"


def test_a_late_sent_after_the_lease_lapsed_is_accepted_once(alice, alice_list, phone, assigned):
    other = factories.make_enrolled_device(phone_list=alice_list, name="B")[0]
    before = balance(alice)
    with time_machine.travel(timezone.now() + timedelta(seconds=alice_list.lease_seconds + 1), tick=False):
        assert dispatch.requeue_one_expired_lease()
        assert dispatch.claim_message(device=other, message_id=assigned.public_id)
        message = report(device=phone, message_id=assigned.public_id, status="sent")
        assert (message.status, message.device_id) == ("sent", phone.pk)
        # The second holder's report of the same outcome is a duplicate.
        again = report(device=other, message_id=assigned.public_id, status="sent")
    assert (again.status, again.device_id) == ("sent", phone.pk)
    assert balance(alice) == before
    assert assigned.events.filter(status="sent").count() == 1


def test_a_late_sent_after_expiry_wins_and_reverses_the_refund(alice, phone, assigned, ipn_on):
    before = balance(alice)
    with time_machine.travel(assigned.expires_at + timedelta(seconds=1), tick=False):
        assert dispatch.expire_one_overdue_message()
        assert balance(alice) == before + 1
        message = report(device=phone, message_id=assigned.public_id, status="sent")
    assert message.status == "sent"
    assert balance(alice) == before
    kinds = sorted(LedgerEntry.objects.filter(message=message).values_list("kind", flat=True))
    assert kinds == ["debit", "refund", "reversal"]
    assert list(IpnEvent.objects.order_by("id").values_list("type", flat=True)) == ["message.expired", "message.sent"]


def test_a_previous_holders_failure_does_not_fail_the_message(alice_list, phone, assigned):
    with time_machine.travel(timezone.now() + timedelta(seconds=alice_list.lease_seconds + 1), tick=False):
        dispatch.requeue_one_expired_lease()
        other = factories.make_enrolled_device(phone_list=alice_list, name="B")[0]
        dispatch.claim_message(device=other, message_id=assigned.public_id)
        message = report(device=phone, message_id=assigned.public_id, status="failed")
    assert message.status == "assigned" and message.device_id == other.pk


def test_a_report_time_from_the_future_is_clamped_to_now(phone, assigned):
    message = report(device=phone, message_id=assigned.public_id, status="sent", at=timezone.now() + timedelta(days=1))
    assert message.sent_at is not None and message.sent_at <= timezone.now()


@pytest.mark.django_db(transaction=True)
async def test_a_report_frame_is_acked_and_stored(alice_list):
    _device, token = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list)
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    assert (await ws.receive_json_from(timeout=5))["type"] == "offer"
    await ws.send_json_to({"type": "claim", "message_id": message.public_id})
    assert (await ws.receive_json_from(timeout=5))["type"] == "assign"
    report = {"type": "report", "message_id": message.public_id, "status": "sent", "at": "2020-01-01T00:00:00Z"}
    await ws.send_json_to(report)
    assert await ws.receive_json_from(timeout=5) == {"type": "ack", "message_id": message.public_id, "status": "sent"}
    await ws.send_json_to({"type": "report", "message_id": "msg_unknown", "status": "sent"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    stored = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert stored.status == "sent" and stored.sent_at is not None and stored.sent_at >= stored.created_at
    await ws.disconnect()


# --- A delivery with no recorded `sent` (R29) ---------------------------------------------


@pytest.mark.parametrize("ipn_format", ["standard", "geniosms"])
def test_a_delivered_report_with_no_sent_recorded_records_sent_first_with_its_callback(
    alice, phone, assigned, ipn_on, ipn_format
):
    IpnEndpoint.objects.filter(pk=ipn_on.pk).update(format=ipn_format)
    message = report(device=phone, message_id=assigned.public_id, status="delivered")
    stored = Message.objects.get(pk=assigned.pk)
    assert stored.status == "delivered" and stored.sent_at == stored.delivered_at is not None
    assert list(stored.events.values_list("status", "device")) == [
        ("assigned", phone.pk),
        ("sent", phone.pk),
        ("delivered", phone.pk),
    ]
    events = list(IpnEvent.objects.filter(message=stored).order_by("id"))
    assert [event.type for event in events] == ["message.sent", "message.delivered"]
    # The outbox serves them in this order: the sent one is due first.
    assert events[0].next_attempt_at <= events[1].next_attempt_at
    if ipn_format == "geniosms":
        assert [parse_qs(event.body)["ipn_type"] for event in events] == [["SENT"], ["DELIVERY"]]
    else:
        sent, delivered = (json.loads(event.body)["data"] for event in events)
        assert (sent["status"], sent["delivered_at"]) == ("sent", None)
        assert (delivered["status"], delivered["sent_at"]) == ("delivered", sent["sent_at"])
    assert message.status == "delivered"
    # The `sent` report that comes after it is a duplicate: nothing more is written.
    assert report(device=phone, message_id=assigned.public_id, status="sent").status == "delivered"
    assert IpnEvent.objects.filter(message=stored).count() == 2
    assert stored.events.count() == 3


def test_without_callbacks_a_delivered_report_still_records_its_sent_step(phone, assigned):
    """On PostgreSQL the one-statement report must leave this case to the general path."""
    report(device=phone, message_id=assigned.public_id, status="delivered")
    stored = Message.objects.get(pk=assigned.pk)
    assert list(stored.events.values_list("status", flat=True)) == ["assigned", "sent", "delivered"]
    assert stored.sent_at is not None and stored.sent_at == stored.delivered_at


def test_a_delivered_report_after_expiry_records_sent_and_reverses_the_refund_once(alice, phone, assigned, ipn_on):
    before = balance(alice)
    with time_machine.travel(assigned.expires_at + timedelta(seconds=1), tick=False):
        assert dispatch.expire_one_overdue_message()
        report(device=phone, message_id=assigned.public_id, status="delivered")
        report(device=phone, message_id=assigned.public_id, status="sent")
    assert balance(alice) == before
    kinds = sorted(LedgerEntry.objects.filter(message=assigned).values_list("kind", flat=True))
    assert kinds == ["debit", "refund", "reversal"]
    types = list(IpnEvent.objects.order_by("id").values_list("type", flat=True))
    assert types == ["message.expired", "message.sent", "message.delivered"]


def test_a_sent_then_delivered_keeps_the_phones_sent_time(phone, assigned, ipn_on):
    sent_at = timezone.now()
    report(device=phone, message_id=assigned.public_id, status="sent", at=sent_at)
    with time_machine.travel(sent_at + timedelta(seconds=3), tick=False):
        report(device=phone, message_id=assigned.public_id, status="delivered")
    stored = Message.objects.get(pk=assigned.pk)
    assert stored.sent_at == sent_at and stored.delivered_at == sent_at + timedelta(seconds=3)
    assert list(stored.events.values_list("status", flat=True)) == ["assigned", "sent", "delivered"]
