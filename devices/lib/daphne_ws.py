"""Daphne's WebSocket protocol, adjusted for a fleet of phones reconnecting at once.

`install()` (called by `config.asgi`, so any Daphne serving the project has it) puts a
subclass of `daphne.ws_protocol.WebSocketProtocol` in Daphne's WebSocket factory. It
changes two things, both about a busy process (docs/benchmarks.md, "10,000 phones"):

- **Shedding before the upgrade.** A handshake is taken on at the process's accept rate
  (`devices/lib/admission.py`) when Daphne has read it, before any application instance
  exists. One over the rate is answered **HTTP 503 with `Retry-After`** (the next free
  slot) and the connection dropped: no application, no accept, no frame, no closing
  handshake. The middleware (`devices/routing.py`) sees in the scope that the handshake was
  taken on and does not count it again.
- **Less per connection.** Autobahn copies its ~40 options from the factory onto every
  connection (an instance dictionary twice the size) and formats them with `pformat` for
  a debug line that is not logged; here they are read from the class, once, and the
  debug line is formatted only if it is logged.
- **A frame to a phone that is leaving is dropped.** Between the phone's close and
  Daphne hearing of it a `pong` or an offer raised "Attempt to send on a closed protocol"
  (a traceback, then another for the error frame the consumer tried next).
- **A phone's `ping` is answered here.** An idle phone sends nothing but a `ping` every
  20 s; through the application each one took an ASGI message, the consumer's dispatch,
  a JSON parse and dump and the reply's trip back (at 10,000 phones, 500 a second). The
  protocol answers the two spellings phones send (`{"type":"ping"}`, `{"type": "ping"}`)
  with the same `{"type":"pong"}` itself, once the application has accepted the
  connection, and keeps the time it last heard the phone in `heard_at`, which the
  consumer reads for its presence (`heard_from`). Any other frame goes to the application.
- **A late handshake is busy, not forbidden.** Daphne answers 403 to a handshake the
  application has not accepted within `--websocket_connect_timeout` (5 s by default): with
  a saturated event loop that refused valid tokens, and a phone must take 403 for "token
  revoked". Here it is answered 503 with `Retry-After` instead (R30).

- **Its periodic walks run in slices.** Every 2 s Daphne's server walks every connection
  to check its timeouts (`timeout_checker`: connect and ping timeouts, keep-alive pings),
  and every second to reap finished applications (`application_checker`), each in one
  go: at 10,000 phones 22–37 ms and 10–60 ms of a blocked event loop, offers and claims
  included (bench/soak.py --stall-probe). Here the same check of each connection is made
  in slices of CHECK_SLICE spread over the first half of the period (`slice_gap`), and the
  next walk begins a period after this one began, as Daphne's does. The reaping is Daphne's code for
  one connection (`_check_application`, copied from DAPHNE_VERSION; a test fails when
  Daphne's version changes, so an upgrade is read against it first).

Everything else is Daphne's. `tests/devices/test_daphne_ws.py` runs it in a real Daphne.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import pprint
import secrets
import time
from concurrent.futures import CancelledError
from typing import Any, Protocol

from django.conf import settings

from devices.lib.admission import Admission, log_shed
from devices.lib.admission import for_process as admission_for_process

logger = logging.getLogger("daphne.server")  # `_check_application` logs as Daphne does

# How a Daphne for phones is started (docs/deploy.md, Makefile, bench/soak.py; with
# `--access-log /dev/null` there): a handshake may wait 30 s for a busy event loop
# (Daphne's default 5 s refused valid tokens during a reconnect storm, docs/benchmarks.md);
# keep-alive as R28.
PHONE_DAPHNE_FLAGS = ("--websocket_connect_timeout", "30", "--ping-interval", "20", "--ping-timeout", "30")

# The scope header by which the protocol tells the application it took the handshake on.
# Its value is secret to the process, and any such header a client sends is dropped.
ADMITTED_HEADER = "x-phonefleet-admitted"
_ADMITTED_VALUE = secrets.token_hex(16)
# The scope header naming the connection's protocol to the application (`heard_from`);
# dropped too when a client sends it.
CONNECTION_HEADER = "x-phonefleet-connection"

# The application-level pings phones send (docs/device-protocol.md: compact, or as
# Python's json.dumps writes it), and the answer the consumer would give.
PINGS = frozenset({b'{"type":"ping"}', b'{"type": "ping"}'})
PONG = b'{"type":"pong"}'

# Protocols between their handshake and their application's first look (`heard_from`).
_waiting: dict[str, Any] = {}
_connection_keys = itertools.count(1)


def admitted(scope: dict[str, Any]) -> bool:
    """Whether this process's Daphne protocol took the handshake of `scope` on."""
    return (ADMITTED_HEADER.encode(), _ADMITTED_VALUE.encode()) in scope.get("headers", ())


class Heard(Protocol):
    heard_at: float  # time.time() of the last frame from the phone; 0.0 before any


