"""Claiming: exactly one phone is assigned each message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone

from config.asgi import application
from devices import consumers
from devices.models import Device
from devices.rounds import ClaimRounds
from messaging import selectors
from messaging.models import Message, MessageEvent
from messaging.services import dispatch, offers
from tests import factories


def connect(token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])


async def claim_answer(ws: WebsocketCommunicator) -> dict:
    """The answer to a claim; offers of the same work may come in between (connect's own
    look at the open work can run after the message was stored: a harmless repeat)."""
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] == "offer":
        frame = await ws.receive_json_from(timeout=5)
    return frame


@pytest.fixture
def two_phones(alice_list):
    return [factories.make_enrolled_device(phone_list=alice_list, name=name) for name in ("A", "B")]


def test_the_first_claim_wins_and_the_second_gets_nothing(alice_list, two_phones):
    (a, _), (b, _) = two_phones
    message = factories.make_message(phone_list=alice_list)
    won = dispatch.claim_message(device=a, message_id=message.public_id)
    assert won is not None and won.pk == message.pk
    assert dispatch.claim_message(device=b, message_id=message.public_id) is None
    message.refresh_from_db()
    assert (message.status, message.device_id, message.attempts) == ("assigned", a.pk, 1)
    assert message.assigned_at is not None
    assert message.lease_expires_at == message.assigned_at + timedelta(seconds=alice_list.lease_seconds)
    assert list(message.events.values_list("status", "device")) == [("assigned", a.pk)]


def test_a_claim_takes_a_fixed_number_of_queries(alice_list, two_phones, django_assert_num_queries):
    (a, _), _ = two_phones
    message = factories.make_message(phone_list=alice_list)
    a = Device.objects.select_related("phone_list").get(pk=a.pk)
    # PostgreSQL: one statement (UPDATE … RETURNING the assign frame's fields, and the
    # timeline INSERT). SQLite: savepoint, UPDATE, INSERT, release.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 4):
        assert dispatch.claim_message(device=a, message_id=message.public_id) is not None


def test_a_rate_limited_claim_locks_the_phone_and_counts_first(alice_list, two_phones, django_assert_num_queries):
    (a, _), _ = two_phones
    alice_list.rate_limit_per_minute = 5
    alice_list.save(update_fields=["rate_limit_per_minute"])
    message = factories.make_message(phone_list=alice_list)
    a = Device.objects.select_related("phone_list").get(pk=a.pk)
    # In a transaction (a savepoint here): the phone's row lock (SELECT … FOR UPDATE), the
    # count of its recent assignments, then the claim (SQLite: with its own savepoint).
    budget = 5 if connection.vendor == "postgresql" else 8
    with django_assert_num_queries(budget) as captured:
        assert dispatch.claim_message(device=a, message_id=message.public_id) is not None
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in captured.captured_queries[1]["sql"]


def test_a_phone_of_another_list_cannot_claim(alice_list, bob_list):
    intruder, _ = factories.make_enrolled_device(phone_list=bob_list)
    message = factories.make_message(phone_list=alice_list)
    assert dispatch.claim_message(device=intruder, message_id=message.public_id) is None


def test_a_pinned_message_goes_only_to_its_phone(alice_list, two_phones):
    (a, _), (b, _) = two_phones
    message = factories.make_message(pinned_device=b)
    assert dispatch.open_messages_for_device(device=a) == []
    assert dispatch.claim_message(device=a, message_id=message.public_id) is None
    assert [m.pk for m in dispatch.open_messages_for_device(device=b)] == [message.pk]
    assert dispatch.claim_message(device=b, message_id=message.public_id) is not None


def test_an_unavailable_or_disabled_phone_cannot_claim(alice_list, two_phones):
    (a, _), (b, _) = two_phones
    message = factories.make_message(phone_list=alice_list)
    Device.objects.filter(pk=a.pk).update(is_available=False)
    Device.objects.filter(pk=b.pk).update(is_enabled=False)
    assert dispatch.claim_message(device=a, message_id=message.public_id) is None
    assert dispatch.claim_message(device=b, message_id=message.public_id) is None
    Device.objects.filter(pk=a.pk).update(is_available=True)
    assert dispatch.claim_message(device=a, message_id=message.public_id) is not None


def test_a_phone_over_its_rate_limit_cannot_claim(alice_list, two_phones):
    (a, _), _ = two_phones
    alice_list.rate_limit_per_minute = 2
    alice_list.save(update_fields=["rate_limit_per_minute"])
    a.phone_list = alice_list
    messages = [factories.make_message(phone_list=alice_list) for _ in range(3)]
    results = [dispatch.claim_message(device=a, message_id=m.public_id) for m in messages]
    assert [r is not None for r in results] == [True, True, False]


def test_scheduled_and_expired_messages_cannot_be_claimed(alice_list, two_phones):
    (a, _), _ = two_phones
    later = factories.make_message(phone_list=alice_list, send_at=timezone.now() + timedelta(hours=1))
    gone = factories.make_message(phone_list=alice_list, ttl=timedelta(seconds=-1))
    assert dispatch.open_messages_for_device(device=a) == []
    assert dispatch.claim_message(device=a, message_id=later.public_id) is None
    assert dispatch.claim_message(device=a, message_id=gone.public_id) is None


def test_open_messages_are_listed_oldest_first(alice_list, two_phones):
    (a, _), _ = two_phones
    first = factories.make_message(phone_list=alice_list, send_at=timezone.now() - timedelta(minutes=2))
    second = factories.make_message(phone_list=alice_list, send_at=timezone.now() - timedelta(minutes=1))
    assert [m.pk for m in dispatch.open_messages_for_device(device=a)] == [first.pk, second.pk]


def test_the_open_work_statement_selects_what_the_queryset_does(alice_list, bob_list, two_phones):
    """`open_messages_for_device` is a hand-written statement (every phone connect runs it);
    each of its conditions against the ORM queryset it replaces, and the fields it loads."""
    (a, _), (b, _) = two_phones
    now = timezone.now()
    past = factories.make_message(phone_list=alice_list, send_at=now - timedelta(minutes=3), text="oldest")
    same_time = [factories.make_message(phone_list=alice_list, send_at=now - timedelta(minutes=2)) for _ in range(2)]
    pinned_to_a = factories.make_message(pinned_device=a)
    factories.make_message(pinned_device=b)  # pinned to the other phone
    factories.make_message(phone_list=bob_list)  # another list
    factories.make_message(phone_list=alice_list, send_at=now + timedelta(hours=1))  # not due
    factories.make_message(phone_list=alice_list, ttl=timedelta(seconds=-1))  # expired
    factories.make_message(phone_list=alice_list, status=Message.Status.ASSIGNED, device=b)  # taken
    failed_by_a = factories.make_message(phone_list=alice_list)
    MessageEvent.objects.create(message=failed_by_a, device=a, status="failed", at=now)

    def both(device: Device, limit: int = 100) -> tuple[list, list]:
        device = Device.objects.select_related("phone_list").get(pk=device.pk)
        statement = dispatch.open_messages_for_device(device=device, limit=limit)
        queryset = dispatch._open_messages_queryset(device=device, now=timezone.now())[:limit]
        assert [m.get_deferred_fields() for m in statement] == [m.get_deferred_fields() for m in queryset]

        def fields(m: Message) -> tuple:
            return (m.public_id, m.to, m.text, m.parts, m.sim, m.phone_list_id, m.pinned_device_id)

        assert [fields(m) for m in statement] == [fields(m) for m in queryset]
        return [m.pk for m in statement], [m.pk for m in queryset]

    got, expected = both(a)
    assert got == expected == [past.pk, *sorted(m.pk for m in same_time), pinned_to_a.pk]
    got, expected = both(b, limit=2)
    assert got == expected == [past.pk, same_time[0].pk]
    Device.objects.filter(pk=a.pk).update(paused_until=now + timedelta(minutes=1))
    assert both(a) == ([], [])


def test_the_fleets_open_work_question_finds_what_the_queryset_does(alice_list, bob_list, two_phones):
    """`selectors.lists_with_open_work` (hand-written, the fleet's pass asks it for every
    part) against the ORM: lists with queued, due, unexpired unpinned messages, and phones
    with such messages pinned to them."""
    (a, _), (b, _) = two_phones
    now = timezone.now()
    carol_list = factories.make_list(account=alice_list.account, name="Empty")
    factories.make_message(pinned_device=a)
    factories.make_message(phone_list=bob_list, send_at=now + timedelta(hours=1))  # not due
    factories.make_message(phone_list=bob_list, ttl=timedelta(seconds=-1))  # expired
    factories.make_message(phone_list=bob_list, status=Message.Status.ASSIGNED, device=b)  # taken
    factories.make_message(pinned_device=b, send_at=now + timedelta(hours=1))  # pinned, not due
    lists, devices = {alice_list.pk, bob_list.pk, carol_list.pk, 10**9}, {a.pk, b.pk, 10**9}

    def by_orm() -> tuple[set[int], set[int]]:
        waiting = Message.objects.filter(status=Message.Status.QUEUED, send_at__lte=timezone.now())
        waiting = waiting.filter(expires_at__gt=timezone.now())
        of_lists = waiting.filter(pinned_device__isnull=True, phone_list_id__in=lists)
        of_devices = waiting.filter(pinned_device_id__in=devices)
        return set(of_lists.values_list("phone_list_id", flat=True)), set(
            of_devices.values_list("pinned_device_id", flat=True)
        )

    assert selectors.lists_with_open_work(lists, devices) == by_orm() == (set(), {a.pk})
    factories.make_message(phone_list=alice_list)
    factories.make_message(phone_list=alice_list)
    assert selectors.lists_with_open_work(lists, devices) == by_orm() == ({alice_list.pk}, {a.pk})
    assert selectors.lists_with_open_work(set(), set()) == (set(), set())
    assert selectors.lists_with_open_work({bob_list.pk}, {b.pk}) == (set(), set())


def test_claim_next_messages_refetches_held_work_and_claims_new(alice_list, two_phones):
    (a, _), (b, _) = two_phones
    messages = [factories.make_message(phone_list=alice_list) for _ in range(3)]
    first = dispatch.claim_next_messages(device=a, limit=2)
    assert [m.pk for m in first] == [messages[0].pk, messages[1].pk]
    again = dispatch.claim_next_messages(device=a, limit=2)
    assert [m.pk for m in again] == [messages[0].pk, messages[1].pk]
    assert [m.pk for m in dispatch.claim_next_messages(device=b, limit=5)] == [messages[2].pk]
    assert MessageEvent.objects.filter(status="assigned").count() == 3


@pytest.mark.django_db(transaction=True)
async def test_two_phones_are_offered_a_message_and_only_one_is_assigned(alice_list, two_phones):
    (_, token_a), (_, token_b) = two_phones
    phones = [connect(token_a), connect(token_b)]
    for ws in phones:
        assert (await ws.connect())[0]
        assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    await database_sync_to_async(offers.offer_message)(message=message)
    for ws in phones:
        offer = await ws.receive_json_from(timeout=5)
        assert offer == {
            "type": "offer",
            "message_id": message.public_id,
            "to": message.to,
            "msg": "Hello",
            "parts": 1,
            "sim": None,
        }
    for ws in phones:
        await ws.send_json_to({"type": "claim", "message_id": message.public_id})
    answers = [await claim_answer(ws) for ws in phones]
    assert sorted(a["type"] for a in answers) == ["assign", "taken"]
    assign = next(a for a in answers if a["type"] == "assign")
    assert assign == {**offer, "type": "assign"}
    stored = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert stored.status == "assigned"
    for ws in phones:
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_phone_is_offered_the_queued_work_when_it_connects(alice_list, two_phones):
    (_, token), _ = two_phones
    older = await database_sync_to_async(factories.make_message)(phone_list=alice_list, text="first")
    newer = await database_sync_to_async(factories.make_message)(phone_list=alice_list, text="second")
    ws = connect(token)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    offered = [(await ws.receive_json_from(timeout=5))["message_id"] for _ in range(2)]
    assert offered == [older.public_id, newer.public_id]
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_phone_that_becomes_available_is_offered_open_work(alice_list, two_phones):
    (device, token), _ = two_phones
    await database_sync_to_async(lambda: Device.objects.filter(pk=device.pk).update(is_available=False))()
    ws = connect(token)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    assert await ws.receive_nothing()
    await ws.send_json_to({"type": "state", "available": True})
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_phone_gets_open_work_on_its_periodic_tick_without_any_hint(alice_list, two_phones, settings):
    (_, token), _ = two_phones
    settings.DEVICE_TICK_SECONDS = 0.05
    ws = connect(token)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    # Stored without any channel-layer offer, as if the hint had been lost.
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    await ws.disconnect()


@dataclass(eq=False)
class Phone:
    """A stand-in for a phone's connection in a claim round."""

    device: Device
    closed: bool = False
    available: bool = True

    def may_take_work(self) -> bool:
        return True

    async def send_offer(self, text: str) -> None:
        return None


