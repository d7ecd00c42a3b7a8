"""The one scheduler per process that looks after its phone connections (devices/fleet.py):
idle phones cost it no statement of their own, it keeps presence fresh for every phone
heard from, and a pass over many phones does not hold the event loop."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices import fleet as fleet_module
from devices import services
from devices.fleet import FleetScheduler
from devices.models import PRESENCE_TTL, Device
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(eq=False)
class Held:
    """A phone's connection as the scheduler sees it (devices.consumers.DeviceConsumer)."""

    device: Device
    channel_name: str
    available: bool = True
    closed: bool = False
    last_frame_at: datetime = field(default_factory=timezone.now)
    last_presence_write: datetime = field(default_factory=timezone.now)
    closed_with: int | None = None
    offered: int = 0

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed, self.closed_with = True, code  # type: ignore[assignment]

    async def join_groups(self) -> None:
        return None

    async def offer_open_work(self) -> None:
        self.offered += 1

    def caps_changed(self) -> None:
        return None

    def may_take_work(self) -> bool:
        return self.available and not self.closed


def no_open_work(lists: set[int], devices: set[int]) -> tuple[set[int], set[int]]:
    return set(), set()


@database_sync_to_async
def make_phones(phone_list, count: int) -> list[Held]:
    held = []
    for n in range(count):
        device = factories.make_device(phone_list=phone_list, name=f"phone {n}")
        services.mark_connected(device_id=device.pk, channel_name=f"specific.{n}")
        device = Device.objects.select_related("phone_list").get(pk=device.pk)
        held.append(Held(device=device, channel_name=f"specific.{n}"))
    return held


class Counted:
    """The scheduler's database side in a thread of its own, counting its statements."""

    def __init__(self, scheduler: FleetScheduler) -> None:
        self.passes: list[list[str]] = []

        def sweep(*args):
            with CaptureQueriesContext(connection) as queries:
                result = fleet_module._sweep(*args)
            self.passes.append([q["sql"] for q in queries.captured_queries])
            return result

        scheduler.sweep_call = database_sync_to_async(sweep)


async def test_a_pass_runs_the_same_few_statements_for_ten_idle_phones_as_for_two_hundred(alice_list, bob_list):
    counts = []
    for phones, phone_list in ((10, alice_list), (200, bob_list)):
        scheduler = FleetScheduler(open_work=no_open_work)
        counted = Counted(scheduler)
        for held in await make_phones(phone_list, phones):
            held.last_presence_write = held.last_frame_at  # written already: nothing new to write
            scheduler.register(held)
        await scheduler.tick()
        counts.append(len(counted.passes[-1]))
        scheduler.held.clear()
    assert counts[0] == counts[1] <= 3  # which are enabled, their lists, online counts (no presence, no work)


async def test_a_pass_writes_presence_of_the_phones_heard_from_in_one_statement_and_not_of_the_silent(alice_list):
    """R26's other half: a phone's presence is refreshed only by a process that hears it."""
    scheduler = FleetScheduler(open_work=no_open_work)
    counted = Counted(scheduler)
    phones = await make_phones(alice_list, 30)
    for held in phones:
        scheduler.register(held)
    before = timezone.now() - timedelta(seconds=60)
    await database_sync_to_async(Device.objects.filter(pk__in=[h.device.pk for h in phones]).update)(
        last_seen_at=before
    )
    heard, silent = phones[:20], phones[20:]
    for held in heard:
        held.last_presence_write = before
        held.last_frame_at = timezone.now()
    for held in silent:
        held.last_frame_at = held.last_presence_write = before
    await scheduler.tick()
    assert len([sql for sql in counted.passes[-1] if sql.startswith("UPDATE")]) == 1
    seen = await database_sync_to_async(lambda: dict(Device.objects.values_list("pk", "last_seen_at")))()
    assert all(seen[h.device.pk] > before for h in heard)
    assert all(seen[h.device.pk] == before for h in silent)
    await scheduler.tick()  # nobody heard from since: no presence write
    assert not [sql for sql in counted.passes[-1] if sql.startswith("UPDATE")]