def heard_from(scope: dict[str, Any]) -> Heard | None:
    """The connection of `scope` as the protocol that answers its pings (the application
    asks once, on connect): its `heard_at` is when the phone last sent a frame, pings
    included. None under another server (the application hears every frame then)."""
    key = dict(scope.get("headers", ())).get(CONNECTION_HEADER.encode())
    protocol = _waiting.pop(key.decode(), None) if key is not None else None
    if protocol is not None:
        protocol.connection_key = None
    return protocol


# The Daphne release whose Server.application_checker `_check_application` copies.
DAPHNE_VERSION = "4.2.3"
# Connections Daphne's periodic checks look at between two returns to the event loop.
CHECK_SLICE = 1000
TIMEOUT_CHECK_SECONDS = 2  # as Daphne's server
APPLICATION_CHECK_SECONDS = 1
# Daphne's own periodic checks, as `install()` found them.
DAPHNE_CHECKERS: dict[str, Any] = {}


def timeout_checker_in_slices(server: Any) -> None:
    """Daphne's `Server.timeout_checker` (each connection's `check_timeouts`, then again
    TIMEOUT_CHECK_SECONDS later) over the connections of now, CHECK_SLICE at a time."""
    _check_slice(server, list(server.connections), 0, _check_timeouts, TIMEOUT_CHECK_SECONDS, "timeout_checker")


def application_checker_in_slices(server: Any) -> None:
    """Daphne's `Server.application_checker` (each connection's application reaped once
    done, killed if it outlives its closed connection too long; then again a second
    later) over the connections of now, CHECK_SLICE at a time."""
    _check_slice(
        server, list(server.connections), 0, _check_application, APPLICATION_CHECK_SECONDS, "application_checker"
    )


def _check_timeouts(server: Any, protocol: Any) -> None:
    protocol.check_timeouts()


def _check_application(server: Any, protocol: Any) -> None:
    """Daphne 4.2.3's `Server.application_checker` for one connection, as it is there."""
    details = server.connections[protocol]
    disconnected = details.get("disconnected", None)
    application_instance = details.get("application_instance", None)
    # First, see if the protocol disconnected and the app has taken too long to close up
    if disconnected and time.time() - disconnected > server.application_close_timeout:
        if application_instance and not application_instance.done():
            logger.warning(
                "Application instance %r for connection %s took too long to shut down and was killed.",
                application_instance,
                repr(protocol),
            )
            application_instance.cancel()
    # Then see if the app is done and we should reap it
    if application_instance and application_instance.done():
        try:
            exception = application_instance.exception()
        except (CancelledError, asyncio.CancelledError):
            pass  # Future cancellation. We can ignore this.
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    server.stop()  # Protocol is asking the server to exit (likely during test)
                else:
                    logger.error("Exception inside application: %s", exception, exc_info=exception)
                    if not disconnected:
                        protocol.handle_exception(exception)
        del server.connections[protocol]["application_instance"]
        application_instance = None
    # Check to see if protocol is closed and app is closed so we can remove it
    if not application_instance and disconnected:
        del server.connections[protocol]


def slice_gap(connections: int, period: float) -> float:
    """Seconds between two slices of a walk over `connections`: the slices spread over
    half the walk's period. Back to back, each turn of a message's way through the event
    loop (offer, claim, answer) could wait behind a slice; spread, it meets one at most."""
    slices = math.ceil(connections / CHECK_SLICE)
    return period / 2 / slices if slices > 1 else 0.0


def _check_slice(server: Any, protocols: list[Any], start: int, check: Any, period: float, again: str) -> None:
    from twisted.internet import reactor as installed

    reactor: Any = installed  # Daphne's (asyncio) reactor
    for protocol in protocols[start : start + CHECK_SLICE]:
        if protocol in server.connections:  # not gone since the walk began
            check(server, protocol)
    if start + CHECK_SLICE < len(protocols):
        gap = slice_gap(len(protocols), period)
        reactor.callLater(gap, _check_slice, server, protocols, start + CHECK_SLICE, check, period, again)
    else:  # the next walk a period after this one began (its slices took half of it at most)
        slices = math.ceil(len(protocols) / CHECK_SLICE)
        reactor.callLater(period - slice_gap(len(protocols), period) * (slices - 1), getattr(server, again))


