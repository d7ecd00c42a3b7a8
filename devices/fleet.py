"""One scheduler per server process for the phone connections it holds.

Each connection used to run its own timer: every `DEVICE_TICK_SECONDS` it re-read its
phone, wrote its presence, re-joined its groups and asked for its open work, and every
frame after 15 s of silence wrote presence again. At 10,000 phones that was about 2,000
database statements a second before any message flowed (docs/benchmarks.md, "Soak").
Here one task per process does it for all of them, once per tick (above PASS_PART_PHONES
phones in parts, one part every tick / parts seconds, each over the phones and the lists
whose id falls in it, so the database work of 10,000 phones does not land on the claims all
at once):

- closes the connections silent for longer than `DEVICE_IDLE_SECONDS` (no database);
- writes presence for every phone heard from since its last write, once that write is
  `presence_refresh()` old (half the presence TTL), in one UPDATE;
- reads which of the held phones are still enabled, with their own caps (one SELECT), and
  closes the others;
- reads the held phones' lists as rows (one SELECT) and changes the one instance of each
  that their connections share where it differs, and counts their phones online and
  available in every process (one SELECT; the claim rounds' pace between processes,
  devices/rounds.py);
- asks once which lists and pinned phones have open work (the `open_work` function the
  consumer module gives it: that question is messaging's) and has only those phones read it.

Its statements are written by hand, bind each id list as one parameter (accounts/rawsql.py)
and read tuples, not models: the ORM thread that runs them shares the interpreter lock with
the event loop, and the Python they cost was the claims' wait (built by the ORM, 6-7 ms of
Python a part of 250 phones; by hand, 2 ms).

Connections register when they are accepted and leave when they close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from devices import services
from devices.consumer_base import orm
from devices.lib.gc_policy import policy as gc_policy
from devices.models import CAP_FIELDS, PRESENCE_TTL, Device, PhoneList

logger = logging.getLogger(__name__)

# Group membership does not expire in Phonefleet's channel layer; with a layer whose
# memberships do (group_expiry, R28) they are renewed this often.
GROUP_RENEW_SECONDS = 3600.0
# Connections a pass looks at between two returns to the event loop: a pass over 10,000
# phones (about 0.15 s of Python) must not hold back every phone's frames for its length.
PASS_SLICE = 500


# A process holding more phones than this runs its pass in parts, one every tick / parts
# seconds, each over the phones and lists whose id falls in it. At 10,000 phones one pass
# over all of them every 15 s spent 0.8-2.1 s in the database and the claims made meanwhile
# waited up to 0.6 s, the whole dispatch p99 of the soak; in parts of 1,000 each part still
# held the claims up to 150 ms (p99 77-80 ms); in parts of 250, 15-30 ms (p99 21-78 ms over
# twelve runs, docs/benchmarks.md, "10,000 phones on one Daphne", the night session). Each
# phone and list is still looked at once a tick.
PASS_PART_PHONES = 250
# The held connections are kept in this many buckets by phone id: part k of n is the
# buckets whose number is k modulo n (phones whose id is k modulo n, when n divides it), so
# a part's pass finds its phones without walking all of them. Parts beyond it grow instead.
PASS_BUCKETS = 240


def pass_parts(held: int) -> int:
    """In how many parts a pass over `held` phones runs (one up to PASS_PART_PHONES)."""
    return min(PASS_BUCKETS, max(1, math.ceil(held / PASS_PART_PHONES)))


def presence_refresh() -> timedelta:
    """How old a phone's presence write is before a pass writes it again (if the phone was
    heard from since): half the presence TTL, or 2.5 passes if that is sooner. With the
    default 15 s pass, every third pass, and never older than 45 s plus a pass's delay
    against the 75 s TTL. Every pass used to write every phone heard from: at 10,000 phones
    an UPDATE of about 8,000 rows (every index of the phones' table written, `last_seen_at`
    being in two) took 0.4-0.5 s of PostgreSQL each 15 s, and the claims made meanwhile
    waited up to 0.6 s (bench/soak.py, docs/benchmarks.md). Now a pass writes about a third
    of them, spread over the passes by when each was last written."""
    return min(PRESENCE_TTL / 2, timedelta(seconds=2.5 * settings.DEVICE_TICK_SECONDS))


class HeldConnection(Protocol):
    """What the scheduler needs of a phone's connection (devices.consumers.DeviceConsumer)."""

    device: Device
    channel_name: str
    available: bool
    closed: bool
    last_presence_write: datetime

    @property
    def last_frame_at(self) -> datetime: ...

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None: ...

    async def join_groups(self) -> None: ...

    async def offer_open_work(self) -> None: ...

    async def send_offer(self, text: str) -> None: ...

    def caps_changed(self) -> None: ...

    def may_take_work(self) -> bool: ...


