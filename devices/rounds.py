"""Who of this process's phones gets a message: directed offers and claim rounds
(docs/device-protocol.md, "Who gets a message").

**Directed offers.** A message offered to a list (the offer event reaches every connection
of the list in each server process) is offered here first to one phone only: the one next
in turn, the least recently assigned (or offered a message) of this process's phones of
the list that may take work now. If that phone has not claimed it within a short wait
(`OFFER_WAIT_FACTOR` × its own usual time from offer to claim, within `OFFER_WAIT_MIN` and
`OFFER_WAIT_MAX`), every other phone of the list here is offered it too, the late phone
loses its turn (and comes last for the next ones until it claims again), and the first
claim decides. One offer frame and one claim a message instead of one per phone, and no
`taken` answers: the fan-out cost nothing to spread the work, but most of the server's
work per message was in it (docs/benchmarks.md).

**Claim rounds.** Work offered to every phone at once (the open work a phone is offered
when it connects, becomes available, or on the periodic tick: bulk sends, leases that
lapsed) is claimed by several phones. The claims of one message are collected for a short
round (`ROUND_SECONDS` from the first claim of it in this process); then the phone whose
last assignment is the oldest goes to the database with its claim, and the others get
`taken` without reaching the database. The round ends early once the phone it waits for
has claimed: the least recently assigned of this process's phones of the list that may
take work (of a directed message, only the phone it was offered to), so a round usually
lasts as long as that one phone needs to answer. A phone that does not claim within the
round loses its turn (and the next rounds stop waiting for it until it claims again): a
slow or silent phone never delays a message by more than one round.

The database still decides every assignment: the chosen phone's claim is the one
conditional UPDATE, and if it does not win (the phone became unavailable, reached a cap,
or another server process's phone got there first) the next in order tries, unless the
message is no longer open (a directed message is then offered to the others at once).
Several server processes each direct and run rounds for their own phones; between them,
the UPDATE's row count decides, and the first chosen phone to reach the database would
win every time. So when some of a list's phones are held by other processes, a chosen
phone that is ahead of its turn (it was assigned more recently than the list's pace gives
each phone: online phones × the time between its messages) waits up to `DEFER_SECONDS`
before its claim, and a phone elsewhere that is due gets there first. With all of a
list's phones in one process, nobody waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from devices.models import Device

logger = logging.getLogger(__name__)


class Claimant(Protocol):
    """What a round needs of a phone's connection (devices.consumers.DeviceConsumer)."""

    device: Device
    closed: bool
    available: bool

    def may_take_work(self) -> bool: ...

    async def send_offer(self, text: str) -> None: ...


class Outcome(Protocol):
    """A database claim's result (messaging.services.dispatch.ClaimResult)."""

    @property
    def message(self) -> Any: ...

    @property
    def capped_until(self) -> datetime | None: ...


@dataclass(frozen=True)
class Lost:
    """The answer of a phone that did not get the message."""

    message: None = None
    capped_until: datetime | None = None


LOST = Lost()

# One phone's claim in the database: its outcome, and whether the message is still open
# for another phone when this one did not win.
TryClaim = Callable[[Device, str], Awaitable[tuple[Outcome, bool]]]
# The connections of this process held by phones of a list.
PhonesOf = Callable[[int], Iterable[Claimant]]
# How many phones of a list are online and available, in every server process.
PhonesOnline = Callable[[int], int]


@dataclass
class Direction:
    """A message offered first to one phone of this process (`ClaimRounds.offer`)."""

    list_id: int
    offer_id: str | None  # the offer event's (its copies reach every connection of the list here)
    chosen: int  # the phone it was offered to first
    text: str  # the offer frame, as JSON text
    sent_at: float  # time.monotonic() of the offer to the chosen phone
    timer: asyncio.TimerHandle | None = None  # opens it to all, unless the chosen phone claims first
    claimed: bool = False  # the chosen phone's claim came in
    open_to_all: bool = False  # offered to the list's other phones here too


@dataclass
class Round:
    list_id: int
    message_id: str
    # By phone id, in the order the claims arrived.
    entrants: dict[int, tuple[Claimant, asyncio.Future[Outcome]]] = field(default_factory=dict)
    awaited: int | None = None  # the phone whose claim ends the round at once
    timer: asyncio.TimerHandle | None = None
    settling: bool = False
    alone: bool = False  # a message pinned to one phone: nobody else can take it


