"""A Channels layer for servers that hold many phone connections: groups live in the
process, and one Redis pub/sub subscription per process carries every message to every
server process once.

Why not channels_redis: its list-based layer stores one copy of a group message per member
and each member pops its own (two Redis round trips per member per message); its pub/sub
layer fixes that, but reads with redis-py's asyncio client, which takes one event-loop
iteration per message. On a busy server (bench/send.py: 10 phones, 100 offers/s) either
one fell seconds behind. Here a reader thread takes everything Redis has sent in one go and
hands it to the event loop in one call.

Publishing does not wait for Redis's answer: each process publishes on one connection
in `CLIENT REPLY OFF` mode, so a PUBLISH is one write to a socket (about a sixth of the CPU
of a PUBLISH that reads its reply, and no round trip on the send API's path). Commands on
one connection run in the order they were written, so publishes from one process still
arrive in order.

Before each write the publisher looks for the end of its connection (Redis sends nothing
on it, so anything readable is the close of a restart or a CLIENT KILL) and reconnects:
a write to a closed socket would succeed locally and its PUBLISH vanish.

Delivery is still at most once, like any pub/sub: what is published while a reader is
reconnecting is lost, and so is a publish written in the instant between Redis closing
the connection and the close reaching us. Phonefleet sends only hints this way:
offers, "work waiting", "close this connection"; phones also read their work from the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import msgpack
import redis
from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

GROUP = "g"
CHANNEL = "c"
# Longest wait between reconnection attempts of the reader.
MAX_BACKOFF_SECONDS = 5.0
# Messages handed to the event loop in one call at most.
BATCH = 500


class FanoutChannelLayer(BaseChannelLayer):
    """Channel layer with process-local groups and channels, joined across processes by one
    Redis PSUBSCRIBE per process (see the module docstring)."""

    extensions = ["groups", "flush"]

    def __init__(
        self, hosts: list[Any] | None = None, prefix: str | None = None, capacity: int = 1000, **kwargs: Any
    ) -> None:
        super().__init__(capacity=capacity)
        host = (hosts or ["redis://127.0.0.1:6379/0"])[0]
        self.address = host["address"] if isinstance(host, dict) else str(host)
        # Pub/sub channels are shared by all databases of a Redis server: by default the
        # prefix names the database, so two installations on one server do not cross-talk.
        self.prefix = prefix or f"fanout.{redis.connection.parse_url(self.address).get('db', 0)}"
        # channel name → (the event loop that receives on it, its queue)
        self._channels: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = {}
        self._groups: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()  # guards the two dicts above against the reader thread
        self._reader: threading.Thread | None = None
        self._reader_pid = 0
        self._publisher: redis.connection.ConnectionInterface | None = None
        self._publisher_pid = 0
        self._publish_lock = threading.Lock()  # one writer at a time on the publishing connection
        self.dropped = 0  # messages lost to full queues (a consumer that stopped reading)
        self.listening = threading.Event()  # set while the reader's subscription is live

    # --- publishing (any thread) ---

    def _client(self) -> redis.connection.ConnectionInterface:
        """This process's publishing connection, opened in CLIENT REPLY OFF mode (call it
        holding `_publish_lock`)."""
        if self._publisher is None or self._publisher_pid != os.getpid():  # new process after a fork
            pool = redis.ConnectionPool.from_url(
                self.address, socket_timeout=5, socket_connect_timeout=5, client_name=f"{self.prefix}.publisher"
            )
            connection = pool.make_connection()
            connection.connect()
            connection.send_command("CLIENT", "REPLY", "OFF")  # answered by silence
            self._publisher, self._publisher_pid = connection, os.getpid()
            return connection
        return self._publisher

    def _publish(self, name: str, message: dict[str, Any]) -> None:
        """One PUBLISH, written and not waited for; a broken connection is replaced once."""
        command = None
        with self._publish_lock:
            for attempt in (1, 2):
                connection = self._client()
                command = command or connection.pack_command("PUBLISH", name, msgpack.packb(message))
                try:
                    # With replies off Redis never writes to us: anything to read is the end
                    # of the connection (a restart, CLIENT KILL). A write to a closed socket
                    # still succeeds locally and its PUBLISH would vanish; this read (under
                    # a microsecond) finds the close first and raises.
                    if connection.can_read(timeout=0):
                        raise redis.ConnectionError("unexpected data on the publishing connection")
                    connection.send_packed_command(command, check_health=False)
                    return
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    self._publisher = None
                    with contextlib.suppress(Exception):
                        connection.disconnect()
                    if attempt == 2:
                        raise

    def wait_published(self) -> None:
        """Returns once Redis has run every publish this process has written: turning
        replies back on is answered only after the commands before it have run."""
        with self._publish_lock:
            if self._publisher is None or self._publisher_pid != os.getpid():
                return
            self._publisher.send_command("CLIENT", "REPLY", "ON")
            self._publisher.read_response()
            self._publisher.send_command("CLIENT", "REPLY", "OFF")

    def publish_group(self, group: str, message: dict[str, Any]) -> None:
        """Sends `message` to every member of `group` in every process, from synchronous code."""
        self.require_valid_group_name(group)
        self._publish(f"{self.prefix}:{GROUP}:{group}", message)

    def publish_channel(self, channel: str, message: dict[str, Any]) -> None:
        """Sends `message` to one channel, in whichever process holds it, from synchronous code."""
        self.require_valid_channel_name(channel)
        self._publish(f"{self.prefix}:{CHANNEL}:{channel}", message)

    # --- the Channels layer API ---

    async def new_channel(self, prefix: str = "specific.") -> str:
        name = f"{prefix}{uuid.uuid4().hex}"
        self._register(name)
        return name

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self.publish_channel, channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self.publish_group, group, message)

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self._register(channel)
        with self._lock:
            self._groups[group].add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.discard(channel)
                if not members:
                    del self._groups[group]

    async def receive(self, channel: str) -> dict[str, Any]:
        _loop, queue = self._register(channel)
        try:
            return await queue.get()
        except asyncio.CancelledError:
            # The consumer is gone (Channels cancels its receive when it stops): forget it.
            self._forget(channel)
            raise

    async def flush(self) -> None:
        with self._lock:
            self._channels.clear()
            self._groups.clear()

    # --- local bookkeeping (event-loop thread) ---

    def _register(self, channel: str) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]:
        entry = self._channels.get(channel)
        if entry is None:
            self.require_valid_channel_name(channel)
            entry = (asyncio.get_running_loop(), asyncio.Queue(self.get_capacity(channel)))
            with self._lock:
                self._channels[channel] = entry
            self._ensure_reader()
        return entry

    def _forget(self, channel: str) -> None:
        with self._lock:
            self._channels.pop(channel, None)
            for group in [g for g, members in self._groups.items() if channel in members]:
                self._groups[group].discard(channel)
                if not self._groups[group]:
                    del self._groups[group]

    # --- the reader thread ---

    def _ensure_reader(self) -> None:
        if self._reader is not None and self._reader.is_alive() and self._reader_pid == os.getpid():
            return
        with self._lock:
            if self._reader is None or not self._reader.is_alive() or self._reader_pid != os.getpid():
                self._reader = threading.Thread(target=self._read_forever, name="channel-layer-reader", daemon=True)
                self._reader_pid = os.getpid()
                self._reader.start()

    def _read_forever(self) -> None:
        backoff = 0.1
        while True:
            pubsub = None
            try:
                client = redis.Redis.from_url(
                    self.address,
                    socket_connect_timeout=5,
                    health_check_interval=30,
                    client_name=f"{self.prefix}.reader",  # how CLIENT LIST shows it
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(f"{self.prefix}:*")
                pubsub.get_message(timeout=5.0)  # the subscription's confirmation
                self.listening.set()
                backoff = 0.1
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    batch = [message]
                    # Everything already received goes in the same hand-over.
                    while len(batch) < BATCH and (more := pubsub.get_message(timeout=0)) is not None:
                        batch.append(more)
                    self._hand_over(batch)
            except Exception:
                self.listening.clear()
                logger.warning("channel layer: Redis subscription lost; reconnecting", exc_info=True)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def _hand_over(self, batch: list[dict[str, Any]]) -> None:
        """Resolves each published message to this process's receiving channels and queues
        it on their event loops, one call per loop for the whole batch."""
        per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[dict[str, Any]], dict[str, Any]]]]
        per_loop = defaultdict(list)
        for raw in batch:
            name = raw["channel"].decode() if isinstance(raw["channel"], bytes) else raw["channel"]
            kind, target = name[len(self.prefix) + 1 :].split(":", 1)  # the prefix may hold ":"
            with self._lock:
                members = list(self._groups.get(target, ())) if kind == GROUP else [target]
                entries = [self._channels[m] for m in members if m in self._channels]
            if not entries:
                continue
            message = msgpack.unpackb(raw["data"])
            for loop, queue in entries:
                per_loop[loop].append((queue, message))
        for loop, items in per_loop.items():
            try:
                loop.call_soon_threadsafe(self._put_all, items)
            except RuntimeError:  # that loop is closed: its channels are gone
                with self._lock:
                    for name in [n for n, (owner, _q) in self._channels.items() if owner is loop]:
                        del self._channels[name]

    def _put_all(self, items: list[tuple[asyncio.Queue[dict[str, Any]], dict[str, Any]]]) -> None:
        for queue, message in items:
            try:
                queue.put_nowait(dict(message))  # each receiver its own (shallow) copy
            except asyncio.QueueFull:
                self.dropped += 1