# (list ids, device ids) of available phones → (lists with open work, pinned phones with open work)
OpenWork = Callable[[set[int], set[int]], tuple[set[int], set[int]]]


@dataclass
class Sweep:
    """What one pass found in the database."""

    allowed: dict[int, tuple[int | None, ...]]  # the part's phones still enabled and not removed: their own caps
    lists: dict[int, tuple[Any, ...]]  # the part's lists as they are now (services.PHONE_LIST_COLUMNS)
    online: dict[int, int]  # of those lists: phones online and available, in every process
    work_lists: set[int]
    work_devices: set[int]


def _sweep(
    heard: list[tuple[int, str]],
    held: set[int],
    list_ids: set[int],
    available: tuple[set[int], set[int]],
    open_work: OpenWork,
) -> Sweep:
    """The database side of one pass, in one trip to an ORM thread."""
    services.touch_devices(heard)
    allowed = services.enabled_device_caps(held)
    lists = services.phone_list_rows(list_ids)
    online = services.available_phone_counts(list_ids)
    work_lists, work_devices = open_work(*available) if available[0] or available[1] else (set(), set())
    return Sweep(allowed, lists, online, work_lists, work_devices)


def _caps(holder: Device | PhoneList) -> tuple[int | None, ...]:
    """A phone's own caps, or a list's (per minute, hour, day; None where none is set)."""
    return tuple(getattr(holder, name) for name in CAP_FIELDS.values())


def _refresh(phone_list: PhoneList, row: tuple[Any, ...]) -> bool:
    """Brings a held list up to its row (services.PHONE_LIST_COLUMNS); whether its caps changed."""
    if tuple(getattr(phone_list, name) for name in services.PHONE_LIST_COLUMNS) == row:
        return False
    caps = _caps(phone_list)
    for name, value in zip(services.PHONE_LIST_COLUMNS, row, strict=True):
        setattr(phone_list, name, value)
    return _caps(phone_list) != caps