class ClaimRounds:
    """The claim rounds of this process (see the module docstring)."""

    ROUND_SECONDS = 0.02
    DEFER_SECONDS = 0.02  # the longest a chosen phone ahead of its turn waits (see above)
    TAKEN_SECONDS = 5.0  # below the shortest lease (devices.services.MIN_LEASE_SECONDS)
    MAX_REMEMBERED = 50_000
    # How long a directed offer waits for the chosen phone's claim before every phone of the
    # list here has it: this many times the phone's usual time to claim, within the bounds.
    OFFER_WAIT_FACTOR = 4.0
    OFFER_WAIT_MIN = 0.015  # a machine-wide stall (GC, a busy CPU) is not taken for a late phone
    OFFER_WAIT_MAX = 0.1  # also the wait for a phone not measured yet
    # A direction is remembered this long (the other connections' copies of the offer
    # event arrive within milliseconds): their copies are not offered a second time.
    DIRECTION_SECONDS = 2.0

    def __init__(self, try_claim: TryClaim, phones_of: PhonesOf, phones_online: PhonesOnline = lambda _: 0) -> None:
        self.try_claim = try_claim
        self.phones_of = phones_of
        self.phones_online = phones_online
        # List id → (time its last round opened, mean seconds between its rounds).
        self.pace: dict[int, tuple[float, float]] = {}
        self.rounds: dict[str, Round] = {}
        self.taken_until: dict[str, float] = {}
        # Phone id → time of its last assignment through this process (or of the round
        # that chose it, while its claim is in the database). A phone's claims all go
        # through the process holding its connection, so this is its whole recent history.
        self.last_won: dict[int, float] = {}
        # Phones that let a round that waited for them pass: not waited for until they claim.
        self.missed: set[int] = set()
        # Directed offers (`offer`): by message, the phone each went to first.
        self.directions: dict[str, Direction] = {}
        # Phone id → time.time() it was last chosen for a directed offer (the next offers
        # go to other phones, even before its claim is in).
        self.chosen_at: dict[int, float] = {}
        # Phone id → its usual time from a directed offer to its claim (a moving average).
        self.claim_seconds: dict[int, float] = {}

    # --- directed offers ---

    async def offer(self, list_id: int, message_id: str, text: str, offer_id: str | None = None) -> None:
        """A message was offered to the list (the offer event `offer_id`; this process's
        listener gets one copy, devices/list_offers.py, and a sender of before gave one to
        each connection of the list): the first copy offers it to the phone of this process
        that is next in turn only, and every other phone here has it if that one has not
        claimed it within a short wait (`_offer_wait`); other copies do nothing, and so does
        an offer no phone here may take now (it reads its open work when it may)."""
        previous = self.directions.get(message_id)
        if previous is not None and previous.offer_id == offer_id:
            return  # another copy of the same event
        if message_id in self.rounds:
            return  # claimed here already (offered with the open work): its round decides
        chosen = self._next_in_turn(list_id)
        if chosen is None:
            return
        # A new offer of the message: it is open (again, after a failover or a lapsed lease).
        self.taken_until.pop(message_id, None)
        if previous is not None:
            self._drop_direction(message_id)
        pk = chosen.device.pk
        now = time.monotonic()
        self._forget_old_directions(now)
        direction = Direction(list_id, offer_id, pk, text, now)
        self.directions[message_id] = direction
        self.chosen_at[pk] = time.time()
        loop = asyncio.get_running_loop()
        direction.timer = loop.call_later(self._offer_wait(pk), self._open_to_all, message_id, direction, True)
        await chosen.send_offer(text)

    def _next_in_turn(self, list_id: int) -> Claimant | None:
        """The phone of the list here that may take work and was assigned (or offered a
        message) the longest ago; phones that missed their last turn come last."""
        best: tuple[bool, float, int] | None = None
        found = None
        for connection in self.phones_of(list_id):
            if connection.closed or not connection.may_take_work():
                continue
            pk = connection.device.pk
            rank = (pk in self.missed, max(self._priority(pk), self.chosen_at.get(pk, 0.0)), pk)
            if best is None or rank < best:
                best, found = rank, connection
        return found

    def _offer_wait(self, device_id: int) -> float:
        usual = self.claim_seconds.get(device_id)
        if usual is None:
            return self.OFFER_WAIT_MAX
        return min(self.OFFER_WAIT_MAX, max(self.OFFER_WAIT_MIN, self.OFFER_WAIT_FACTOR * usual))

    def _chosen_claims(self, message_id: str, device_id: int) -> None:
        """The phone a message was directed to claims it: no opening it to all (the round
        and the database decide from here), and its time to claim is measured."""
        direction = self.directions.get(message_id)
        if direction is None or direction.chosen != device_id or direction.claimed:
            return
        direction.claimed = True
        self.missed.discard(device_id)  # late maybe, but it answers: its next turn waits for it
        if direction.timer is not None:
            direction.timer.cancel()
            direction.timer = None
        took = time.monotonic() - direction.sent_at
        usual = self.claim_seconds.get(device_id)
        self.claim_seconds[device_id] = took if usual is None else usual * 0.8 + took * 0.2

    def _open_to_all(self, message_id: str, direction: Direction, late: bool) -> None:
        """Every phone of the list here that may take work has the message now: the chosen
        phone was `late` with its claim (it loses its turn), or its claim did not win."""
        if self.directions.get(message_id) is not direction or direction.open_to_all:
            return
        direction.open_to_all = True
        if direction.timer is not None:
            direction.timer.cancel()
            direction.timer = None
        if late:
            self.missed.add(direction.chosen)
        current = self.rounds.get(message_id)
        if current is not None and current.entrants and not current.settling:
            self._settle(message_id)  # claims came in from elsewhere (open work): no more waiting
        task = asyncio.get_running_loop().create_task(self._offer_to_all(message_id, direction))
        task.add_done_callback(_log_failure)

    async def _offer_to_all(self, message_id: str, direction: Direction) -> None:
        for connection in list(self.phones_of(direction.list_id)):
            if self.taken_until.get(message_id, 0.0) > time.monotonic():
                return  # taken meanwhile
            if connection.device.pk != direction.chosen and not connection.closed and connection.may_take_work():
                await connection.send_offer(direction.text)

    def _forget_old_directions(self, now: float) -> None:
        while self.directions:
            oldest = next(iter(self.directions))
            direction = self.directions[oldest]
            if now - direction.sent_at < self.DIRECTION_SECONDS:
                return
            if direction.timer is not None:
                direction.timer.cancel()
            del self.directions[oldest]

    def _stop_waiting(self, message_id: str) -> None:
        """The message was assigned: it is not opened to all. (Its direction is remembered a
        little longer: the other copies of its offer event offer nothing, and the chosen
        phone's time to claim is measured even when it was late.)"""
        direction = self.directions.get(message_id)
        if direction is not None and direction.timer is not None:
            direction.timer.cancel()
            direction.timer = None

    def _drop_direction(self, message_id: str) -> None:
        self._stop_waiting(message_id)
        self.directions.pop(message_id, None)

    # --- entering a round ---

    async def claim(self, claimant: Claimant, message_id: str, *, alone: bool = False) -> Outcome:
        """This phone's claim of the message: the outcome once its round is settled."""
        device = claimant.device
        self._chosen_claims(message_id, device.pk)
        if self.taken_until.get(message_id, 0.0) > time.monotonic():
            return LOST
        self.missed.discard(device.pk)
        current = self.rounds.get(message_id)
        if current is None:
            current = self._open(message_id, device.phone_list_id, alone=alone)
        entered = current.entrants.get(device.pk)
        if entered is not None:
            return await asyncio.shield(entered[1])  # the same claim again: the same answer
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        current.entrants[device.pk] = (claimant, future)
        if not current.settling and self._may_end_now(current, device.pk):
            self._settle(message_id)
        # Shielded: a phone that goes away mid-round does not take the round down with it.
        return await asyncio.shield(future)

    def _open(self, message_id: str, list_id: int, *, alone: bool) -> Round:
        self._keep_pace(list_id)
        opened = Round(list_id, message_id, alone=alone)
        if not alone:
            opened.awaited = self._best_waiting(opened)
        loop = asyncio.get_running_loop()
        opened.timer = loop.call_later(self.ROUND_SECONDS, self._time_up, message_id, opened)
        self.rounds[message_id] = opened
        return opened

    def _keep_pace(self, list_id: int) -> None:
        now = time.time()
        last, mean = self.pace.get(list_id, (now, 0.0))
        gap = min(now - last, 10.0)  # after a quiet spell the pace picks up again quickly
        if last != now:
            self.pace[list_id] = (now, gap if mean == 0.0 else mean * 0.8 + gap * 0.2)
        else:
            self.pace[list_id] = (now, 0.0)  # its first round: no pace yet, nobody waits

    def _deferral(self, list_id: int, last_won: float | None) -> float:
        """How long a chosen phone last assigned at `last_won` waits before its claim: a
        phone ahead of its turn gives the list's phones in other processes a head start."""
        here = sum(1 for c in self.phones_of(list_id) if not c.closed and c.available)
        online = self.phones_online(list_id)
        if online <= here or last_won is None:
            return 0.0  # every phone of the list is here (the rounds are fair), or its first
        turn = online * self.pace.get(list_id, (0.0, 0.0))[1]
        return min(self.DEFER_SECONDS, max(0.0, turn - (time.time() - last_won)))

    def _priority(self, device_id: int) -> float:
        return self.last_won.get(device_id, 0.0)

    def _best_waiting(self, current: Round) -> int | None:
        """The phone this round still waits for: the least recently assigned of the list's
        phones here that may take work, have not entered, and did not miss their last turn;
        of a message directed to one phone and not yet open to all, only that phone."""
        direction = self.directions.get(current.message_id)
        only = direction.chosen if direction is not None and not direction.open_to_all else None
        best: tuple[float, int] | None = None
        for connection in self.phones_of(current.list_id):
            pk = connection.device.pk
            if only is not None and pk != only:
                continue
            if pk in current.entrants or pk in self.missed or connection.closed or not connection.may_take_work():
                continue
            rank = (self._priority(pk), pk)
            if best is None or rank < best:
                best = rank
        return best[1] if best is not None else None

    def _may_end_now(self, current: Round, arrived: int) -> bool:
        """Whether no phone still to come could rank before those that entered."""
        if current.alone:
            return True
        direction = self.directions.get(current.message_id)
        if direction is not None and direction.open_to_all:
            return True  # its chosen phone was late already: the first claim here decides
        if current.awaited is not None and current.awaited != arrived:
            return False
        current.awaited = self._best_waiting(current)
        if current.awaited is None:
            return True
        best_entered = min(self._priority(pk) for pk in current.entrants)
        return best_entered <= self._priority(current.awaited)

    def _time_up(self, message_id: str, current: Round) -> None:
        if self.rounds.get(message_id) is not current or current.settling:
            return
        if current.awaited is not None and current.awaited not in current.entrants:
            self.missed.add(current.awaited)
        self._settle(message_id)

    # --- settling a round ---

    def _settle(self, message_id: str) -> None:
        current = self.rounds[message_id]
        current.settling = True
        if current.timer is not None:
            current.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(message_id, current))
        task.add_done_callback(_log_failure)

    async def _run(self, message_id: str, current: Round) -> None:
        tried: set[int] = set()
        won = gone = False
        try:
            while not won:
                # Entrants may still arrive while a claim is in the database: they queue last.
                waiting = [pk for pk in current.entrants if pk not in tried]
                if not waiting:
                    break
                pk = min(waiting, key=self._priority)  # stable: ties go to the first to claim
                tried.add(pk)
                claimant, future = current.entrants[pk]
                if claimant.closed:
                    future.set_result(LOST)
                    continue
                won, still_open = await self._try(message_id, current, claimant, future)
                if not won and not still_open:
                    gone = True  # another process's phone got it, or it ended
                    break
        finally:
            if self.rounds.get(message_id) is current:
                del self.rounds[message_id]
            for _claimant, future in current.entrants.values():
                if not future.done():
                    future.set_result(LOST)  # another phone got it, or it is no longer open
            if won or gone:
                # Late claims of it here are answered at once, and open no new round.
                self._remember_taken(message_id)
                self._stop_waiting(message_id)
            elif (direction := self.directions.get(message_id)) is not None:
                self._open_to_all(message_id, direction, late=False)  # the chosen phone may not take it

    async def _try(
        self, message_id: str, current: Round, claimant: Claimant, future: asyncio.Future[Outcome]
    ) -> tuple[bool, bool]:
        """One entrant's claim in the database; (won, still open for another)."""
        pk = claimant.device.pk
        before = self.last_won.get(pk)
        # Counted as assigned from now: the other rounds running meanwhile choose another phone.
        self.last_won[pk] = time.time()
        self._rechoose_awaited(current.list_id, pk)
        try:
            wait = self._deferral(current.list_id, before)
            if wait > 0.0:
                await asyncio.sleep(wait)
            outcome, still_open = await self.try_claim(claimant.device, message_id)
        except BaseException as exc:
            self._restore(pk, before)
            if not future.done():
                future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False, True
        future.set_result(outcome)
        if outcome.message is None:
            self._restore(pk, before)
            return False, still_open
        return True, False

    def _restore(self, pk: int, before: float | None) -> None:
        if before is None:
            self.last_won.pop(pk, None)
        else:
            self.last_won[pk] = before

    def _rechoose_awaited(self, list_id: int, chosen: int) -> None:
        """Rounds of the list that waited for the phone just chosen wait for the next one
        (or end, if that one entered already)."""
        for message_id, other in list(self.rounds.items()):
            if other.settling or other.list_id != list_id or other.awaited != chosen:
                continue
            if other.entrants and self._may_end_now(other, chosen):
                self._settle(message_id)

    def forget(self, message_id: str) -> None:
        """The message is open again (its phone failed it over to the list's other phones):
        claims of it go to a round and the database again."""
        self.taken_until.pop(message_id, None)

    def _remember_taken(self, message_id: str) -> None:
        now = time.monotonic()
        if len(self.taken_until) >= self.MAX_REMEMBERED:
            self.taken_until = {mid: until for mid, until in self.taken_until.items() if until > now}
        self.taken_until[message_id] = now + self.TAKEN_SECONDS


def _log_failure(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            logger.error("claim round failed", exc_info=task.exception())
