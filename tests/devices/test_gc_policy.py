"""devices/lib/gc_policy.py: a process holding phones runs its own full collections."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from devices.lib import gc_policy
from devices.lib.gc_policy import AUTOMATIC_FULL_OFF, FULL_MIN, GcPolicy


class Node:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def policy():
    policy = GcPolicy()
    yield policy
    policy.stop()
    gc.collect()


def garbage_cycle() -> weakref.ref:
    return weakref.ref(Node())


def test_it_turns_automatic_full_collections_off_and_back_on(policy):
    before = gc.get_threshold()
    policy.start()
    assert gc.get_threshold() == (before[0], before[1], AUTOMATIC_FULL_OFF)
    policy.stop()
    assert gc.get_threshold() == before


def test_a_pass_collects_the_young_garbage_and_freezes_the_survivors(policy):
    policy.start()
    kept = Node()
    young = garbage_cycle()
    policy.after_pass(held=10)
    assert young() is None  # died since the last pass: collected
    assert gc.get_freeze_count() > 0
    assert kept.me is kept
    frozen = gc.get_freeze_count()
    policy.after_pass(held=10)
    assert gc.get_freeze_count() >= frozen


def test_a_frozen_object_that_became_garbage_waits_for_the_collection_of_everything(policy):
    policy.start()
    node = Node()
    ref = weakref.ref(node)
    policy.after_pass(held=4000)  # frozen while alive
    del node
    policy.after_pass(held=4000)
    assert ref() is not None  # garbage now, but frozen: not walked by a pass
    for _ in range(FULL_MIN - 1):
        policy.phone_left()
    policy.after_pass(held=4000)
    assert ref() is not None  # 999 phones left: fewer than a quarter of 4,000, and than 1,000
    policy.phone_left()
    policy.after_pass(held=4000)
    assert ref() is None  # 1,000 left: everything was collected
    assert policy.left == 0 and gc.get_freeze_count() > 0


def test_the_collection_of_everything_also_comes_with_time(policy, monkeypatch):
    policy.start()
    node = Node()
    ref = weakref.ref(node)
    policy.after_pass(held=10)
    del node
    monkeypatch.setattr(policy, "full_at", policy.full_at - gc_policy.FULL_SECONDS)
    policy.after_pass(held=10)
    assert ref() is None


async def test_a_fleet_holding_phones_starts_it_and_counts_the_phones_that_leave(settings):
    from types import SimpleNamespace

    from devices.fleet import FleetScheduler

    fleet = FleetScheduler(open_work=lambda lists, devices: (set(), set()))

    class Phone:  # hashable, as a consumer is
        device = SimpleNamespace(pk=7, phone_list_id=1, phone_list=object())

    phone: Any = Phone()
    settings.DEVICE_GC_FREEZE = False  # as in every test (tests/conftest.py)
    fleet.register(phone)
    assert not gc_policy.policy.started
    fleet.unregister(phone)
    settings.DEVICE_GC_FREEZE = True  # a server's default
    try:
        fleet.register(phone)
        assert gc_policy.policy.started and gc.get_threshold()[2] == AUTOMATIC_FULL_OFF
        left = gc_policy.policy.left
        fleet.unregister(phone)
        fleet.unregister(phone)  # twice: one phone left
        assert gc_policy.policy.left == left + 1
    finally:
        assert fleet.task is not None
        fleet.task.cancel()
        gc_policy.policy.stop()
