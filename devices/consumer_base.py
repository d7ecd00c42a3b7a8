"""What the phones' WebSocket changes of Channels, in one place.

Two things, each measured (docs/benchmarks.md, "Phone consumer"), and the frames' guard:

- **The dispatch loop.** `DrainingConsumer` replaces `AsyncConsumer.__call__` (Channels
  CHANNELS_VERSION) so that everything a source has queued is dispatched in one event-loop
  turn, and its `dispatch` skips the per-message trip to Channels' sync thread.
- **The thread hop.** `orm()` runs a short ORM function on a small pool of threads, each
  with its own database connection, through asgiref's documented `executor` option.
- **Hostile frames.** `decode_frame` reads a frame's JSON with a nesting limit and only
  storable text; an input error (`accounts.errors.input_error`) raised past the subclass's
  checks goes to its `refuse_input` instead of closing the phone with 1011.

`tests/devices/test_consumer_base.py` fails when Channels' version or the code these
overrides copy changes, so an upgrade is read against them first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from asgiref.typing import ASGIReceiveCallable as Receive
from asgiref.typing import ASGISendCallable as Send
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.db import close_old_connections, connections

from accounts import errors
from accounts.lib import safejson

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The Channels release whose AsyncConsumer.__call__ and dispatch DrainingConsumer replaces.
CHANNELS_VERSION = "4.3.2"
# Messages waiting for one connection's dispatch loop before its sources wait too.
INBOX_SIZE = 1000
# Phones send flat objects (docs/device-protocol.md); a little room for fields that hold one.
FRAME_MAX_DEPTH = 8


def decode_frame(text: str) -> Any:
    """The JSON a text frame holds, nested at most FRAME_MAX_DEPTH deep and without NUL or
    unpaired surrogates in its strings (`accounts.lib.safejson`); raises ValueError with a
    sentence for the phone."""
    return safejson.loads(text, max_depth=FRAME_MAX_DEPTH)


# --- The thread hop ---------------------------------------------------------------------

# False: ORM calls run in parallel on a small pool of threads (each keeps its own database
# connection, so this bounds the connections per process); True: they queue for Channels'
# single sync thread. Chosen by measuring with bench/consumer.py (docs/benchmarks.md).
ORM_THREAD_SENSITIVE = False
ORM_THREADS = 4
_started_threads = threading.Semaphore(0)
_orm_pool = ThreadPoolExecutor(
    max_workers=ORM_THREADS, thread_name_prefix="device-orm", initializer=_started_threads.release
)


def _in_orm_thread(loop: asyncio.AbstractEventLoop, func: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In a pool thread: what Channels' `database_sync_to_async` does around a call (stale
    connections closed before and after), and asgiref's note of the event loop, so that
    `async_to_sync` inside the call (the in-memory channel layer) runs on the server's loop."""
    local = SyncToAsync.threadlocal
    local.main_event_loop, local.main_event_loop_pid, local.task_context = loop, os.getpid(), []
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