def test_a_pass_over_thousands_of_phones_runs_in_parts_of_a_quarter_thousand():
    assert fleet_module.PASS_PART_PHONES == 250
    assert [fleet_module.pass_parts(n) for n in (0, 1, 250, 251, 10_000)] == [1, 1, 1, 2, 40]
    assert fleet_module.pass_parts(10**6) == fleet_module.PASS_BUCKETS  # then the parts grow


async def test_a_part_finds_its_phones_in_its_buckets_without_walking_the_others(alice_list):
    """Part k of n is the buckets k modulo n: the phones whose id is k modulo n when n
    divides PASS_BUCKETS, and over n parts every bucket once when it does not."""
    phones = await make_phones(alice_list, 12)
    scheduler = FleetScheduler(open_work=no_open_work)
    for held in phones:
        scheduler.register(held)
    seen: list[set[int]] = []

    async def sweep(heard, held, list_ids, available, open_work):
        seen.append(set(held))
        return fleet_module.Sweep({pk: (None, None, None) for pk in held}, {}, {}, set(), set())

    scheduler.sweep_call = sweep
    for part in range(4):
        await scheduler.tick(part=part, parts=4)
    assert seen == [{h.device.pk for h in phones if h.device.pk % 4 == part} for part in range(4)]
    seen.clear()
    for part in range(7):  # 7 does not divide 240: buckets k, k + 7, … (ids modulo 240)
        await scheduler.tick(part=part, parts=7)
    expected = [{h.device.pk for h in phones if h.device.pk % fleet_module.PASS_BUCKETS % 7 == p} for p in range(7)]
    assert seen == expected
    assert set().union(*seen) == {h.device.pk for h in phones}
    scheduler.unregister(phones[0])
    assert all(phones[0] not in bucket for bucket in scheduler.buckets)


async def test_a_pass_in_parts_looks_at_its_part_only_and_every_phone_once_over_all_parts(alice_list, bob_list):
    """At 10,000 phones one pass over all of them spent up to 2 s in the database every 15 s
    and the claims made meanwhile waited: the pass runs in parts, one every tick / parts."""
    scheduler = FleetScheduler(open_work=no_open_work)
    counted = Counted(scheduler)
    phones = await make_phones(alice_list, 4) + await make_phones(bob_list, 4)
    long_ago = timezone.now() - timedelta(minutes=5)
    for held in phones:
        held.last_presence_write = long_ago  # every one due for a presence write
        scheduler.register(held)
    await database_sync_to_async(Device.objects.filter(pk__in=[h.device.pk for h in phones]).update)(
        last_seen_at=long_ago
    )

    async def written() -> set[int]:
        rows = await database_sync_to_async(lambda: list(Device.objects.values_list("pk", "last_seen_at")))()
        return {pk for pk, seen in rows if seen > long_ago}

    lists = {alice_list.pk, bob_list.pk}
    await scheduler.tick(part=0, parts=2)
    even = {h.device.pk for h in phones if h.device.pk % 2 == 0}
    assert await written() == even
    assert set(scheduler.lists) == lists  # held: both lists have phones here
    assert set(scheduler.online) == {pk for pk in lists if pk % 2 == 0}  # counted: the part's lists only
    await scheduler.tick(part=1, parts=2)
    assert await written() == {h.device.pk for h in phones}
    assert len(counted.passes) == 2
    assert set(scheduler.online) == lists
    await scheduler.tick(part=0, parts=2)  # the even list counted again, now that every phone has written
    assert scheduler.online == {alice_list.pk: 4, bob_list.pk: 4}
    # A list none of whose phones is held any more leaves the scheduler's lists.
    for held in phones[4:]:
        scheduler.unregister(held)
    await scheduler.tick(part=0, parts=2)
    assert set(scheduler.lists) == {alice_list.pk} and bob_list.pk not in scheduler.online