def rounds_of(phones: list[Phone]) -> ClaimRounds:
    return ClaimRounds(try_claim=consumers._claim, phones_of=lambda list_id: phones)


@pytest.mark.django_db(transaction=True)
async def test_losing_claims_in_one_process_wait_for_the_round_instead_of_the_database(alice_list, monkeypatch):
    phones = [
        (await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list, name=f"P{n}"))[0]
        for n in range(5)
    ]
    phones = [await database_sync_to_async(Device.objects.select_related("phone_list").get)(pk=p.pk) for p in phones]
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    real_claim = dispatch.claim_for_phone
    database_claims = []

    def counting_claim(**kwargs):
        database_claims.append(kwargs["device"].pk)
        return real_claim(**kwargs)

    monkeypatch.setattr(dispatch, "claim_for_phone", counting_claim)
    connections = [Phone(p) for p in phones]
    rounds = rounds_of(connections)
    results = await asyncio.gather(*(rounds.claim(c, message.public_id) for c in connections))
    assert sum(r.message is not None for r in results) == 1
    assert len(database_claims) == 1
    assert (await rounds.claim(connections[0], message.public_id)).message is None  # remembered as taken
    assert len(database_claims) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_claim_in_a_round_that_cannot_win_lets_the_next_phone_try(alice_list):
    busy, _ = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list, name="busy")
    free, _ = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list, name="free")
    await database_sync_to_async(lambda: Device.objects.filter(pk=busy.pk).update(is_available=False))()
    busy, free = [
        await database_sync_to_async(Device.objects.select_related("phone_list").get)(pk=d.pk) for d in (busy, free)
    ]
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    connections = [Phone(busy), Phone(free)]
    rounds = rounds_of(connections)
    lost, won = await asyncio.gather(*(rounds.claim(c, message.public_id) for c in connections))
    assert lost.message is None and won.message is not None and won.message.pk == message.pk