class FleetScheduler:
    """The process's phone connections and the one task that looks after them."""

    def __init__(self, open_work: OpenWork) -> None:
        self.open_work = open_work
        self.held: set[HeldConnection] = set()
        # The held connections by list (the claim rounds ask which phones of a list are here).
        self.by_list: dict[int, set[HeldConnection]] = {}
        # The held connections by phone id modulo PASS_BUCKETS (a pass in parts reads these).
        self.buckets: list[set[HeldConnection]] = [set() for _ in range(PASS_BUCKETS)]
        # One instance of each list the held phones are in, shared by their connections.
        self.lists: dict[int, PhoneList] = {}
        # Phones online and available per list, in every process (as of the last pass).
        self.online: dict[int, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.groups_renewed = time.monotonic()
        self.renew_parts = 0  # passes still to renew their phones' groups (one per part)
        self.sweep_call: Callable[..., Awaitable[Sweep]] = orm(_sweep)

    def register(self, connection: HeldConnection) -> None:
        device = connection.device
        device.phone_list = self.lists.setdefault(device.phone_list_id, device.phone_list)
        self.held.add(connection)
        self.buckets[device.pk % PASS_BUCKETS].add(connection)
        self.by_list.setdefault(device.phone_list_id, set()).add(connection)
        if settings.DEVICE_GC_FREEZE:
            gc_policy.start()
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run())

    def unregister(self, connection: HeldConnection) -> None:
        if connection in self.held:
            gc_policy.phone_left()
        self.held.discard(connection)
        self.buckets[connection.device.pk % PASS_BUCKETS].discard(connection)
        of_list = self.by_list.get(connection.device.phone_list_id)
        if of_list is not None:
            of_list.discard(connection)
            if not of_list:
                del self.by_list[connection.device.phone_list_id]

    def phones_of(self, phone_list_id: int) -> Iterable[HeldConnection]:
        """The held connections of phones of this list."""
        return self.by_list.get(phone_list_id, ())

    def phones_online(self, phone_list_id: int) -> int:
        """The list's phones online and available in every process, as of the last pass."""
        return self.online.get(phone_list_id, 0)

    async def _run(self) -> None:
        part = 0
        while self.held:
            parts = pass_parts(len(self.held))
            await asyncio.sleep(settings.DEVICE_TICK_SECONDS / parts)
            part %= parts
            try:
                await self.tick(part=part, parts=parts)
            except Exception:
                logger.exception("phone connections: periodic check failed")
            gc_policy.after_pass(len(self.held))
            part += 1

    async def tick(self, *, part: int = 0, parts: int = 1) -> None:
        """One pass over the held connections of phones in the buckets `part` modulo `parts`
        (whose id is `part` modulo `parts` when `parts` divides PASS_BUCKETS), and over the
        held phones' lists whose id is (everything by default; see the module docstring and
        `pass_parts`)."""
        started = time.monotonic()
        now = timezone.now()
        idle_before = now - timedelta(seconds=settings.DEVICE_IDLE_SECONDS)
        live = []
        if parts == 1:
            mine = list(self.held)
        else:
            mine = [c for bucket in range(part, PASS_BUCKETS, parts) for c in self.buckets[bucket]]
        for n, connection in enumerate(mine, 1):
            if n % PASS_SLICE == 0:
                await asyncio.sleep(0)
            if connection.closed:
                continue
            if connection.last_frame_at < idle_before:
                await self._close(connection, services.CLOSE_IDLE)
            else:
                live.append(connection)
        heard = []
        refresh_before = now - presence_refresh()
        for n, connection in enumerate(live, 1):
            if n % PASS_SLICE == 0:
                await asyncio.sleep(0)
            written = connection.last_presence_write
            if written <= refresh_before and connection.last_frame_at > written:
                connection.last_presence_write = now
                heard.append((connection.device.pk, connection.channel_name))
        list_ids = {pk for pk in self.by_list if pk % parts == part}
        available_lists = {pk for pk in list_ids if any(c.available for c in self.by_list[pk])}
        swept = time.monotonic()
        sweep = await self.sweep_call(
            heard,
            {c.device.pk for c in live},
            list_ids,
            (available_lists, {c.device.pk for c in live if c.available}),
            self.open_work,
        )
        applied = time.monotonic()
        await self._apply(live, list_ids, sweep, parts=parts)
        done = time.monotonic()
        logger.debug(
            "pass over %d phones (%d presence writes) and %d lists: %.0f ms here, %.0f ms in the database, "
            "%.0f ms applying",
            len(live),
            len(heard),
            len(list_ids),
            (swept - started) * 1000,
            (applied - swept) * 1000,
            (done - applied) * 1000,
        )

    async def _apply(self, live: list[HeldConnection], list_ids: set[int], sweep: Sweep, *, parts: int) -> None:
        # The part's lists, brought up to date in place: their phones share them (`register`).
        recapped = set()
        for pk in list_ids:
            row, held_list = sweep.lists.get(pk), self.lists.get(pk)
            if row is not None and held_list is not None and _refresh(held_list, row):
                recapped.add(pk)
            self.online[pk] = sweep.online.get(pk, 0)
        for pk in [pk for pk in self.lists if pk not in self.by_list]:  # no phone of it held any more
            del self.lists[pk]
        for pk in [pk for pk in self.online if pk not in self.by_list]:
            del self.online[pk]
        if not self.renew_parts and time.monotonic() - self.groups_renewed > GROUP_RENEW_SECONDS:
            self.groups_renewed, self.renew_parts = time.monotonic(), parts  # the next `parts` passes
        renew = self.renew_parts > 0
        if renew:
            self.renew_parts -= 1
        for n, connection in enumerate(live, 1):
            if n % PASS_SLICE == 0:
                await asyncio.sleep(0)
            if connection.closed:
                continue
            device = connection.device
            own_caps = sweep.allowed.get(device.pk)
            if own_caps is None:
                await self._close(connection, services.CLOSE_DISABLED)
                continue
            if own_caps != _caps(device):
                for name, value in zip(CAP_FIELDS.values(), own_caps, strict=True):
                    setattr(device, name, value)
                connection.caps_changed()
            if renew:
                await connection.join_groups()
        for pk in recapped:  # a list's caps apply to its phones that have none of their own
            for connection in list(self.by_list.get(pk, ())):
                connection.caps_changed()
        # Open work: the part's lists' available phones, and the part's phones with pinned work.
        waiting = [c for pk in sweep.work_lists for c in self.by_list.get(pk, ())]
        waiting += [c for c in live if c.device.pk in sweep.work_devices]
        offered: set[HeldConnection] = set()
        for connection in waiting:
            if connection.available and not connection.closed and connection not in offered:
                offered.add(connection)
                await self._offer(connection)

    async def _offer(self, connection: HeldConnection) -> None:
        try:
            await connection.offer_open_work()
        except Exception:
            logger.exception("device %s: offering open work failed", connection.device.public_id)

    async def _close(self, connection: HeldConnection, code: int) -> None:
        self.unregister(connection)
        with contextlib.suppress(Exception):  # already going
            await connection.close(code=code)