class LazyPformat:
    """`pprint.pformat` when the text is wanted: autobahn formats its options for a debug
    line on every connection (0.1–0.4 ms), logged or not."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def install() -> None:
    """Makes Daphne build its WebSocket connections from `PhoneWebSocketProtocol`. Daphne's
    factory is made when the server starts, after the application is imported."""
    from autobahn.websocket import protocol as autobahn_protocol
    from autobahn.websocket.types import ConnectionDeny
    from daphne import server, ws_protocol

    for name, sliced in (
        ("timeout_checker", timeout_checker_in_slices),
        ("application_checker", application_checker_in_slices),
    ):
        if getattr(server.Server, name) is not sliced:
            DAPHNE_CHECKERS[name] = getattr(server.Server, name)  # Daphne's own (tests compare)
            setattr(server.Server, name, sliced)
    # Used by autobahn only for debug lines (and Timings' text, with trackTimings, which
    # Daphne never turns on).
    autobahn_protocol.pformat = LazyPformat  # type: ignore[assignment]

    base: Any = getattr(ws_protocol.WebSocketFactory.protocol, "daphne_protocol", ws_protocol.WebSocketProtocol)

    class PhoneWebSocketProtocol(base):  # type: ignore[misc]
        daphne_protocol = base
        # Set when this handshake is answered 503: the seconds in its Retry-After.
        retry_after: int | None = None
        # The admission this handshake holds until the application's first frame or close.
        holding: Admission | None = None

        options_from: Any = None  # the factory whose options the class holds
        heard_at = 0.0  # time.time() of the phone's last frame (`heard_from`)
        connection_key: str | None = None  # while in `_waiting`

        def _connectionMade(self) -> None:
            cls = type(self)
            if cls.options_from is not self.factory:
                for name in self.CONFIG_ATTRS:  # once, not on every connection
                    value = getattr(self.factory, name)
                    # A function (perMessageCompressionAccept) must not become a method.
                    setattr(cls, name, staticmethod(value) if callable(value) else value)
                cls.options_from = self.factory
            super()._connectionMade()

        def onConnect(self, request: Any) -> Any:
            request.headers.pop(ADMITTED_HEADER, None)  # only this process may say so
            request.headers.pop(CONNECTION_HEADER, None)
            admission = admission_for_process(settings.DEVICE_ACCEPT_RATE)
            now = time.monotonic()
            retry_after = admission.enter(now)
            if retry_after is not None:
                log_shed(admission, now)
                self.retry_after = retry_after
                raise ConnectionDeny(503, "Service Unavailable")  # type: ignore[no-untyped-call]  # before any application
            self.holding = admission
            request.headers[ADMITTED_HEADER] = _ADMITTED_VALUE
            self.connection_key = str(next(_connection_keys))
            _waiting[self.connection_key] = self
            request.headers[CONNECTION_HEADER] = self.connection_key
            try:
                return super().onConnect(request)
            except Exception:
                self._release()
                raise

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.heard_at = time.time()
            if not isBinary and payload in PINGS and self.state == self.STATE_OPEN and not self.muted:
                self.last_ping = self.heard_at  # as Daphne's onMessage: no keep-alive ping due
                self.sendMessage(PONG, False)
                return
            super().onMessage(payload, isBinary)

        def _release(self) -> None:
            if self.holding is not None:
                self.holding.leave()
                self.holding = None

        def handle_reply(self, message: dict[str, Any]) -> None:
            if self.holding is not None and message.get("type") in ("websocket.send", "websocket.close"):
                self._release()  # the handshake's work is done: its first frame, or a close
            if message.get("type") == "websocket.send" and self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
                # The phone is leaving (its close is under way, Daphne has not been told
                # yet): a frame has nowhere to go. Autobahn would raise, the consumer log
                # the frame as failed and try an error frame, which raised again.
                return
            super().handle_reply(message)

        def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
            if code == 503 and self.retry_after is not None:
                responseHeaders = [*(responseHeaders or []), ("Retry-After", str(self.retry_after))]
            super().failHandshake(reason, code, responseHeaders)

        def onOpenHandshakeTimeout(self) -> None:
            # Autobahn's own timer (the same --websocket_connect_timeout) drops a handshake
            # with no answer at all; one the application is still working on is busy too.
            if self.state == self.STATE_CONNECTING and hasattr(self, "handshake_deferred"):
                self.openHandshakeTimeoutCall = None
                self.server_busy()
                return
            super().onOpenHandshakeTimeout()

        def check_timeouts(self) -> None:
            timeout = self.server.websocket_connect_timeout
            if (
                self.state == self.STATE_CONNECTING
                and hasattr(self, "handshake_deferred")
                and 0 <= timeout < self.duration()
            ):
                self.server_busy()
                return
            super().check_timeouts()

        def server_busy(self) -> None:
            """Daphne's `serverReject` for a handshake the application did not finish in
            time, answered 503 with a time to come back instead of 403."""
            self._release()
            admission = admission_for_process(settings.DEVICE_ACCEPT_RATE)
            now = time.monotonic()
            self.retry_after = admission.later(now)
            log_shed(admission, now)
            self.handshake_deferred.errback(ConnectionDeny(503, "Service Unavailable"))  # type: ignore[no-untyped-call]
            del self.handshake_deferred
            self.server.protocol_disconnected(self)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            self._release()
            if self.connection_key is not None:  # its application never asked (refused, or gone early)
                _waiting.pop(self.connection_key, None)
                self.connection_key = None
            if not hasattr(self, "server"):  # shed before Daphne saw it: nothing of Daphne's to undo
                return
            super().onClose(wasClean, code, reason)

    ws_protocol.WebSocketFactory.protocol = PhoneWebSocketProtocol