def orm(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Runs a short ORM function off the event loop (closing stale connections around it).

    Straight through `run_in_executor`, not asgiref's `SyncToAsync`: that one copies every
    context variable into the thread and back on each call (`_restore_context`, twice) and
    shields the future, about 0.4 ms of the event loop's CPU per call, and a phone connect
    makes three calls, a message four (bench/connect_cost.py, docs/benchmarks.md). The
    caller's context variables are still visible in the thread (a copy); what the call
    sets in them stays there, as no caller reads it back. A cancelled caller does not stop
    the call: it runs to its end in its thread, as with asgiref."""

    @functools.wraps(func)
    async def call(*args: Any) -> T:
        if ORM_THREAD_SENSITIVE:
            return await database_sync_to_async(func)(*args)  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_orm_pool, contextvars.copy_context().run, _in_orm_thread, loop, func, args)

    return call


def close_orm_connections() -> None:
    """Closes the database connection of every ORM thread (tests and benchmarks, before
    the database is dropped)."""
    if not _started_threads.acquire(blocking=False):  # none started yet: nothing to close
        return
    _started_threads.release()
    barrier = threading.Barrier(ORM_THREADS)

    def close() -> None:
        barrier.wait(timeout=10)  # one call per thread: all of them are busy at once
        connections.close_all()

    for future in [_orm_pool.submit(close) for _ in range(ORM_THREADS)]:
        future.result()


# --- The dispatch loop ------------------------------------------------------------------


class _SourceFailed:
    """What a dispatch-loop pump puts in the inbox when its source raised."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class Inbox:
    """A bounded first-in first-out queue for one connection's dispatch loop (one reader, a
    few writers). asyncio.Queue holds four deques and an Event: about 3.5 KB for every idle
    phone; this holds one deque, and futures only while someone waits (bench/soak.py)."""

    __slots__ = ("getter", "items", "putters", "size")

    def __init__(self, size: int) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.getter: asyncio.Future[None] | None = None
        self.putters: list[asyncio.Future[None]] = []
        self.size = size

    async def put(self, item: Any) -> None:
        while len(self.items) >= self.size:  # full: wait until the reader takes one
            waiter = asyncio.get_running_loop().create_future()
            self.putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.putters:
                    self.putters.remove(waiter)
        self.items.append(item)
        if self.getter is not None and not self.getter.done():
            self.getter.set_result(None)

    async def get(self) -> Any:
        while not self.items:
            self.getter = asyncio.get_running_loop().create_future()
            try:
                await self.getter
            finally:
                self.getter = None
        item = self.items.popleft()
        if self.putters:
            waiter = self.putters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
        return item


class DrainingConsumer(AsyncWebsocketConsumer):
    """Channels' AsyncWebsocketConsumer with the dispatch loop and `dispatch` below."""

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Channels' AsyncConsumer.__call__, with `_dispatch_all` in place of its
        `await_many_dispatch`."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources: list[Callable[[], Awaitable[Any]]] = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        with contextlib.suppress(StopConsumer):
            await self._dispatch_all(sources)

    async def _dispatch_all(self, sources: list[Callable[[], Awaitable[Any]]]) -> None:
        """Hands every message from the phone and from the channel layer to `dispatch`, in
        the order each source gave them.

        Channels' loop takes one message per source per event-loop turn (a task per
        message). A busy phone gets about two messages for each SMS (the offer, its claim),
        so under load that loop, not the CPU, set the pace (bench/send.py: offers 200 ms
        late at 100 SMS/s). Here one pump per source moves everything its queue holds into
        one inbox, and everything in the inbox is dispatched in the same turn."""
        inbox = Inbox(INBOX_SIZE)

        async def pump(source: Callable[[], Awaitable[Any]]) -> None:
            try:
                while True:
                    await inbox.put(await source())
            except Exception as exc:  # a source that fails stops the consumer, as in Channels
                await inbox.put(_SourceFailed(exc))

        pumps = [asyncio.create_task(pump(source)) for source in sources]
        try:
            while True:
                message = await inbox.get()  # no wait while the inbox holds messages
                if isinstance(message, _SourceFailed):
                    raise message.error
                await self.dispatch(message)
        finally:
            for pump_task in pumps:
                pump_task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' own dispatch first closes stale database connections, in its single
        sync thread, for every frame and every channel-layer event: a thread round trip per
        offer and per claim, the largest cost of a busy phone connection (bench/send.py).
        A subclass never touches the ORM on the event loop; every call goes through
        `orm()`, which does that clean-up in its own thread. So: straight to the handler."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except Exception as exc:
            # A phone's frame that got past the subclass's checks must not close it with
            # 1011; anything else (a bug, a channel-layer event) still ends the consumer.
            if message["type"] != "websocket.receive" or not await self.refused_input(exc):
                raise

    async def refused_input(self, exc: Exception) -> bool:
        """True if `exc` came from unusable input (`accounts.errors.input_error`) and the
        phone was told so through `refuse_input`; the connection stays open."""
        sentence = errors.input_error(exc)
        if sentence is None:
            return False
        logger.warning("refused unusable frame: %s", sentence, exc_info=exc)
        await self.refuse_input(sentence)
        return True

    async def refuse_input(self, sentence: str) -> None:
        """Tells the peer its frame was refused; subclasses say it in their protocol."""
        await self.close(code=1007)  # RFC 6455: data inconsistent with the message's type
