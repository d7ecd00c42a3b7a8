"""Telling phones about open work through the channel layer.

Offers are hints: a phone that misses one still gets the work from the database when it
connects, becomes available, or on its periodic tick (docs/device-protocol.md). The
groups and the sending are the devices app's (`devices.services.notify_group`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import Protocol

from devices.services import device_group, list_group, notify_group, offer_group


class Offerable(Protocol):
    """What an offer reads of a message: a stored one, or one just accepted."""

    public_id: str
    to: str
    text: str
    parts: int
    sim: int | None
    phone_list_id: int | None
    pinned_device_id: int | None


def offer_frame(message: Offerable) -> dict[str, object]:
    """The `offer` frame (docs/device-protocol.md) (also the body of `assign`, with its own type)."""
    return {
        "type": "offer",
        "message_id": message.public_id,
        "to": message.to,
        "msg": message.text,
        "parts": message.parts,
        "sim": message.sim,
    }


def offer_message(*, message: Offerable) -> None:
    """Offers one queued message to the phones that may send it (call after commit)."""
    frame = offer_frame(message)
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    # `offer_id`: the claim rounds of a server process direct one offer per event
    # (devices/rounds.py), also when the same message is offered again (after a failover
    # or a lapsed lease), and ignore further copies of one event.
    event: dict[str, object] = {"type": "message.offer", "frame": frame, "text": text, "offer_id": uuid.uuid4().hex}
    if message.pinned_device_id:
        event["pinned"] = True  # only this phone may take it: its claim round waits for nobody
        notify_group(device_group(message.pinned_device_id), event)
        return
    # One copy per server process, for its claim rounds (devices/list_offers.py).
    event["list"] = message.phone_list_id or 0
    notify_group(offer_group(message.phone_list_id or 0), event)


def announce_work(*, phone_list_ids: Collection[int] = frozenset(), device_ids: Collection[int] = frozenset()) -> None:
    """Tells phones that work is waiting without naming it (bulk sends, re-queued
    leases): each phone then asks the database for its open work."""
    for list_id in sorted(phone_list_ids):
        notify_group(list_group(list_id), {"type": "work.available"})
    for device_id in sorted(device_ids):
        notify_group(device_group(device_id), {"type": "work.available"})
