"""Claim rounds (devices/rounds.py): who of a process's phones gets a message. The database
claim is a stand-in here; tests/messaging/test_claim.py runs rounds against the real one."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from devices.rounds import ClaimRounds


@dataclass(frozen=True)
class Result:
    message: object | None
    capped_until: datetime | None = None


@dataclass(eq=False)
class Phone:
    pk: int
    delay: float = 0.0  # how long it takes to claim an offer
    silent: bool = False  # never claims
    closed: bool = False
    available: bool = True
    device: SimpleNamespace = field(init=False)

    def __post_init__(self) -> None:
        self.device = SimpleNamespace(pk=self.pk, phone_list_id=1)

    def may_take_work(self) -> bool:
        return True


class Database:
    """The one-winner claim: the first try of a message wins, unless the phone is refused."""

    def __init__(self, refused: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.assigned: dict[str, int] = {}
        self.tries: list[tuple[str, int]] = []
        self.refused = refused

    async def try_claim(self, device: SimpleNamespace, message_id: str) -> tuple[Result, bool]:
        self.tries.append((message_id, device.pk))
        await asyncio.sleep(0.001)
        if device.pk in self.refused or message_id in self.assigned:
            return Result(None), message_id not in self.assigned
        self.assigned[message_id] = device.pk
        return Result(message_id), False


def make_rounds(database: Database, phones: list[Phone]) -> ClaimRounds:
    stand_ins: Any = phones
    return ClaimRounds(cast(Any, database.try_claim), lambda list_id: stand_ins)


async def offer(rounds: ClaimRounds, phones: list[Phone], message_id: str) -> list[Result]:
    """Every phone gets the offer and claims it after its delay (silent ones never do)."""

    async def one(phone: Phone) -> Result:
        await asyncio.sleep(phone.delay)
        return cast(Result, await rounds.claim(cast(Any, phone), message_id))

    return await asyncio.gather(*(one(p) for p in phones if not p.silent))


async def test_the_least_recently_assigned_phone_wins_so_equal_phones_take_turns():
    phones = [Phone(pk) for pk in range(1, 6)]
    database = Database()
    rounds = make_rounds(database, phones)
    for n in range(50):
        results = await offer(rounds, phones, f"msg_{n}")
        assert sum(r.message is not None for r in results) == 1
    assert Counter(database.assigned.values()) == {pk: 10 for pk in range(1, 6)}
    assert len(database.tries) == 50  # the losers never reached the database


async def test_offers_that_arrive_together_go_to_different_phones():
    phones = [Phone(pk) for pk in range(1, 6)]
    database = Database()
    rounds = make_rounds(database, phones)
    # A burst: every phone claims 20 messages at once (as after the periodic tick's offers).
    await asyncio.gather(*(offer(rounds, phones, f"msg_{n}") for n in range(20)))
    assert len(database.assigned) == 20
    assert Counter(database.assigned.values()) == {pk: 4 for pk in range(1, 6)}


async def test_a_silent_phone_never_holds_a_message_and_costs_at_most_one_round():
    phones = [Phone(1, silent=True), Phone(2), Phone(3)]
    database = Database()
    rounds = make_rounds(database, phones)
    rounds.ROUND_SECONDS = 0.5
    started = time.monotonic()
    await offer(rounds, phones, "msg_0")  # waits the round for phone 1, the least recently assigned
    first = time.monotonic() - started
    assert 0.4 < first < 2.0
    started = time.monotonic()
    for n in range(1, 5):
        await offer(rounds, phones, f"msg_{n}")
    assert time.monotonic() - started < 0.4 * 4  # phone 1 missed its turn: nobody waits for it now
    assert set(database.assigned.values()) == {2, 3}


async def test_a_round_ends_as_soon_as_the_phone_it_waits_for_has_claimed():
    phones = [Phone(1), Phone(2, delay=0.01), Phone(3, delay=0.02)]
    database = Database()
    rounds = make_rounds(database, phones)
    rounds.ROUND_SECONDS = 5.0
    started = time.monotonic()
    for n in range(3):
        await offer(rounds, phones, f"msg_{n}")
    assert time.monotonic() - started < 2.0  # never the 5 s round
    assert sorted(database.assigned.values()) == [1, 2, 3]


async def test_a_slow_phone_loses_its_turn_to_the_phones_that_claimed_within_the_round():
    phones = [Phone(1, delay=0.3), Phone(2), Phone(3)]
    database = Database()
    rounds = make_rounds(database, phones)
    rounds.ROUND_SECONDS = 0.05
    results = await offer(rounds, phones, "msg_0")
    assert database.assigned["msg_0"] in (2, 3)
    assert results[0].message is None  # the slow phone's late claim: taken


async def test_when_the_chosen_phone_is_refused_the_next_in_order_tries():
    phones = [Phone(1), Phone(2), Phone(3)]
    database = Database(refused={1})
    rounds = make_rounds(database, phones)
    await offer(rounds, phones, "msg_0")
    assert database.tries == [("msg_0", 1), ("msg_0", 2)]
    assert database.assigned == {"msg_0": 2}
    assert 1 not in rounds.last_won  # a refused try does not count as an assignment


async def test_a_message_taken_elsewhere_ends_the_round_after_one_try():
    phones = [Phone(1), Phone(2), Phone(3)]
    database = Database()
    database.assigned["msg_0"] = 99  # another server process's phone won it
    rounds = make_rounds(database, phones)
    results = await offer(rounds, phones, "msg_0")
    assert all(r.message is None for r in results)
    assert len(database.tries) == 1
    await offer(rounds, phones, "msg_0")  # late claims of it: answered at once, no new round
    assert len(database.tries) == 1


async def test_a_pinned_message_does_not_wait_for_the_lists_other_phones():
    phones = [Phone(1), Phone(2)]
    database = Database()
    rounds = make_rounds(database, phones)
    rounds.ROUND_SECONDS = 5.0
    rounds.last_won[1] = 0.0
    rounds.last_won[2] = time.time()  # phone 1 would be waited for
    started = time.monotonic()
    result = await rounds.claim(cast(Any, phones[1]), "msg_pinned", alone=True)
    assert result.message == "msg_pinned"
    assert time.monotonic() - started < 1.0


async def test_a_phone_ahead_of_its_turn_waits_only_when_phones_of_its_list_are_in_other_processes():
    phones = [Phone(1), Phone(2)]
    database = Database()
    stand_ins: Any = phones
    online = {"count": 4}  # two more phones of the list are held by another server process
    rounds = ClaimRounds(cast(Any, database.try_claim), lambda list_id: stand_ins, lambda list_id: online["count"])
    rounds.DEFER_SECONDS = 0.3
    now = time.time()
    rounds.pace[1] = (now, 1.0)  # a message a second: each of the 4 phones' turn comes every 4 s
    rounds.last_won.update({1: now - 1.0, 2: now - 0.5})  # both were assigned since their turn
    started = time.monotonic()
    await offer(rounds, phones, "msg_0")
    assert time.monotonic() - started >= 0.25  # a phone elsewhere that is due gets a head start
    online["count"] = 2  # every phone of the list is here: the rounds alone are fair
    started = time.monotonic()
    await offer(rounds, phones, "msg_1")
    assert time.monotonic() - started < 0.25
    assert sorted(database.assigned.values()) == [1, 2]


# --- Directed offers: a message offered to the list goes to the phone next in turn first ---


@dataclass(eq=False)
class Listening(Phone):
    """A phone that claims what it is offered (after its delay), as the bench's phones do."""

    rounds: ClaimRounds | None = None
    offered: list[str] = field(default_factory=list)
    results: dict[str, Result] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send_offer(self, text: str) -> None:
        self.offered.append(text)  # the text stands for the offer frame of message `text`
        if not self.silent:
            task = asyncio.get_running_loop().create_task(self._claim(text))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _claim(self, message_id: str) -> None:
        await asyncio.sleep(self.delay)
        assert self.rounds is not None
        self.results[message_id] = cast(Result, await self.rounds.claim(cast(Any, self), message_id))


