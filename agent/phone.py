"""One phone: enrolment, the WebSocket session, claiming, sending and reporting."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agent.backends import Backend, SendResult
from agent.store import PhoneState

logger = logging.getLogger("agent")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
# While nothing listens (a server restarting: the kernel refuses the connection at once,
# which costs the server nothing) the backoff grows only to this, so a restarted server
# sees its phones within seconds and paces them itself (503 or 4503 with a time).
REFUSED_BACKOFF_CAP = 15.0
# Application-level pings keep the server's presence lease fresh.
PING_SECONDS = 20.0
INBOX_POLL_SECONDS = 15.0
# A connection that lived this long resets the backoff.
STABLE_SECONDS = 10.0
MAX_REMEMBERED_OFFERS = 100


class EnrolmentRefused(Exception):
    """The server said no (wrong PIN, or locked out for longer than we wait)."""


class TokenRefused(Exception):
    """The server refused the device token at the handshake (disabled or removed)."""


class PhoneLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the phone's name (several phones share one process)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['phone'] if self.extra else '?'}] {msg}", kwargs


def backoff_delay(attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)]."""
    return rng.uniform(0, min(cap, base * 2 ** min(attempt, 30)))


def busy_delay(retry_after: float, rng: random.Random) -> float:
    """The wait after the server said it is busy (HTTP 503 with `Retry-After`, or close
    4503 with `retry_after`): within the second before that time. The server hands out
    its times one slot of its accept rate after another, rounded up to whole seconds, so
    the phones told the same second come back spread over it. (Half to one and a half
    times the time, as before, brought phones back early to be told again, behind every
    phone already waiting, and left slots unused: in a simulation of a restart of 10,000
    phones at 300 handshakes a second, 99 % were back after 51 s instead of 42.)"""
    return rng.uniform(max(0.0, retry_after - 1.0), retry_after)


