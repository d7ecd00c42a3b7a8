"""Telling phones about open work through the channel layer.

Offers are hints (R25): a phone that misses one still gets the work from the database
when it connects, becomes available, or on its periodic tick. Group names are ASCII:
`list.<id>` for every phone of a list, `device.<id>` for one phone.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from messaging.models import Message

logger = logging.getLogger(__name__)


def list_group(phone_list_id: int) -> str:
    return f"list.{phone_list_id}"


def device_group(device_id: int) -> str:
    return f"device.{device_id}"


def offer_frame(message: Message) -> dict[str, object]:
    """The SPEC `offer` frame (also the body of `assign`, with its own type)."""
    return {
        "type": "offer",
        "message_id": message.public_id,
        "to": message.to,
        "msg": message.text,
        "parts": message.parts,
        "sim": message.sim,
    }


def _group_send(group: str, event: dict[str, object]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:  # the database is the truth; a lost hint is caught up later
        logger.warning("could not send %s to %s", event.get("type"), group, exc_info=True)


def offer_message(*, message: Message) -> None:
    """Offers one queued message to the phones that may send it (call after commit)."""
    group = (
        device_group(message.pinned_device_id) if message.pinned_device_id else list_group(message.phone_list_id or 0)
    )
    _group_send(group, {"type": "message.offer", "frame": offer_frame(message)})


def announce_work(*, phone_list_ids: set[int] = frozenset(), device_ids: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Tells phones that work is waiting without naming it (bulk sends, re-queued
    leases): each phone then asks the database for its open work."""
    for list_id in sorted(phone_list_ids):
        _group_send(list_group(list_id), {"type": "work.available"})
    for device_id in sorted(device_ids):
        _group_send(device_group(device_id), {"type": "work.available"})