def directed(database: Database, phones: list[Listening]) -> ClaimRounds:
    rounds = make_rounds(database, cast(list[Phone], phones))
    for phone in phones:
        phone.rounds = rounds
    return rounds


async def offer_to_list(rounds: ClaimRounds, phones: list[Listening], message_id: str, offer_id: str = "") -> None:
    """The offer event reaches every connection of the list (each gets its copy), then the
    message's fate is awaited: assigned, or every phone that claims it answered."""
    for phone in phones:
        await rounds.offer(phone.device.phone_list_id, message_id, message_id, offer_id or f"offer of {message_id}")
    for _ in range(500):
        await asyncio.sleep(0.002)
        if not any(p.tasks for p in phones) and message_id in rounds.taken_until:
            return


async def test_an_offer_goes_only_to_the_phone_next_in_turn_so_equal_phones_take_turns():
    phones = [Listening(pk) for pk in range(1, 6)]
    database = Database()
    rounds = directed(database, phones)
    for n in range(50):
        await offer_to_list(rounds, phones, f"msg_{n}")
    assert Counter(database.assigned.values()) == {pk: 10 for pk in range(1, 6)}
    assert sum(len(p.offered) for p in phones) == 50  # one offer frame a message, not one per phone
    assert len(database.tries) == 50