async def test_groups_are_renewed_by_every_part_of_the_pass_that_falls_due(alice_list, monkeypatch):
    """With a channel layer whose memberships expire, each phone re-joins its groups once
    an hour: in parts, each part's pass renews its own phones."""
    scheduler = FleetScheduler(open_work=no_open_work)
    phones = await make_phones(alice_list, 6)
    joined: list[int] = []
    for held in phones:
        held.join_groups = functools.partial(_count_join, joined, held)  # type: ignore[method-assign]
        scheduler.register(held)
    await scheduler.tick(part=0, parts=2)
    assert joined == []  # not due yet
    monkeypatch.setattr(scheduler, "groups_renewed", scheduler.groups_renewed - fleet_module.GROUP_RENEW_SECONDS - 1)
    await scheduler.tick(part=1, parts=2)
    await scheduler.tick(part=0, parts=2)
    assert sorted(joined) == sorted(h.device.pk for h in phones)  # both parts, each phone once
    await scheduler.tick(part=1, parts=2)
    assert len(joined) == len(phones)  # renewed: not again for an hour


async def _count_join(joined: list[int], held: Held) -> None:
    joined.append(held.device.pk)


async def test_a_phone_heard_from_is_written_again_only_once_its_last_write_is_half_the_ttl_old(alice_list):
    """At 10,000 phones rewriting every phone heard from on every pass was an UPDATE of
    thousands of rows each 15 s; each phone is rewritten once its write is
    `presence_refresh()` old, so it stays online (within the TTL) with a write every few passes."""
    assert fleet_module.presence_refresh() * 2 == PRESENCE_TTL
    scheduler = FleetScheduler(open_work=no_open_work)
    counted = Counted(scheduler)
    phones = await make_phones(alice_list, 3)
    for held in phones:
        scheduler.register(held)
    now = timezone.now()
    fresh, due, at_the_edge = phones
    fresh.last_presence_write = now - timedelta(seconds=20)
    due.last_presence_write = now - fleet_module.presence_refresh() - timedelta(seconds=1)
    at_the_edge.last_presence_write = now - PRESENCE_TTL + timedelta(seconds=5)
    for held in phones:
        held.last_frame_at = timezone.now()  # all three heard from since their last write
        await database_sync_to_async(Device.objects.filter(pk=held.device.pk).update)(
            last_seen_at=held.last_presence_write
        )
    await scheduler.tick()
    updates = [sql for sql in counted.passes[-1] if sql.startswith("UPDATE")]
    assert len(updates) == 1
    seen = await database_sync_to_async(lambda: dict(Device.objects.values_list("pk", "last_seen_at")))()
    assert seen[fresh.device.pk] == fresh.last_presence_write  # 20 s old: not yet
    assert seen[due.device.pk] > now and seen[at_the_edge.device.pk] > now
    online = await database_sync_to_async(lambda: set(Device.objects.online().values_list("pk", flat=True)))()
    assert online == {held.device.pk for held in phones}  # the one not rewritten is still online


async def test_a_pass_closes_silent_and_disabled_phones_and_offers_work_only_to_lists_that_have_some(alice_list):
    phones = await make_phones(alice_list, 3)
    quiet, disabled, busy = phones
    scheduler = FleetScheduler(open_work=lambda lists, devices: ({alice_list.pk}, set()))
    for held in phones:
        scheduler.register(held)
    quiet.last_frame_at = timezone.now() - timedelta(hours=1)
    await database_sync_to_async(Device.objects.filter(pk=disabled.device.pk).update)(is_enabled=False)
    await scheduler.tick()
    assert quiet.closed_with == services.CLOSE_IDLE and disabled.closed_with == services.CLOSE_DISABLED
    assert busy.offered == 1 and not busy.closed
    assert scheduler.held == {busy}


async def test_a_pass_over_many_phones_lets_the_event_loop_run_other_work_in_between(alice_list, monkeypatch):
    monkeypatch.setattr(fleet_module, "PASS_SLICE", 5)
    phones = await make_phones(alice_list, 40)
    scheduler = FleetScheduler(open_work=no_open_work)
    for held in phones:
        scheduler.register(held)

    async def sweep(heard, held, list_ids, available, open_work):  # the database side answered at once
        caps: dict[int, tuple[int | None, ...]] = {pk: (None, None, None) for pk in held}
        return fleet_module.Sweep(caps, {}, {}, set(), set())

    scheduler.sweep_call = sweep
    turns = 0
    done = False

    async def other_work():
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    turns = 0
    await scheduler.tick()
    done = True
    await other
    assert turns >= 40 // 5  # at least once per slice of the idle check and of the apply