def retry_after_header(value: str | None) -> float | None:
    """The seconds of an HTTP `Retry-After` of 1 to 3600 s (None for a date, garbage or none)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if 0 < seconds <= 3600 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ws_url(server: str, path: str) -> str:
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, path or "/ws/device/", "", ""))


class Phone:
    """A phone of the fleet. `run()` keeps it connected until `stop` is set."""

    def __init__(
        self,
        *,
        server: str,
        name: str,
        pin: str | None,
        backend: Backend,
        state: PhoneState,
        concurrency: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.name = name
        self.pin = pin
        self.backend = backend
        self.state = state
        self.concurrency = max(1, concurrency)
        self.rng = rng or random.Random()
        self.ws: ClientConnection | None = None
        self.claiming: set[str] = set()
        # Offers not claimed yet (no room at the time), newest last; tried when room frees up.
        self.offered: dict[str, None] = {}
        self.inflight: set[str] = set()
        self.pending_incoming: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        # Set by the server's "busy, connect again in n s" (an `error` frame before close 4503).
        self.retry_after: float | None = None
        self.log = PhoneLog(logger, {"phone": name})

    # --- enrolment ---

    def _enrol_request(self) -> dict[str, Any]:
        body = json.dumps({"pin": self.pin, "name": self.name, "model": f"agent/{self.backend.name}"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's own server URL
            f"{self.server}/api/device/v1/enroll", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310
            enrolled: dict[str, Any] = json.loads(answer.read())
            return enrolled

    async def ensure_enrolled(self, stop: asyncio.Event) -> None:
        """Enrols with the PIN unless a saved token exists. Raises EnrolmentRefused."""
        attempt = 0
        while not self.state.device_token and not stop.is_set():
            if not self.pin:
                raise EnrolmentRefused("no saved token and no --pin to enrol with")
            try:
                answer = await asyncio.to_thread(self._enrol_request)
            except urllib.error.HTTPError as exc:
                if exc.code == 429:
                    wait = float(exc.headers.get("Retry-After", "60"))
                    self.log.warning("enrolment locked out; retrying in %.0f s", wait)
                    await self._sleep(stop, wait)
                    continue
                raise EnrolmentRefused(f"enrolment refused: HTTP {exc.code}") from exc
            except (OSError, ValueError) as exc:
                delay = backoff_delay(attempt, self.rng)
                attempt += 1
                self.log.warning("cannot reach %s (%s); retrying in %.1f s", self.server, exc, delay)
                await self._sleep(stop, delay)
                continue
            self.state.device_id = answer["device_id"]
            self.state.device_token = answer["device_token"]
            self.state.list_token = answer["list"]
            self.state.ws_url = answer.get("ws_url", "/ws/device/")
            self.state.save()
            self.log.info("enrolled as %s in list %s", self.state.device_id, self.state.list_token)

    # --- connection loop ---

    async def run(self, stop: asyncio.Event) -> None:
        """Enrols if needed, then stays connected, reconnecting with backoff, until `stop`.
        Returns early (logging why) if the server refuses this phone for good."""
        try:
            await self.ensure_enrolled(stop)
        except EnrolmentRefused as exc:
            self.log.error("%s", exc)
            return
        attempt = 0
        while not stop.is_set():
            started = asyncio.get_running_loop().time()
            refused = False
            try:
                await self._connect_once(stop)
            except TokenRefused:
                self.log.error(
                    "the server refused this phone's token (disabled or removed); delete %s to enrol again",
                    self.state.path or "the saved token",
                )
                return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                refused = isinstance(exc, ConnectionRefusedError)
                self.log.info("connection lost: %s", exc)
            if asyncio.get_running_loop().time() - started > STABLE_SECONDS:
                attempt = 0
            if stop.is_set():
                break
            if self.retry_after is not None:
                # The server is up but busy (a restart's reconnect storm): it says when to
                # come back, and that is no reason to back off further.
                delay, self.retry_after = busy_delay(self.retry_after, self.rng), None
            else:
                delay = backoff_delay(attempt, self.rng, cap=REFUSED_BACKOFF_CAP if refused else BACKOFF_CAP)
                attempt += 1
            self.log.info("reconnecting in %.1f s", delay)
            await self._sleep(stop, delay)

    async def _connect_once(self, stop: asyncio.Event) -> None:
        url = _ws_url(self.server, self.state.ws_url)
        headers = {"Authorization": f"Bearer {self.state.device_token}"}
        try:
            async with connect(url, additional_headers=headers, proxy=None, open_timeout=10) as ws:
                await self._session(ws, stop)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise TokenRefused from exc
            if exc.response.status_code == 503:
                # Busy before the upgrade (a restart's reconnect storm): come back when it says.
                self.retry_after = retry_after_header(exc.response.headers.get("Retry-After"))
            raise

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        self.ws = ws
        self.claiming.clear()
        self.offered.clear()
        helpers = [asyncio.create_task(self._ping_forever()), asyncio.create_task(self._poll_inbox_forever())]
        stopper = asyncio.create_task(stop.wait())
        try:
            # Reports the server may not have stored yet (no ack) are sent again.
            for message_id, outcome in self.state.unacked():
                await self._report(message_id, outcome)
            for frame in list(self.pending_incoming.values()):
                await self.send(frame)
            reader = asyncio.create_task(self._read(ws))
            done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()
            else:
                reader.cancel()
                await ws.close()
        finally:
            self.ws = None
            stopper.cancel()
            for helper in helpers:
                helper.cancel()

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                frame = json.loads(raw)
            except ValueError:
                self.log.warning("ignoring a non-JSON frame")
                continue
            if isinstance(frame, dict):
                await self.handle(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None:
            return  # reports are kept and re-sent after reconnecting
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            pass

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_SECONDS)
            await self.send({"type": "ping"})

    async def _poll_inbox_forever(self) -> None:
        while True:
            for sms in await self.backend.received():
                frame = {"type": "incoming", **{k: v for k, v in sms.items() if v is not None}}
                self.pending_incoming[str(sms["id"])] = frame
                await self.send(frame)
            await asyncio.sleep(INBOX_POLL_SECONDS)

    # --- frames from the server ---

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        message_id = str(frame.get("message_id", ""))
        if kind == "hello":
            self.log.info("connected as %s (list %s)", frame.get("device_id"), frame.get("list"))
            await self._announce_state()
        elif kind == "offer":
            await self._on_offer(message_id)
        elif kind == "assign":
            await self._on_assign(frame, message_id)
        elif kind == "taken":
            self.claiming.discard(message_id)
            await self._claim_more()
        elif kind == "ack":
            if frame.get("status") == "received":
                self.pending_incoming.pop(str(frame.get("id")), None)
            else:
                self.state.acked(message_id, str(frame.get("status")))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "error":
            retry_after = frame.get("retry_after")
            if isinstance(retry_after, int | float) and not isinstance(retry_after, bool) and 0 < retry_after <= 3600:
                self.retry_after = float(retry_after)  # the server closes with 4503 next
                self.log.info("server busy: %s", frame.get("error"))
            else:
                self.log.warning("server says: %s", frame.get("error"))

    def _has_room(self) -> bool:
        return len(self.inflight) + len(self.claiming) < self.concurrency

    async def _on_offer(self, message_id: str) -> None:
        outcome = self.state.outcomes.get(message_id)
        if outcome is not None:
            # Already sent (our report must have been lost): say so again, never resend.
            await self._report(message_id, outcome)
            return
        if message_id in self.inflight or message_id in self.claiming:
            return
        self.offered[message_id] = None
        while len(self.offered) > MAX_REMEMBERED_OFFERS:
            self.offered.pop(next(iter(self.offered)))
        await self._claim_more()

    async def _claim_more(self) -> None:
        """Claims remembered offers, oldest first, while this phone has room."""
        while self.offered and self._has_room():
            message_id = next(iter(self.offered))
            del self.offered[message_id]
            if message_id in self.state.outcomes or message_id in self.inflight:
                continue
            self.claiming.add(message_id)
            await self.send({"type": "claim", "message_id": message_id})

    async def _on_assign(self, frame: dict[str, Any], message_id: str) -> None:
        self.claiming.discard(message_id)
        self.offered.pop(message_id, None)
        outcome = self.state.outcomes.get(message_id)
        if outcome is not None:
            await self._report(message_id, outcome)
            return
        if message_id in self.inflight:
            return  # a duplicate assign: it is being sent already
        self.inflight.add(message_id)
        task = asyncio.create_task(self._deliver(frame, message_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- sending ---

    async def _deliver(self, frame: dict[str, Any], message_id: str) -> None:
        try:
            result = await self.backend.send(to=str(frame["to"]), text=str(frame["msg"]), sim=frame.get("sim"))
        except Exception as exc:  # a broken radio is a failed send, not a crashed agent
            result = SendResult("failed", f"{type(exc).__name__}: {exc}"[:500])
        log_send = getattr(self.backend, "log_send", None)
        if log_send is not None and result.status == "sent":
            log_send(message_id)
        # Stored before it is reported: after a crash the outcome is re-reported, not re-sent.
        self.state.record(message_id, result.status, result.error, _now())
        self.inflight.discard(message_id)
        await self._report(message_id, self.state.outcomes[message_id])
        await self._claim_more()
        if self._has_room():
            await self._announce_state()
        if result.status == "sent" and self.backend.delivery_seconds is not None:
            if await self.backend.delivered():
                self.state.record(message_id, "delivered", "", _now())
                await self._report(message_id, self.state.outcomes[message_id])

    async def _report(self, message_id: str, outcome: dict[str, Any]) -> None:
        frame = {"type": "report", "message_id": message_id, "status": outcome["status"], "at": outcome["at"]}
        if outcome.get("error"):
            frame["error"] = outcome["error"]
        await self.send(frame)

    async def _announce_state(self) -> None:
        frame: dict[str, Any] = {"type": "state", "available": True}
        battery = await self.backend.battery()
        if battery is not None:
            frame["battery"] = battery
        await self.send(frame)

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass
