"""The phones' WebSocket: protocol frames in (docs/device-protocol.md), service calls, frames out.

Async, because one process holds many idle phones and answers pings and offers without
a thread hop; the ORM is reached only through the small helpers below (see
`bench/consumer.py` for the measurement). The database is the truth: on connect,
on every `state: available`, on `work.available` hints and on a periodic tick the phone
is offered the open work from the database, so nothing depends on a channel-layer
message arriving. The periodic checks of all the connections of a process (idle, presence,
disabled, open work) are one scheduler's (`devices/fleet.py`), not a timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.lib import safejson
from devices import services
from devices.consumer_base import DrainingConsumer, decode_frame, orm
from devices.fleet import FleetScheduler
from devices.models import Device
from messaging import selectors
from messaging.models import Message
from messaging.services import dispatch, inbox
from messaging.services.offers import offer_frame

logger = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024
MAX_BAD_FRAMES = 10
# Claims and reports of one phone handled at the same time; a phone sending more waits.
MAX_FRAMES_IN_FLIGHT = 32
OFFER_BATCH = 20


class FrameError(Exception):
    """A frame that does not follow the protocol; the phone gets an `error` frame."""


# --- ORM helpers (each one short database call in a worker thread) -----------------


@orm
def _mark_connected(device_id: int, channel_name: str) -> str:
    return services.mark_connected(device_id=device_id, channel_name=channel_name)


@orm
def _mark_disconnected(device_id: int, channel_name: str) -> None:
    services.mark_disconnected(device_id=device_id, channel_name=channel_name)


@orm
def _set_state(device_id: int, available: bool, battery: int | None, signal: int | None) -> None:
    services.set_device_state(device_id=device_id, available=available, battery=battery, signal=signal)


@orm
def _open_work(device: Device) -> list[Message]:
    return dispatch.open_messages_for_device(device=device, limit=OFFER_BATCH)


@orm
def _claim(device: Device, message_id: str) -> Message | None:
    return dispatch.claim_message(device=device, message_id=message_id)


@orm
def _report(device: Device, message_id: str, status: str, error: str, at: datetime | None) -> Message | None:
    return dispatch.report_message(device=device, message_id=message_id, status=status, error=error, at=at)


@orm
def _incoming(device: Device, sender: str, text: str, at: datetime, sim: int | None) -> str:
    return inbox.record_incoming_sms(device=device, sender=sender, text=text, received_at=at, sim=sim).public_id


class ClaimSingleFlight:
    """Spares the database the claims that cannot win, within this process.

    Every phone of a list is offered each message, so nearly all claims lose. While one
    claim for a message is in flight here, the others wait for its result instead of
    queuing their own UPDATE; a message won here recently is answered `taken` at once.
    The database still decides every assignment: a wait that ends without a winner (the
    claimer was unavailable or over its rate) falls through to a real claim, and a
    "recently taken" entry lives far shorter than any lease.
    """

    TAKEN_SECONDS = 5.0  # below the shortest lease (MIN_LEASE_SECONDS)
    MAX_REMEMBERED = 50_000

    def __init__(self) -> None:
        self.in_flight: dict[str, asyncio.Future[bool]] = {}
        self.taken_until: dict[str, float] = {}

    async def claim(self, device: Device, message_id: str) -> Message | None:
        now = time.monotonic()
        if self.taken_until.get(message_id, 0.0) > now:
            return None
        pending = self.in_flight.get(message_id)
        if pending is not None and await asyncio.shield(pending):
            return None  # another phone here got it
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.in_flight[message_id] = done
        message = None
        try:
            message = await _claim(device, message_id)
        finally:
            if self.in_flight.get(message_id) is done:
                del self.in_flight[message_id]
            done.set_result(message is not None)
        if message is not None:
            self._remember(message_id, now)
        return message

    def _remember(self, message_id: str, now: float) -> None:
        if len(self.taken_until) >= self.MAX_REMEMBERED:
            self.taken_until = {mid: until for mid, until in self.taken_until.items() if until > now}
        self.taken_until[message_id] = now + self.TAKEN_SECONDS


claims = ClaimSingleFlight()
# The periodic checks of every phone connection of this process (devices/fleet.py).
fleet = FleetScheduler(open_work=selectors.lists_with_open_work)


# --- Frame field checks ----------------------------------------------------------------


def _text(content: dict[str, Any], field: str, *, max_length: int, required: bool = True) -> str:
    value = content.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > max_length:
        raise FrameError(f"`{field}` must be a string of 1 to {max_length} characters.")
    return value


def _int(content: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = content.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FrameError(f"`{field}` must be a whole number from {low} to {high}.")
    return value


def _time(content: dict[str, Any], field: str) -> datetime | None:
    value = content.get(field)
    if value is None:
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
        # In UTC: 0001-01-01T00:00:00+23:59 is readable but falls before the year 1.
        parsed = parsed.astimezone(UTC) if parsed is not None and parsed.tzinfo else parsed
    except (ValueError, OverflowError):  # 2026-02-30, or the above
        parsed = None
    if parsed is None:
        raise FrameError(f"`{field}` must be an ISO 8601 time such as 2026-01-31T12:00:00Z.")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class DeviceConsumer(DrainingConsumer):
    """One phone's connection. The middleware has authenticated it: `scope["device"]`."""

    device: Device
    available: bool
    bad_frames: int
    last_frame_at: datetime
    last_presence_write: datetime
    frame_tasks: set[asyncio.Task[None]]
    # The last frame task of each message with frames in flight (see `receive`).
    message_frames: dict[str, asyncio.Task[None]]
    frames_in_flight: asyncio.Semaphore
    closed: bool = False

    # --- connection lifecycle ---

    async def connect(self) -> None:
        self.device = self.scope["device"]
        self.available = self.device.is_available
        self.bad_frames = 0
        self.frame_tasks = set()
        self.message_frames = {}
        self.frames_in_flight = asyncio.Semaphore(MAX_FRAMES_IN_FLIGHT)
        self.last_frame_at = self.last_presence_write = timezone.now()
        await self.join_groups()
        await self.accept()
        previous = await _mark_connected(self.device.pk, self.channel_name)
        if previous and previous != self.channel_name:
            # The phone reconnected while its old socket still looked alive: close that one.
            with contextlib.suppress(Exception):  # a dead one needs no closing
                await self.channel_layer.send(
                    previous, {"type": "device.close", "code": services.CLOSE_REPLACED, "reason": "replaced"}
                )
        await self.send_frame(
            {
                "type": "hello",
                "device_id": self.device.public_id,
                "list": self.device.phone_list.token,
                "settings": self.device.phone_list.phone_settings(),
            }
        )
        await self.offer_open_work()
        if not self.closed:
            fleet.register(self)

    async def disconnect(self, code: int) -> None:
        self.closed = True  # claims and reports still in flight finish without answering
        fleet.unregister(self)
        if not hasattr(self, "device"):
            return
        with contextlib.suppress(Exception):  # membership expires on its own
            for group in self._groups():
                await self.channel_layer.group_discard(group, self.channel_name)
        await _mark_disconnected(self.device.pk, self.channel_name)

    def _groups(self) -> list[str]:
        return [services.list_group(self.device.phone_list_id), services.device_group(self.device.pk)]

    async def join_groups(self) -> None:
        """Joins (or re-joins) the list and device groups. Offers through them are only
        hints, so a channel layer that is down does not stop the phone."""
        try:
            for group in self._groups():
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            logger.warning("device %s: channel layer unavailable; relying on ticks", self.device.public_id)

    # --- frames from the phone ---

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = self._decode(text_data)
            handler = self.FRAME_HANDLERS.get(content["type"])
            if handler is None:
                raise FrameError(f"Unknown frame type {content['type']!r}.")
        except FrameError as exc:
            await self._bad_frame(str(exc))
            return
        self.last_frame_at = timezone.now()  # alive: the scheduler writes presence (devices/fleet.py)
        if content["type"] not in self.CONCURRENT_FRAMES:
            await self._handle(handler, content)
            return
        # Claims and reports wait on the database: answered in their own task, so the offers
        # that keep arriving for this phone are not queued behind them. Bounded per phone.
        # Frames of one message run one after the other, in the order the phone sent them
        # (a `sent` and a `delivered` sent back to back are applied in that order, R29);
        # frames of different messages run side by side.
        await self.frames_in_flight.acquire()
        message_id = content.get("message_id")
        key = message_id if isinstance(message_id, str) else None
        previous = self.message_frames.get(key) if key is not None else None
        task = asyncio.create_task(self._handle_after(previous, handler, content))
        self.frame_tasks.add(task)
        if key is not None:
            self.message_frames[key] = task
        task.add_done_callback(lambda done: self._frame_done(done, key))

    def _frame_done(self, task: asyncio.Task[None], key: str | None) -> None:
        self.frame_tasks.discard(task)
        if key is not None and self.message_frames.get(key) is task:
            del self.message_frames[key]  # the last frame of that message so far is done
        self.frames_in_flight.release()

    async def _handle_after(
        self,
        previous: asyncio.Task[None] | None,
        handler: Callable[[Any, dict[str, Any]], Awaitable[None]],
        content: dict[str, Any],
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # only its end matters: it answered for itself
        await self._handle(handler, content)

    async def _handle(self, handler: Callable[[Any, dict[str, Any]], Awaitable[None]], content: dict[str, Any]) -> None:
        try:
            await handler(self, content)
        except FrameError as exc:
            await self._bad_frame(str(exc))
        except Exception as exc:
            if await self.refused_input(exc):
                return
            logger.exception("device %s: frame failed", self.device.public_id)
            await self.send_frame({"type": "error", "error": "The server could not handle that frame; try again."})

    def _decode(self, text_data: str | None) -> dict[str, Any]:
        if text_data is None:
            raise FrameError("Frames are JSON text, not binary.")
        if len(text_data) > MAX_FRAME_CHARS:
            raise FrameError(f"Frames are at most {MAX_FRAME_CHARS} characters.")
        try:
            content = decode_frame(text_data)
        except safejson.UnusableJson as exc:
            raise FrameError(str(exc))
        except ValueError:
            raise FrameError("A frame must be a JSON object.")
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            raise FrameError('A frame must be a JSON object with a string "type".')
        return content

    async def refuse_input(self, sentence: str) -> None:
        await self._bad_frame(sentence)

    async def _bad_frame(self, problem: str) -> None:
        self.bad_frames += 1
        await self.send_frame({"type": "error", "error": problem})
        if self.bad_frames >= MAX_BAD_FRAMES:
            await self.close(code=services.CLOSE_BAD_FRAMES)

    async def on_ping(self, content: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong"})

    async def on_pong(self, content: dict[str, Any]) -> None:
        return None

    async def on_claim(self, content: dict[str, Any]) -> None:
        message_id = _text(content, "message_id", max_length=40)
        message = await claims.claim(self.device, message_id)
        if message is None:
            await self.send_frame({"type": "taken", "message_id": message_id})
        else:
            await self.send_frame({**offer_frame(message), "type": "assign"})

    async def on_report(self, content: dict[str, Any]) -> None:
        message_id = _text(content, "message_id", max_length=40)
        status = content.get("status")
        if status not in dispatch.REPORT_STATUSES:
            raise FrameError("`status` must be sent, delivered or failed.")
        error = _text(content, "error", max_length=500, required=False)
        message = await _report(self.device, message_id, str(status), error, _time(content, "at"))
        if message is None:
            await self.send_frame({"type": "error", "error": "Unknown message.", "message_id": message_id})
        else:
            await self.send_frame({"type": "ack", "message_id": message_id, "status": status})

    async def on_state(self, content: dict[str, Any]) -> None:
        available = content.get("available")
        if not isinstance(available, bool):
            raise FrameError("`available` must be true or false.")
        battery, signal = _int(content, "battery", 0, 100), _int(content, "signal", -200, 100)
        await _set_state(self.device.pk, available, battery, signal)
        self.available = available
        self.last_presence_write = timezone.now()
        if available:
            await self.offer_open_work()

    async def on_incoming(self, content: dict[str, Any]) -> None:
        sender = _text(content, "from", max_length=32)
        text = _text(content, "msg", max_length=10_000)
        at = _time(content, "at") or timezone.now()
        sms_id = await _incoming(self.device, sender, text, at, _int(content, "sim", 0, 8))
        await self.send_frame({"type": "ack", "message_id": sms_id, "status": "received", "id": content.get("id")})

    # Frames answered in a task of their own (see `receive`).
    CONCURRENT_FRAMES = frozenset({"claim", "report"})

    FRAME_HANDLERS = {
        "ping": on_ping,
        "pong": on_pong,
        "claim": on_claim,
        "report": on_report,
        "state": on_state,
        "incoming": on_incoming,
    }

    # --- frames to the phone ---

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        await self.send(text_data=json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    async def offer_open_work(self) -> None:
        """Offers this phone the open work the database holds for it (if it is available)."""
        if not self.available:
            return
        for message in await _open_work(self.device):
            await self.send_frame(offer_frame(message))

    # --- channel-layer events (handler names mirror the event types) ---

    async def message_offer(self, event: dict[str, Any]) -> None:
        if self.available and not self.closed:
            # The frame as JSON text, serialised once by the sender for every phone.
            text = event.get("text")
            if isinstance(text, str):
                await self.send(text_data=text)
            else:
                await self.send_frame(event["frame"])

    async def work_available(self, event: dict[str, Any]) -> None:
        await self.offer_open_work()

    async def device_close(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.send_frame({"type": "error", "error": f"Connection closed: {event.get('reason', '')}."})
        await self.close(code=int(event.get("code", services.CLOSE_DISABLED)))