async def test_a_list_changed_in_the_database_is_changed_in_place_for_all_its_phones_by_its_part(alice_list):
    """The part whose id a list's falls in reads it as a row and changes the one instance its
    phones share; a list whose caps changed tells every phone of it, whatever its part."""
    phones = await make_phones(alice_list, 4)
    scheduler = FleetScheduler(open_work=no_open_work)
    told: list[int] = []
    for held in phones:
        held.caps_changed = functools.partial(told.append, held.device.pk)  # type: ignore[method-assign]
        scheduler.register(held)
    shared = scheduler.lists[alice_list.pk]
    assert all(held.device.phone_list is shared for held in phones)
    mine, other = alice_list.pk % 2, 1 - alice_list.pk % 2
    await scheduler.tick(part=mine, parts=2)
    assert told == []  # nothing changed
    await database_sync_to_async(type(alice_list).objects.filter(pk=alice_list.pk).update)(
        rate_limit_per_minute=3, name="Renamed"
    )
    await scheduler.tick(part=other, parts=2)
    assert shared.rate_limit_per_minute is None  # not this part's list
    await scheduler.tick(part=mine, parts=2)
    assert scheduler.lists[alice_list.pk] is shared
    assert (shared.rate_limit_per_minute, shared.name) == (3, "Renamed")
    assert sorted(told) == sorted(held.device.pk for held in phones)  # every phone, each once
    await database_sync_to_async(type(alice_list).objects.filter(pk=alice_list.pk).update)(name="Again")
    await scheduler.tick(part=mine, parts=2)
    assert shared.name == "Again" and len(told) == len(phones)  # not its caps: nobody told


async def test_open_work_of_a_list_is_offered_to_its_available_phones_in_every_part(alice_list):
    phones = await make_phones(alice_list, 4)
    phones[0].available = False
    scheduler = FleetScheduler(open_work=lambda lists, devices: (lists, set()))
    for held in phones:
        scheduler.register(held)
    await scheduler.tick(part=1 - alice_list.pk % 2, parts=2)
    assert [held.offered for held in phones] == [0, 0, 0, 0]  # the list is not this part's
    await scheduler.tick(part=alice_list.pk % 2, parts=2)
    assert [held.offered for held in phones] == [0, 1, 1, 1]


async def test_pinned_work_is_offered_by_the_part_of_its_phone(alice_list):
    phones = await make_phones(alice_list, 2)
    pinned = phones[0].device.pk
    scheduler = FleetScheduler(open_work=lambda lists, devices: (set(), devices & {pinned}))
    for held in phones:
        scheduler.register(held)
    await scheduler.tick(part=(pinned + 1) % 2, parts=2)
    await scheduler.tick(part=pinned % 2, parts=2)
    assert [held.offered for held in phones] == [1, 0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="HOT updates are PostgreSQL's")
def test_presence_writes_are_hot_updates_that_write_no_index(alice_list):
    """Every connected phone's row is rewritten every 37.5 s: `last_seen_at` is in no index
    and the table leaves room in its pages (migration 0005), so each write stays in its page
    and adds no index entry (pg_stat_xact_user_tables counts the transaction's updates)."""
    phones = [factories.make_device(phone_list=alice_list, name=f"p{n}") for n in range(40)]
    for n, device in enumerate(phones):
        services.mark_connected(device_id=device.pk, channel_name=f"specific.{n}")

    def counts() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
                [Device._meta.db_table],
            )
            return cursor.fetchone()

    hot_writes = []
    for _ in range(4):  # as the passes do, each write its own transaction
        with transaction.atomic():
            updated, hot = counts()
            services.touch_devices([(device.pk, f"specific.{n}") for n, device in enumerate(phones)])
            after = counts()
        assert after[0] == updated + 40
        hot_writes.append(after[1] - hot)
    # Once the page holds no more versions left by the phones' creation and connects (its
    # first writes prune them), every write is HOT; with `last_seen_at` indexed, none is.
    assert hot_writes[-2:] == [40, 40], hot_writes
