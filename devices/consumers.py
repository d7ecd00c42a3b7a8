"""The phones' WebSocket: protocol frames in (docs/device-protocol.md), service calls, frames out.

Async, because one process holds many idle phones and answers pings and offers without
a thread hop; the ORM is reached only through the small helpers below (see
`bench/consumer.py` for the measurement). The database is the truth: on connect,
on `state: available` (but the one right after the connect's own offers), on
`work.available` hints and on a periodic tick the phone
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
from devices.lib import daphne_ws
from devices.list_offers import ListOffers
from devices.models import Device
from devices.rounds import ClaimRounds
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
def _connected(device: Device, channel_name: str, with_work: bool) -> tuple[str, list[Message]]:
    """A connect's database work in one trip: the phone marked connected (the channel of the
    connection it replaces, "" if none), and its open work if it may take work."""
    previous = services.mark_connected(device_id=device.pk, channel_name=channel_name)
    return previous, dispatch.open_messages_for_device(device=device, limit=OFFER_BATCH) if with_work else []


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
def _claim(device: Device, message_id: str) -> tuple[dispatch.ClaimResult, bool]:
    """The phone's claim, and whether the message is still open for another phone if not won."""
    result = dispatch.claim_for_phone(device=device, message_id=message_id)
    if result.message is not None:
        return result, False
    return result, result.capped_until is not None or dispatch.message_is_open(message_id=message_id)


@orm
def _report(device: Device, message_id: str, status: str, error: str, at: datetime | None) -> Message | None:
    return dispatch.report_message(device=device, message_id=message_id, status=status, error=error, at=at)


@orm
def _incoming(device: Device, sender: str, text: str, at: datetime, sim: int | None) -> str:
    return inbox.record_incoming_sms(device=device, sender=sender, text=text, received_at=at, sim=sim).public_id


# The periodic checks of every phone connection of this process (devices/fleet.py).
fleet = FleetScheduler(open_work=selectors.lists_with_open_work)
# Who of this process's phones gets each message (devices/rounds.py).
claims = ClaimRounds(try_claim=_claim, phones_of=fleet.phones_of, phones_online=fleet.phones_online)


async def _offer_to_list(list_id: int, event: dict[str, Any]) -> None:
    await claims.offer(list_id, event["frame"]["message_id"], _offer_text(event), event.get("offer_id"))


def _offer_text(event: dict[str, Any]) -> str:
    """The offer frame as JSON text, serialised once by the sender for every phone."""
    text = event.get("text")
    return text if isinstance(text, str) else json.dumps(event["frame"], ensure_ascii=False, separators=(",", ":"))


def _is_held(connection: object) -> bool:
    return connection in fleet.held


