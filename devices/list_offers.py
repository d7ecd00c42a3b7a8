"""One listener per server process for the offers made to the lists its phones are in.

A message offered to a list goes first to the phone of each server process that is next
in turn (devices/rounds.py, "Directed offers"). Its offer event used to reach every
connection of the list through the list's group, and in each process only the first copy
did anything: with 10 phones a list, nine copies of every offer went through the channel
layer's queues, the connections' dispatch loops and their handlers for nothing, about a
tenth of Daphne's CPU a message (docs/benchmarks.md, "Fourth pass"). So a list's offers
have a group of their own (`services.offer_group`) whose member in each process is this
listener's channel: one copy a process, handed to the claim rounds. Work hints, closes and
offers of messages pinned to one phone still go to every connection of the list or to the
phone's own group.

A phone still connecting (it joined the groups before reading its open work, but the fleet
does not hold it yet, so the rounds do not know it) gets its own copy of each offer of its
list through its channel, as every phone did before: what is queued between its read and
the end of its connect reaches it. Offers are hints either way: the database is the truth
(devices/consumers.py).

The listener runs on the event loop of the connections that join it; it stops when the
last one leaves and starts again with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from devices.models import Device
from devices.services import offer_group

logger = logging.getLogger(__name__)


class Member(Protocol):
    """What the listener needs of a phone's connection (devices.consumers.DeviceConsumer)."""

    device: Device
    channel_name: str
    channel_layer: Any
    closed: bool


# A list's offer event, handed to the claim rounds of this process: (list id, event).
OnOffer = Callable[[int, dict[str, Any]], Awaitable[None]]
# Whether the fleet holds the connection (the rounds offer to it), or it is still connecting.
IsHeld = Callable[[Member], bool]


class ListOffers:
    """This process's listener for its lists' offers (see the module docstring)."""

    def __init__(self, on_offer: OnOffer, is_held: IsHeld) -> None:
        self.on_offer = on_offer
        self.is_held = is_held
        # List id → the connections of its phones here that joined.
        self.members: dict[int, set[Member]] = {}
        self.layer: Any = None
        self.channel = ""
        self.task: asyncio.Task[None] | None = None

    async def join(self, connection: Member) -> None:
        """The connection's list has its offers here from now on (again: renews the group
        membership for a layer whose memberships expire)."""
        layer = connection.channel_layer
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop or self.layer is not layer:
            await self._start(layer)
        list_id = connection.device.phone_list_id
        self.members.setdefault(list_id, set()).add(connection)
        await layer.group_add(offer_group(list_id), self.channel)

    async def leave(self, connection: Member) -> None:
        list_id = connection.device.phone_list_id
        members = self.members.get(list_id)
        if members is None or connection not in members:
            return
        members.discard(connection)
        if members:
            return
        del self.members[list_id]
        layer, channel = self.layer, self.channel
        with contextlib.suppress(Exception):  # a layer that is down forgets it anyway
            await layer.group_discard(offer_group(list_id), channel)
        if list_id in self.members and self.channel == channel:  # joined again meanwhile
            await layer.group_add(offer_group(list_id), channel)
        if not self.members and self.task is not None:
            self.task.cancel()  # the next join starts another
            self.task = None

    async def _start(self, layer: Any) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        # A new loop or layer (tests): the connections of the old one are gone with it.
        self.members = {}
        self.layer = layer
        self.channel = await layer.new_channel("offers.")
        self.task = asyncio.get_running_loop().create_task(self._listen(layer, self.channel))

    async def _listen(self, layer: Any, channel: str) -> None:
        while True:
            event = await layer.receive(channel)
            try:
                await self._hand_on(event)
            except Exception:
                logger.exception("offer of a list could not be handed on")

    async def _hand_on(self, event: dict[str, Any]) -> None:
        list_id = event.get("list")
        if event.get("type") != "message.offer" or not isinstance(list_id, int):
            return
        joining = [c for c in self.members.get(list_id, ()) if not c.closed and not self.is_held(c)]
        await self.on_offer(list_id, event)
        for connection in joining:
            with contextlib.suppress(Exception):  # a hint: its connect reads the open work
                await self.layer.send(connection.channel_name, event)
