"""Telling phones about open work through the channel layer.

Offers are hints (R25): a phone that misses one still gets the work from the database
when it connects, becomes available, or on its periodic tick. Group names are ASCII:
`list.<id>` for every phone of a list, `device.<id>` for one phone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

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


class _SenderLoop:
    """One long-lived event loop per process for channel-layer sends from sync code.

    `async_to_sync` outside an event loop (a WSGI worker, the worker process) starts a
    new loop, and with it a new Redis connection, on every call: ~2.5 ms of CPU per
    offer. Here the loop and its connection pool live as long as the process; sends
    are fire-and-forget hints, so the API answer does not wait for Redis.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # new process after a fork
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="phonefleet-offers", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, None], what: str) -> Future[None]:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure())

        def log_failure(done: Future[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                logger.warning("could not send %s", what, exc_info=done.exception())

        future.add_done_callback(log_failure)
        return future


_sender = _SenderLoop()


def _group_send(group: str, event: dict[str, object]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    what = f"{event.get('type')} to {group}"
    if isinstance(layer, InMemoryChannelLayer):
        # One-process mode: the in-memory layer's queues belong to the server's loop.
        try:
            async_to_sync(layer.group_send)(group, event)
        except Exception:  # the database is the truth; a lost hint is caught up later
            logger.warning("could not send %s", what, exc_info=True)
        return
    _sender.submit(layer.group_send(group, event), what)


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
