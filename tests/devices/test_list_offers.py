"""The listener of a server process for its lists' offers (devices/list_offers.py): one copy
of each offer a process, with the in-memory layer (one process, no configuration) and with
the Redis layer (several server processes)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.conf import settings

from devices.lib.channel_layer import FanoutChannelLayer
from devices.list_offers import ListOffers
from devices.services import offer_group

pytestmark = pytest.mark.asyncio


class Connection:
    """A phone's connection as the listener sees it."""

    def __init__(self, layer: Any, list_id: int, channel_name: str) -> None:
        self.device = SimpleNamespace(phone_list_id=list_id)
        self.channel_layer = layer
        self.channel_name = channel_name
        self.closed = False


async def connection(layer: Any, list_id: int) -> Any:
    return Connection(layer, list_id, await layer.new_channel())


class Process:
    """One server process: its listener, the offers its claim rounds got, the phones it holds."""

    def __init__(self) -> None:
        self.offers: list[tuple[int, dict[str, Any]]] = []
        self.held: set[Any] = set()
        self.listener = ListOffers(on_offer=self.on_offer, is_held=lambda c: c in self.held)

    async def on_offer(self, list_id: int, event: dict[str, Any]) -> None:
        self.offers.append((list_id, event))


def offer(list_id: int, message_id: str = "msg_1") -> dict[str, Any]:
    return {"type": "message.offer", "frame": {"message_id": message_id}, "offer_id": uuid.uuid4().hex, "list": list_id}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_process_gets_one_copy_of_a_lists_offer_however_many_of_its_phones_it_holds():
    layer = InMemoryChannelLayer()
    here = Process()
    phones = [await connection(layer, 1) for _ in range(3)]
    other_list = await connection(layer, 2)
    for phone in [*phones, other_list]:
        here.held.add(phone)
        await here.listener.join(phone)
    event = offer(1)
    await layer.group_send(offer_group(1), event)
    await settle()
    assert here.offers == [(1, event)]
    for phone in [*phones, other_list]:  # no copy for each connection
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(phone.channel_name), 0.05)


async def test_a_phone_still_connecting_gets_its_own_copy():
    """Joined before it read its open work, not yet held by the fleet: what is offered
    meanwhile reaches its own channel, and its connection hands it on after the connect."""
    layer = InMemoryChannelLayer()
    here = Process()
    held, connecting = await connection(layer, 1), await connection(layer, 1)
    here.held.add(held)
    for phone in (held, connecting):
        await here.listener.join(phone)
    event = offer(1)
    await layer.group_send(offer_group(1), event)
    await settle()
    assert here.offers == [(1, event)]
    assert await asyncio.wait_for(layer.receive(connecting.channel_name), 1) == event


async def test_after_the_last_phone_of_a_list_leaves_its_offers_stop_and_the_listener_with_the_last_list():
    layer = InMemoryChannelLayer()
    here = Process()
    first, second, elsewhere = await connection(layer, 1), await connection(layer, 1), await connection(layer, 2)
    for phone in (first, second, elsewhere):
        here.held.add(phone)
        await here.listener.join(phone)
    await here.listener.leave(first)
    await layer.group_send(offer_group(1), offer(1))
    await settle()
    assert len(here.offers) == 1  # the list's other phone is still here
    await here.listener.leave(second)
    await layer.group_send(offer_group(1), offer(1))
    await settle()
    assert len(here.offers) == 1
    task = here.listener.task
    assert task is not None and not task.done()
    await here.listener.leave(elsewhere)
    await settle()
    assert task.done() and here.listener.task is None
    await here.listener.join(first)  # a phone comes back: listening again
    await layer.group_send(offer_group(1), offer(1))
    await settle()
    assert len(here.offers) == 2


async def test_each_server_process_gets_one_copy_through_redis():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    layers = [FanoutChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix) for _ in range(2)]
    processes = [Process(), Process()]
    for layer, process in zip(layers, processes, strict=True):
        for _ in range(3):
            phone = await connection(layer, 7)
            process.held.add(phone)
            await process.listener.join(phone)
    for layer in layers:
        assert await asyncio.to_thread(layer.listening.wait, 10)
    event = offer(7)
    await asyncio.to_thread(layers[0].publish_group, offer_group(7), event)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if all(process.offers for process in processes):
            break
    await settle()
    assert [process.offers for process in processes] == [[(7, event)], [(7, event)]]
    for layer in layers:
        await layer.flush()