# The offers made to the lists of this process's phones: one copy a process (devices/list_offers.py).
list_offers = ListOffers(on_offer=_offer_to_list, is_held=_is_held)
# Offers of messages pinned to one phone that a connection remembers (their claim rounds
# need not wait for other phones).
MAX_PINNED_REMEMBERED = 1000


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
    # When this consumer last handled a frame of the phone (see `last_frame_at`).
    frame_at: datetime
    last_presence_write: datetime
    # Daphne's protocol of this connection, which answers the phone's pings itself.
    heard: daphne_ws.Heard | None = None
    frame_tasks: set[asyncio.Task[None]]
    # The last frame task of each message with frames in flight (see `receive`).
    message_frames: dict[str, asyncio.Task[None]]
    frames_in_flight: asyncio.Semaphore
    closed: bool = False
    # At one of its caps until this time.time(): not offered work, its claims lose at once.
    capped_until: float = 0.0
    reoffer: asyncio.TimerHandle | None = None
    # Made on first use: most phones are never offered a pinned message (memory per connection).
    pinned_offers: frozenset[str] | set[str] = frozenset()
    # The connect just offered the open work: the `state` every phone sends right after its
    # `hello` need not read it again. Any later `state: available` does ("more, please":
    # the connect offers at most OFFER_BATCH).
    offered_on_connect: bool = False

    @property
    def last_frame_at(self) -> datetime:
        """When the phone last sent a frame: one this consumer handled, or a ping Daphne's
        protocol answered (devices/lib/daphne_ws.py)."""
        if self.heard is not None and self.heard.heard_at > self.frame_at.timestamp():
            return datetime.fromtimestamp(self.heard.heard_at, UTC)
        return self.frame_at

    # --- connection lifecycle ---

    async def connect(self) -> None:
        self.device = self.scope["device"]
        self.available = self.device.is_available
        self.bad_frames = 0
        self.frame_tasks = set()
        self.message_frames = {}
        self.frames_in_flight = asyncio.Semaphore(MAX_FRAMES_IN_FLIGHT)
        self.frame_at = self.last_presence_write = timezone.now()
        heard = daphne_ws.heard_from(self.scope)
        if heard is not None:  # under Daphne (the class says None otherwise)
            self.heard = heard
        await self.join_groups()
        await self.accept()
        # Joined before its open work is read: what is queued after the read is offered
        # through the groups.
        previous, work = await _connected(self.device, self.channel_name, self.may_take_work())
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
                # `caps`: this phone's own caps, else its list's (docs/device-protocol.md).
                "settings": {**self.device.phone_list.phone_settings(), "caps": self.device.caps},
            }
        )
        await self._offer_messages(work)
        self.offered_on_connect = True
        if not self.closed:
            fleet.register(self)

    async def disconnect(self, code: int) -> None:
        self.closed = True  # claims and reports still in flight finish without answering
        fleet.unregister(self)
        if self.reoffer is not None:
            self.reoffer.cancel()
        if not hasattr(self, "device"):
            return
        with contextlib.suppress(Exception):  # membership expires on its own
            await list_offers.leave(self)
        with contextlib.suppress(Exception):
            for group in self._groups():
                await self.channel_layer.group_discard(group, self.channel_name)
        await _mark_disconnected(self.device.pk, self.channel_name)

    def _groups(self) -> list[str]:
        return [services.list_group(self.device.phone_list_id), services.device_group(self.device.pk)]

    async def join_groups(self) -> None:
        """Joins (or re-joins) the list and device groups, and the process's listener for
        the list's offers. Offers through them are only hints, so a channel layer that is
        down does not stop the phone."""
        try:
            for group in self._groups():
                await self.channel_layer.group_add(group, self.channel_name)
            await list_offers.join(self)
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
        self.frame_at = timezone.now()  # alive: the scheduler writes presence (devices/fleet.py)
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
        if self.is_capped():
            await self.send_frame({"type": "taken", "message_id": message_id})
            return
        outcome = await claims.claim(self, message_id, alone=message_id in self.pinned_offers)
        if outcome.capped_until is not None:
            self.capped(outcome.capped_until)
        if outcome.message is None:
            await self.send_frame({"type": "taken", "message_id": message_id})
        else:
            if message_id in self.pinned_offers:
                self.pinned_offers = self.pinned_offers - {message_id}
            await self.send_frame({**offer_frame(outcome.message), "type": "assign"})

    # --- caps ---

    def is_capped(self) -> bool:
        return self.capped_until > time.time()

    def may_take_work(self) -> bool:
        """Whether this phone may be given a message now: available, under its caps, and not
        paused after a phone-side failed send (the claim checks the pause in the database too)."""
        return self.available and not self.closed and not self.is_capped() and not self.device.is_paused

    def capped(self, until: datetime) -> None:
        """The phone is at one of its caps until `until`: no offers until then, and then the
        open work (the fleet's tick would offer it too, later)."""
        self.capped_until = until.timestamp()
        if self.reoffer is not None:
            self.reoffer.cancel()
        delay = max(self.capped_until - time.time(), 0.0) + 0.05
        self.reoffer = asyncio.get_running_loop().call_later(delay, self._offer_again)

    def caps_changed(self) -> None:
        """The phone's caps were changed: whether it is at one is found out anew."""
        self.capped_until = 0.0

    def _offer_again(self) -> None:
        self.reoffer = None
        if not self.closed:
            task = asyncio.get_running_loop().create_task(self.offer_open_work())
            self.frame_tasks.add(task)
            task.add_done_callback(self.frame_tasks.discard)

    async def on_report(self, content: dict[str, Any]) -> None:
        message_id = _text(content, "message_id", max_length=40)
        status = content.get("status")
        if status not in dispatch.REPORT_STATUSES:
            raise FrameError("`status` must be sent, delivered or failed.")
        error = _text(content, "error", max_length=500, required=False)
        message = await _report(self.device, message_id, str(status), error, _time(content, "at"))
        if message is None:
            await self.send_frame({"type": "error", "error": "Unknown message.", "message_id": message_id})
            return
        if message.status == Message.Status.QUEUED:
            claims.forget(message_id)  # failed over: the list's other phones may claim it now
        if status == Message.Status.FAILED and self.device.paused_until is not None and self.device.is_paused:
            # Paused after a phone-side failure: like a cap, no offers until it ends, then the open work.
            self.capped(self.device.paused_until)
        await self.send_frame({"type": "ack", "message_id": message_id, "status": status})

    async def on_state(self, content: dict[str, Any]) -> None:
        available = content.get("available")
        if not isinstance(available, bool):
            raise FrameError("`available` must be true or false.")
        battery, signal = _int(content, "battery", 0, 100), _int(content, "signal", -200, 100)
        device = self.device
        if available != self.available or battery not in (None, device.battery) or signal not in (None, device.signal):
            await _set_state(device.pk, available, battery, signal)  # presence too
            device.battery = device.battery if battery is None else battery
            device.signal = device.signal if signal is None else signal
            self.last_presence_write = timezone.now()
        # Else nothing to store: every phone repeats its state right after `hello`, mostly
        # as it was (a statement less per connect); the fleet's pass keeps presence fresh.
        was_available, self.available = self.available, available
        just_offered, self.offered_on_connect = self.offered_on_connect, False
        if available and not (was_available and just_offered):
            # Not for the `state` right after connecting while it was available: the connect
            # offered its open work a moment ago. Otherwise it asks for more, or became free.
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
        """Offers this phone the open work the database holds for it (if it may take work)."""
        if not self.may_take_work():
            return
        await self._offer_messages(await _open_work(self.device))

    async def _offer_messages(self, messages: list[Message]) -> None:
        if not self.may_take_work():
            return
        for message in messages:
            if message.pinned_device_id is not None:
                self._remember_pinned(message.public_id)
            await self.send_frame(offer_frame(message))

    def _remember_pinned(self, message_id: str) -> None:
        if not isinstance(self.pinned_offers, set) or len(self.pinned_offers) >= MAX_PINNED_REMEMBERED:
            self.pinned_offers = set()  # only a hint: a forgotten one's round waits for the list's phones
        self.pinned_offers.add(message_id)

    # --- channel-layer events (handler names mirror the event types) ---

    async def message_offer(self, event: dict[str, Any]) -> None:
        """An offer pinned to this phone; one of its list's while it was connecting (the
        process's listener passes it on, devices/list_offers.py); or one sent to the list's
        group by a server of before the listener (a copy to every connection)."""
        if not self.may_take_work():
            return
        frame = event["frame"]
        text = _offer_text(event)
        if event.get("pinned"):
            self._remember_pinned(frame["message_id"])
        elif self in fleet.held:
            # Offered to the list: the claim rounds offer it to the phone here next in turn
            # first, and to the others only if that one does not claim it in time.
            await claims.offer(self.device.phone_list_id, frame["message_id"], text, event.get("offer_id"))
            return
        await self.send(text_data=text)  # pinned to this phone, or not among the fleet's yet

    async def send_offer(self, text: str) -> None:
        """An offer the claim rounds give this phone (`offer` frame as JSON text)."""
        if self.may_take_work():
            await self.send(text_data=text)

    async def work_available(self, event: dict[str, Any]) -> None:
        await self.offer_open_work()

    async def device_close(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.send_frame({"type": "error", "error": f"Connection closed: {event.get('reason', '')}."})
        await self.close(code=int(event.get("code", services.CLOSE_DISABLED)))
