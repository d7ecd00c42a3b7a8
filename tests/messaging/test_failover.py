"""Failed sends: a phone-side failure goes to the list's other phones (3 in all) and pauses
the failing phone; recipient-side failures and pinned messages fail at once
(docs/device-protocol.md, "Failed sends")."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from devices import services as device_services
from devices.models import Device
from ipn.models import IpnEndpoint, IpnEvent
from messaging import metrics
from messaging.models import Message, MessageEvent
from messaging.services import dispatch
from tests import factories

CURRENT_TIME = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
RADIO_OFF = "RESULT_ERROR_RADIO_OFF"


@pytest.fixture
def phones(alice_list):
    return [factories.make_enrolled_device(phone_list=alice_list, name=name)[0] for name in "ABCD"]


@pytest.fixture
def ipn_on(alice):
    return IpnEndpoint.objects.create(account=alice, url="https://hooks.example/ipn", enabled=True, secret="whsec_x")


def fresh(device: Device) -> Device:
    return Device.objects.select_related("phone_list").get(pk=device.pk)


def claim(device: Device, message: Message) -> Message | None:
    return dispatch.claim_message(device=fresh(device), message_id=message.public_id)


def fail(device: Device, message: Message, error: str = RADIO_OFF) -> Message:
    reported = dispatch.report_message(device=device, message_id=message.public_id, status="failed", error=error)
    assert reported is not None
    return reported


def balance(account: Account) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)


def timeline(message: Message) -> list[tuple[str, int | None]]:
    return list(MessageEvent.objects.filter(message=message).order_by("at", "id").values_list("status", "device_id"))


def test_a_phone_side_failure_puts_the_message_back_for_the_other_phones(
    alice, alice_list, phones, ipn_on, django_capture_on_commit_callbacks, in_memory_layer
):
    a, b = phones[0], phones[1]
    message = factories.make_message(phone_list=alice_list)
    before = balance(alice)
    failovers = metrics.FAILOVERS._value.get()
    assert claim(a, message)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        reported = fail(
            a, message, "Send result: RESULT_ERROR_RADIO_OFF (Failed because radio was explicitly turned off)"
        )
    assert len(callbacks) == 2  # the failover counted, the message offered again
    assert reported.status == "queued"
    message.refresh_from_db()
    assert (message.status, message.device_id, message.lease_expires_at) == ("queued", None, None)
    assert message.error.startswith("Send result: RESULT_ERROR_RADIO_OFF")
    assert balance(alice) == before  # still on its way: no refund
    assert not LedgerEntry.objects.filter(message=message, kind="refund").exists()
    assert not IpnEvent.objects.exists()  # no callback until it ends
    assert metrics.FAILOVERS._value.get() == failovers + 1
    # A may not have it again; B may.
    assert claim(a, message) is None
    assert claim(b, message) is not None
    dispatch.report_message(device=b, message_id=message.public_id, status="sent")
    message.refresh_from_db()
    assert (message.status, message.device_id, message.error) == ("sent", b.pk, "")
    assert timeline(message) == [
        ("assigned", a.pk),
        ("failed", a.pk),
        ("queued", None),
        ("assigned", b.pk),
        ("sent", b.pk),
    ]
    failed_event = MessageEvent.objects.get(message=message, status="failed")
    assert failed_event.detail.startswith("Send result: RESULT_ERROR_RADIO_OFF")
    # The callback names the phone that sent it; the credit was taken once, never given back.
    (event,) = IpnEvent.objects.all()
    assert event.type == "message.sent" and json.loads(event.body)["data"]["device_id"] == b.public_id
    assert balance(alice) == before
    assert list(LedgerEntry.objects.filter(message=message).values_list("kind", flat=True)) == ["debit"]


def test_after_three_phones_fail_it_fails_for_good_and_is_refunded_once(alice, alice_list, phones, ipn_on):
    message = factories.make_message(phone_list=alice_list, cost=2)
    before = balance(alice)
    for phone in phones[:3]:
        assert claim(phone, message) is not None
        fail(phone, message, "RESULT_ERROR_NO_SERVICE")
    message.refresh_from_db()
    assert message.status == "failed" and message.device_id == phones[2].pk
    assert claim(phones[3], message) is None  # the fourth phone never gets it
    assert balance(alice) == before + 2
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1
    assert [status for status, _ in timeline(message)] == [
        *["assigned", "failed", "queued"] * 2,
        "assigned",
        "failed",
    ]
    (event,) = IpnEvent.objects.all()
    assert event.type == "message.failed" and json.loads(event.body)["data"]["device_id"] == phones[2].public_id
    assert all(fresh(phone).is_paused for phone in phones[:3])
    # A repeated report of the final failure changes nothing.
    fail(phones[2], message, "RESULT_ERROR_NO_SERVICE")
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1


def test_it_fails_at_once_when_no_other_enabled_phone_is_in_the_list(alice, alice_list):
    only = factories.make_enrolled_device(phone_list=alice_list, name="Only")[0]
    other = factories.make_enrolled_device(phone_list=alice_list, name="Disabled")[0]
    device_services.disable_device(device=other)
    message = factories.make_message(phone_list=alice_list)
    before = balance(alice)
    assert claim(only, message)
    assert fail(only, message).status == "failed"
    assert balance(alice) == before + 1
    assert fresh(only).is_paused


@pytest.mark.parametrize(
    "error",
    ["RESULT_ERROR_SHORT_CODE_NEVER_ALLOWED", "sendSMS: Invalid phone number", "RESULT_ERROR_FDN_CHECK_FAILURE"],
)
def test_a_recipient_side_failure_fails_at_once_without_pausing_the_phone(alice, alice_list, phones, error):
    message = factories.make_message(phone_list=alice_list)
    before = balance(alice)
    assert claim(phones[0], message)
    reported = fail(phones[0], message, error)
    assert (reported.status, reported.error) == ("failed", error)
    assert balance(alice) == before + 1
    assert not fresh(phones[0]).is_paused and fresh(phones[0]).failures_in_a_row == 0


def test_an_error_naming_no_known_cause_fails_over(alice_list, phones):
    message = factories.make_message(phone_list=alice_list)
    assert claim(phones[0], message)
    assert fail(phones[0], message, "the phone said something odd").status == "queued"


def test_a_pinned_message_fails_at_once_on_a_phone_side_failure(alice, alice_list, phones):
    message = factories.make_message(pinned_device=phones[0])
    before = balance(alice)
    assert claim(phones[0], message)
    assert fail(phones[0], message).status == "failed"
    assert balance(alice) == before + 1
    assert claim(phones[1], message) is None
    assert fresh(phones[0]).is_paused


def test_a_previous_holder_s_late_failure_does_not_move_the_message(alice_list, phones):
    a, b = phones[0], phones[1]
    message = factories.make_message(phone_list=alice_list)
    claim(a, message)
    fail(a, message)
    claim(b, message)
    fail(a, message)  # the same report again, after B took it
    message.refresh_from_db()
    assert (message.status, message.device_id) == ("assigned", b.pk)


# --- Pauses ----------------------------------------------------------------------------------


def test_the_pause_doubles_with_each_failure_in_a_row_up_to_30_minutes_and_a_sent_ends_it(alice_list, phones):
    a = phones[0]
    lengths = []
    with time_machine.travel(CURRENT_TIME, tick=False) as clock:
        for _ in range(9):
            message = factories.make_message(phone_list=alice_list)
            assert claim(a, message) is not None
            fail(a, message)
            until = fresh(a).paused_until
            assert until is not None
            lengths.append(int((until - timezone.now()).total_seconds()))
            clock.move_to(until + timedelta(seconds=1))  # the pause is over: it may claim again
        assert lengths == [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]
        message = factories.make_message(phone_list=alice_list)
        assert claim(a, message) is not None
        dispatch.report_message(device=a, message_id=message.public_id, status="sent")
        a = fresh(a)
        assert (a.paused_until, a.failures_in_a_row) == (None, 0)
        # The next failure starts again at 30 s.
        message = factories.make_message(phone_list=alice_list)
        assert claim(a, message) is not None
        fail(a, message)
        assert fresh(a).paused_until == timezone.now() + timedelta(seconds=30)


def test_a_paused_phone_is_neither_offered_work_nor_may_claim_until_the_pause_ends(alice_list, phones):
    a = phones[0]
    with time_machine.travel(CURRENT_TIME, tick=False) as clock:
        first = factories.make_message(phone_list=alice_list)
        assert claim(a, first)
        fail(a, first)
        waiting = factories.make_message(phone_list=alice_list)
        assert dispatch.open_messages_for_device(device=fresh(a)) == []
        assert claim(a, waiting) is None
        assert dispatch.claim_next_messages(device=fresh(a)) == []
        clock.shift(timedelta(seconds=31))
        # Offered again once the pause is over, but never the message it failed.
        assert [m.public_id for m in dispatch.open_messages_for_device(device=fresh(a))] == [waiting.public_id]
        assert [m.public_id for m in dispatch.claim_next_messages(device=fresh(a))] == [waiting.public_id]


def test_the_devices_api_shows_the_pause(client, alice_key, alice_list, phones):
    _key, secret = alice_key
    with time_machine.travel(CURRENT_TIME, tick=False):
        message = factories.make_message(phone_list=alice_list)
        claim(phones[0], message)
        fail(phones[0], message)
        answer = client.get("/api/v1/devices", HTTP_AUTHORIZATION=f"Bearer {secret}").json()
    shown = {device["device_id"]: device for device in answer["devices"]}
    assert shown[phones[0].public_id]["paused_until"] == "2026-12-03T18:00:30Z"
    assert shown[phones[1].public_id]["paused_until"] is None


# --- Races (PostgreSQL) ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_report_racing_other_phones_claims_never_yields_two_senders(postgres_only):
    """A holds each message and reports it failed (phone-side) while B, C and D keep
    claiming it: at most one of them wins, A never again, and nothing is refunded."""
    account = factories.make_account(credit=1000)
    phone_list = factories.make_list(account=account)
    a, *others = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")[0] for n in range(4)]
    rounds = 60
    messages = [factories.make_message(phone_list=phone_list) for _ in range(rounds)]
    for message in messages:
        assert claim(a, message) is not None
        Device.objects.filter(pk=a.pk).update(paused_until=None)
    barrier = threading.Barrier(1 + len(others))
    wins: list[tuple[str, int]] = []
    lock = threading.Lock()

    def report_failures() -> None:
        try:
            device = fresh(a)
            for message in messages:
                barrier.wait()
                fail(device, message)
        finally:
            connection.close()

    def keep_claiming(phone: Device) -> None:
        try:
            device = fresh(phone)
            for message in messages:
                barrier.wait()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if dispatch.claim_message(device=device, message_id=message.public_id) is not None:
                        with lock:
                            wins.append((message.public_id, phone.pk))
                        break
                    if Message.objects.filter(pk=message.pk, status="assigned").exclude(device=a).exists():
                        break
        finally:
            connection.close()

    threads = [threading.Thread(target=report_failures)]
    threads += [threading.Thread(target=keep_claiming, args=(phone,)) for phone in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = Counter(message_id for message_id, _ in wins)
    assert max(winners.values()) == 1  # never two senders
    assert len(winners) == rounds  # each went to exactly one other phone
    for message in messages:
        message.refresh_from_db()
        assert message.status == "assigned" and message.device_id != a.pk
        assert MessageEvent.objects.filter(message=message, status="assigned").count() == 2
    assert not LedgerEntry.objects.filter(kind="refund").exists()
