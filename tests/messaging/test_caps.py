"""Caps: how many messages one phone may be given per minute, hour and day (its list's, or
its own), counted over sliding windows of its assignments."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from devices.models import Device, PhoneList
from messaging.models import Message, MessageEvent
from messaging.services import dispatch
from tests import factories

CURRENT_TIME = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def set_caps(target: PhoneList | Device, **caps: int | None) -> None:
    for name, value in caps.items():
        setattr(target, f"rate_limit_per_{name}", value)
    target.save(update_fields=[f"rate_limit_per_{name}" for name in caps])


def fresh(device: Device) -> Device:
    return Device.objects.select_related("phone_list").get(pk=device.pk)


def claim(device: Device, message: Message) -> dispatch.ClaimResult:
    return dispatch.claim_for_phone(device=fresh(device), message_id=message.public_id)


def past_assignments(device: Device, *, count: int, at: datetime) -> None:
    """`count` assignments of the phone at `at`, as the timeline stores them."""
    for _ in range(count):
        message = factories.make_message(phone_list=device.phone_list, status=Message.Status.SENT, device=device)
        MessageEvent.objects.create(message=message, status="assigned", device=device, at=at)


def test_a_phone_at_its_hour_cap_cannot_claim_until_its_oldest_assignment_leaves_the_hour(alice_list):
    set_caps(alice_list, hour=2)
    phone, _ = factories.make_enrolled_device(phone_list=alice_list)
    with time_machine.travel(CURRENT_TIME, tick=False):
        messages = [factories.make_message(phone_list=alice_list, ttl=timedelta(days=1)) for _ in range(3)]
        assert claim(phone, messages[0]).capped_until is None
    with time_machine.travel(CURRENT_TIME + timedelta(minutes=10), tick=False):
        last_room = claim(phone, messages[1])
        # The second took its last room: at the cap until the first leaves the window.
        assert last_room.message is not None
        assert last_room.capped_until == CURRENT_TIME + timedelta(hours=1)
        refused = claim(phone, messages[2])
        assert (refused.message, refused.capped_until) == (None, CURRENT_TIME + timedelta(hours=1))
    with time_machine.travel(CURRENT_TIME + timedelta(minutes=59, seconds=59), tick=False):
        assert claim(phone, messages[2]).message is None
    with time_machine.travel(CURRENT_TIME + timedelta(hours=1, seconds=1), tick=False):
        assert claim(phone, messages[2]).message is not None


def test_the_day_cap_counts_the_whole_day_and_the_minute_cap_only_the_minute(alice_list):
    set_caps(alice_list, minute=2, day=5)
    phone, _ = factories.make_enrolled_device(phone_list=alice_list)
    with time_machine.travel(CURRENT_TIME, tick=False):
        past_assignments(phone, count=4, at=CURRENT_TIME - timedelta(hours=20))
        past_assignments(phone, count=3, at=CURRENT_TIME - timedelta(hours=25))  # yesterday: not counted
        first, second = (factories.make_message(phone_list=alice_list) for _ in range(2))
        assert dispatch.cap_use(device_id=phone.pk, now=CURRENT_TIME) == {"minute": 0, "hour": 0, "day": 4}
        won = claim(phone, first)
        assert won.message is not None
        assert won.capped_until == CURRENT_TIME + timedelta(hours=4)  # the oldest of the day slides out
        assert claim(phone, second).message is None


def test_a_phones_own_cap_replaces_its_lists(alice_list):
    set_caps(alice_list, hour=1)
    strict, _ = factories.make_enrolled_device(phone_list=alice_list, name="strict")
    generous, _ = factories.make_enrolled_device(phone_list=alice_list, name="generous")
    set_caps(generous, hour=3)
    set_caps(strict, minute=1)  # its own minute cap; the list's hour cap still applies
    assert fresh(strict).caps == {"minute": 1, "hour": 1, "day": None}
    assert fresh(generous).caps == {"minute": None, "hour": 3, "day": None}
    messages = [factories.make_message(phone_list=alice_list) for _ in range(5)]
    assert [claim(strict, m).message is not None for m in messages[:2]] == [True, False]
    assert [claim(generous, m).message is not None for m in messages[1:5]] == [True, True, True, False]


def test_an_assignment_still_counts_for_the_phone_after_the_message_moved_to_another(alice_list):
    set_caps(alice_list, hour=1)
    first, _ = factories.make_enrolled_device(phone_list=alice_list, name="first")
    second, _ = factories.make_enrolled_device(phone_list=alice_list, name="second")
    message = factories.make_message(phone_list=alice_list)
    assert claim(first, message).message is not None
    # Its lease lapsed and the other phone took it: the first phone did use its SIM's room.
    Message.objects.filter(pk=message.pk).update(status="queued", lease_expires_at=None)
    assert claim(second, message).message is not None
    assert Message.objects.filter(device=first).count() == 0
    assert claim(first, factories.make_message(phone_list=alice_list)).message is None


def test_a_claim_of_a_phone_without_caps_is_still_one_statement(alice_list, django_assert_num_queries):
    phone, _ = factories.make_enrolled_device(phone_list=alice_list)
    message = factories.make_message(phone_list=alice_list)
    phone = fresh(phone)
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 4):
        assert dispatch.claim_for_phone(device=phone, message_id=message.public_id).message is not None


def test_a_poll_claims_its_fair_share_of_the_open_messages(alice_list):
    polling, _ = factories.make_enrolled_device(phone_list=alice_list, name="polling")
    for name in ("other 1", "other 2"):
        factories.make_device(phone_list=alice_list, name=name, online=True)
    Device.objects.filter(pk=polling.pk).update(is_connected=True, last_seen_at=datetime.now(UTC))
    for _ in range(7):
        factories.make_message(phone_list=alice_list)
    # Three phones online and available: ceil(7 / 3) = 3 now, then ceil(4 / 3) = 2.
    assert len(dispatch.claim_next_messages(device=fresh(polling), limit=10)) == 3
    assert len(dispatch.claim_next_messages(device=fresh(polling), limit=10)) == 3 + 2  # held ones again, plus 2


def test_a_poll_claims_no_more_than_the_room_its_caps_leave(alice_list):
    set_caps(alice_list, hour=2)
    polling, _ = factories.make_enrolled_device(phone_list=alice_list)
    for _ in range(5):
        factories.make_message(phone_list=alice_list)
    assert len(dispatch.claim_next_messages(device=fresh(polling), limit=10)) == 2
    assert Message.objects.filter(status="queued").count() == 3


# --- Concurrent claims on PostgreSQL -------------------------------------------------------


def race(phone: Device, messages: list[str]) -> list[str]:
    """Every message claimed by the phone at once, one thread (and connection) each; the won."""
    barrier = threading.Barrier(len(messages))

    def one(message_id: str) -> bool:
        device = fresh(phone)
        try:
            barrier.wait()
            return dispatch.claim_message(device=device, message_id=message_id) is not None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(messages)) as pool:
        return [m for m, won in zip(messages, pool.map(one, messages), strict=True) if won]


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_pass_the_hour_cap_by_even_one(postgres_only):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    set_caps(phone_list, hour=5)
    phone, _ = factories.make_enrolled_device(phone_list=phone_list)
    past_assignments(phone, count=2, at=datetime.now(UTC) - timedelta(minutes=30))
    messages = [factories.make_message(phone_list=phone_list, cost=0).public_id for _ in range(16)]
    assert len(race(phone, messages)) == 3
    assert dispatch.cap_use(device_id=phone.pk, now=datetime.now(UTC))["hour"] == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_pass_a_phones_own_day_cap_by_even_one(postgres_only):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    set_caps(phone_list, day=100, hour=50)
    phone, _ = factories.make_enrolled_device(phone_list=phone_list)
    set_caps(phone, day=6)
    past_assignments(phone, count=4, at=datetime.now(UTC) - timedelta(hours=10))
    messages = [factories.make_message(phone_list=phone_list, cost=0).public_id for _ in range(16)]
    assert len(race(phone, messages)) == 2
    assert dispatch.cap_use(device_id=phone.pk, now=datetime.now(UTC))["day"] == 6


@pytest.mark.parametrize("where", ["list", "phone"])
def test_a_cap_set_after_the_connection_read_the_phone_is_never_passed(alice_list, where):
    """A connection holds the phone as it read it (no caps) until the fleet's next tick; a
    cap set meanwhile must still hold: the uncapped claim checks that none appeared."""
    phone, _ = factories.make_enrolled_device(phone_list=alice_list)
    as_connected = fresh(phone)  # what the phone's connection holds: no caps
    assert not dispatch.may_be_capped(as_connected)
    with time_machine.travel(CURRENT_TIME, tick=False):
        past_assignments(phone, count=2, at=CURRENT_TIME - timedelta(minutes=30))
        set_caps(alice_list if where == "list" else phone, hour=2)
        message = factories.make_message(phone_list=alice_list)
        refused = dispatch.claim_for_phone(device=as_connected, message_id=message.public_id)
        assert refused.message is None
        message.refresh_from_db()
        assert message.status == Message.Status.QUEUED
        # Read again (the tick), the phone is seen at its cap, with when it has room again.
        assert claim(phone, message).capped_until == CURRENT_TIME + timedelta(minutes=30)
        set_caps(alice_list if where == "list" else phone, hour=3)
        assert claim(phone, message).message is not None


def test_an_uncapped_phone_still_claims_in_one_statement(alice_list, django_assert_num_queries, postgres_only):
    phone = fresh(factories.make_enrolled_device(phone_list=alice_list)[0])
    message = factories.make_message(phone_list=alice_list)
    with django_assert_num_queries(1):  # the claim, its timeline row and the "no caps" check
        assert dispatch.claim_for_phone(device=phone, message_id=message.public_id).message is not None
