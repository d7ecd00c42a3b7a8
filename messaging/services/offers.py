"""Telling phones about open work through the channel layer.

Offers are hints (R25): a phone that misses one still gets the work from the database
when it connects, becomes available, or on its periodic tick. Group names are ASCII:
`list.<id>` for every phone of a list, `device.<id>` for one phone.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from devices.lib.channel_layer import FanoutChannelLayer

logger = logging.getLogger(__name__)


def list_group(phone_list_id: int) -> str:
    return f"list.{phone_list_id}"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


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
    """The SPEC `offer` frame (also the body of `assign`, with its own type)."""
    return {
        "type": "offer",
        "message_id": message.public_id,
        "to": message.to,
        "msg": message.text,
        "parts": message.parts,
        "sim": message.sim,
    }


def notify_group(group: str, event: dict[str, object]) -> None:
    """Sends a channel-layer event to every member of `group`, in every server process,
    from synchronous code (API views, services, the worker). A hint: failures are logged.

    With Redis this is one synchronous PUBLISH (devices/lib/channel_layer.py), not a trip
    through an event loop in another thread."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, FanoutChannelLayer):
            layer.publish_group(group, event)
        else:
            # One-process mode: the in-memory layer's queues belong to the server's loop.
            async_to_sync(layer.group_send)(group, event)
    except Exception:  # the database is the truth; a lost hint is caught up later (R25)
        logger.warning("could not send %s to %s", event.get("type"), group, exc_info=True)


def offer_message(*, message: Offerable) -> None:
    """Offers one queued message to the phones that may send it (call after commit)."""
    group = (
        device_group(message.pinned_device_id) if message.pinned_device_id else list_group(message.phone_list_id or 0)
    )
    frame = offer_frame(message)
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    notify_group(group, {"type": "message.offer", "frame": frame, "text": text})


def announce_work(*, phone_list_ids: set[int] = frozenset(), device_ids: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Tells phones that work is waiting without naming it (bulk sends, re-queued
    leases): each phone then asks the database for its open work."""
    for list_id in sorted(phone_list_ids):
        notify_group(list_group(list_id), {"type": "work.available"})
    for device_id in sorted(device_ids):
        notify_group(device_group(device_id), {"type": "work.available"})