async def test_offers_that_arrive_together_are_directed_to_different_phones():
    phones = [Listening(pk, delay=0.005) for pk in range(1, 6)]
    database = Database()
    rounds = directed(database, phones)
    # Not about the bounded wait: a busy machine (CI's two test processes on two cores) can
    # make a 5 ms claim later than the shortest wait, and the offer then goes to all.
    rounds.OFFER_WAIT_MIN = rounds.OFFER_WAIT_MAX = 2.0
    for n in range(20):  # a burst: the next offer arrives before the last one's claim
        for phone in phones:
            await rounds.offer(phone.device.phone_list_id, f"msg_{n}", f"msg_{n}")
    await asyncio.sleep(0.3)
    assert Counter(database.assigned.values()) == {pk: 4 for pk in range(1, 6)}
    assert sum(len(p.offered) for p in phones) == 20


async def test_a_late_phone_delays_a_message_by_at_most_the_bounded_wait_and_loses_its_turn():
    phones = [Listening(1, delay=0.5), Listening(2), Listening(3)]
    database = Database()
    rounds = directed(database, phones)
    rounds.OFFER_WAIT_MAX = 0.1
    rounds.ROUND_SECONDS = 5.0  # never waited for: after the wait the first claim decides
    started = time.monotonic()
    await rounds.offer(phones[0].device.phone_list_id, "msg_0", "msg_0")  # phone 1 is next in turn
    for _ in range(200):
        await asyncio.sleep(0.005)
        if "msg_0" in database.assigned:
            break
    took = time.monotonic() - started
    assert database.assigned["msg_0"] in (2, 3)
    assert 0.09 < took < 0.45  # the wait, and not the slow phone's 0.5 s nor a 5 s round
    await asyncio.sleep(0.6)
    assert phones[0].results["msg_0"].message is None  # its late claim: taken
    assert rounds.claim_seconds[1] >= 0.5  # measured: the next wait for it is the longest


async def test_a_silent_phone_costs_one_wait_in_all():
    phones = [Listening(1, silent=True), Listening(2), Listening(3)]
    database = Database()
    rounds = directed(database, phones)
    rounds.OFFER_WAIT_MAX = 0.3
    started = time.monotonic()
    for n in range(10):
        await offer_to_list(rounds, phones, f"msg_{n}")
    assert time.monotonic() - started < 0.3 * 2  # phone 1 is offered first only once, not 10 times
    assert set(database.assigned.values()) == {2, 3}
    assert phones[0].offered[0] == "msg_0"  # it was next in turn, then missed it


async def test_the_wait_for_a_phone_follows_its_usual_time_to_claim_within_bounds():
    rounds = make_rounds(Database(), [])
    assert rounds._offer_wait(1) == rounds.OFFER_WAIT_MAX  # not measured yet
    rounds.claim_seconds[1] = 0.0001
    assert rounds._offer_wait(1) == rounds.OFFER_WAIT_MIN
    rounds.claim_seconds[1] = 0.01
    assert rounds._offer_wait(1) == rounds.OFFER_WAIT_FACTOR * 0.01
    rounds.claim_seconds[1] = 1.0
    assert rounds._offer_wait(1) == rounds.OFFER_WAIT_MAX


async def test_when_the_chosen_phones_claim_is_refused_the_others_are_offered_at_once():
    phones = [Listening(1), Listening(2), Listening(3)]
    database = Database(refused={1})  # phone 1 reached a cap, say
    rounds = directed(database, phones)
    rounds.OFFER_WAIT_MAX = 5.0
    started = time.monotonic()
    await offer_to_list(rounds, phones, "msg_0")
    assert time.monotonic() - started < 1.0
    assert database.assigned["msg_0"] in (2, 3)


async def test_a_message_taken_elsewhere_is_offered_to_nobody_else_here():
    phones = [Listening(1), Listening(2), Listening(3)]
    database = Database()
    database.assigned["msg_0"] = 99  # another server process's phone won it
    rounds = directed(database, phones)
    await offer_to_list(rounds, phones, "msg_0")
    await asyncio.sleep(rounds.OFFER_WAIT_MAX * 2)
    assert sum(len(p.offered) for p in phones) == 1
    assert len(database.tries) == 1


async def test_a_message_offered_again_is_directed_again_and_copies_of_one_offer_are_not():
    phones = [Listening(1), Listening(2)]
    database = Database()
    rounds = directed(database, phones)
    await offer_to_list(rounds, phones, "msg_0", "first offer")
    assert database.assigned == {"msg_0": 1}
    await offer_to_list(rounds, phones, "msg_0", "first offer")  # a copy arriving late: nothing
    assert sum(len(p.offered) for p in phones) == 1
    del database.assigned["msg_0"]  # phone 1 failed it over: queued again, offered again
    await offer_to_list(rounds, phones, "msg_0", "second offer")
    assert database.assigned == {"msg_0": 2}
    assert phones[1].offered == ["msg_0"]
