"""Daphne's WebSocket protocol as the project installs it (devices/lib/daphne_ws.py), in a
real Daphne: over the accept rate a phone is answered 503 with Retry-After before the
upgrade; a handshake the event loop reaches late is busy (503), never 403; with the
deployed flags a handshake held back past Daphne's default 5 s still gets its hello."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devices.lib.daphne_ws import PHONE_DAPHNE_FLAGS
from tests import factories
from tests.live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class PhoneDaphne(LiveServer):
    """Daphne with `flags`, serving `app` (the project's, or tests/devices/slow_asgi.py's)."""

    def __init__(self, log_dir: Path, *, app: str = "config.asgi:application", flags: tuple[str, ...] = (), **env: str):
        super().__init__(log_dir, **env)
        self.app, self.flags = app, flags

    def command(self) -> list[str]:
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.flags, self.app]


async def hello(url: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, proxy=None, open_timeout=20) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 20))


async def answers(url: str, tokens: list[str]) -> list[Any]:
    return await asyncio.gather(*(hello(url, token) for token in tokens), return_exceptions=True)


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/ws/device/"


def test_over_the_accept_rate_a_phone_gets_503_with_retry_after_before_the_upgrade(tmp_path, alice_list):
    tokens = [factories.make_enrolled_device(phone_list=alice_list, name=f"P{n}")[1] for n in range(4)]
    with PhoneDaphne(tmp_path, DEVICE_ACCEPT_RATE="0.01") as server:  # one handshake, then none for 100 s
        got = asyncio.run(answers(ws_url(server), tokens))
        log = server.log_path.read_text()
    hellos = [a for a in got if isinstance(a, dict)]
    busy = [a for a in got if isinstance(a, InvalidStatus)]
    assert len(hellos) == 1 and hellos[0]["type"] == "hello"
    assert len(busy) == 3, got
    for refused in busy:
        assert refused.response.status_code == 503
        assert 1 <= int(refused.response.headers["Retry-After"]) <= 60
    assert "told to try later" in log
    assert "Traceback" not in log and "ERROR" not in log


def test_a_handshake_the_loop_reaches_after_daphnes_timeout_is_busy_not_forbidden(tmp_path, alice_list):
    _device, token = factories.make_enrolled_device(phone_list=alice_list)
    server = PhoneDaphne(
        tmp_path,
        app="tests.devices.slow_asgi:application",
        flags=("--websocket_connect_timeout", "1"),
        PF_TEST_HANDSHAKE_DELAY="3",
    )
    with server:
        (got,) = asyncio.run(answers(ws_url(server), [token]))
    assert isinstance(got, InvalidStatus), got
    assert got.response.status_code == 503  # Daphne alone answers 403: "token revoked" to a phone
    assert int(got.response.headers["Retry-After"]) >= 1


def test_with_the_deployed_flags_a_handshake_held_back_past_5_s_still_gets_its_hello(tmp_path, alice_list):
    device, token = factories.make_enrolled_device(phone_list=alice_list)
    server = PhoneDaphne(
        tmp_path, app="tests.devices.slow_asgi:application", flags=PHONE_DAPHNE_FLAGS, PF_TEST_HANDSHAKE_DELAY="6"
    )
    with server:
        (got,) = asyncio.run(answers(ws_url(server), [token]))
    assert isinstance(got, dict) and got["type"] == "hello", got
    assert got["device_id"] == device.public_id


def test_a_frame_to_a_phone_whose_close_is_under_way_is_dropped_quietly():
    from daphne.ws_protocol import WebSocketFactory

    import config.asgi  # noqa: F401 - installs the protocol

    protocol = WebSocketFactory.protocol.__new__(WebSocketFactory.protocol)
    protocol.client_addr = None  # what Daphne logs
    for state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED):
        protocol.state = state
        protocol.handle_reply({"type": "websocket.send", "text": '{"type":"pong"}'})  # Daphne alone raises here


def test_daphne_answers_a_phones_ping_itself_and_the_fleets_pass_still_keeps_its_presence(tmp_path, alice_list):
    """The idle phone's only frame is answered by the protocol (no trip through the
    application) with the consumer's own pong; the fleet's pass reads when the protocol
    last heard the phone, so presence stays fresh and the phone is not closed as idle."""
    from django.db import connection

    from devices.models import Device

    device, token = factories.make_enrolled_device(phone_list=alice_list)

    def last_seen():
        try:
            return Device.objects.get(pk=device.pk).last_seen_at
        finally:
            connection.close()  # a thread of its own: its connection must not outlive the test

    # A forged connection header must not give a phone another connection's protocol.
    headers = {"Authorization": f"Bearer {token}", "X-Phonefleet-Connection": "1"}

    async def phone(url: str) -> list[str | bytes]:
        pongs = []
        async with connect(url, additional_headers=headers, proxy=None, open_timeout=20) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "hello"
            await ws.send('{"type":"state","available":true}')
            await asyncio.sleep(1.5)
            connected_at = await asyncio.to_thread(last_seen)
            for spelling in ('{"type":"ping"}', '{"type": "ping"}', '{"type":"ping"}'):
                await ws.send(spelling)
                pongs.append(await asyncio.wait_for(ws.recv(), 20))
                await asyncio.sleep(1.2)  # a pass of the fleet (DEVICE_TICK_SECONDS=1), no frame to the consumer
            seen = await asyncio.to_thread(last_seen)
            assert seen > connected_at  # the pings kept the lease fresh
            await ws.send('{"type":"state","available":false,"battery":33}')  # other frames: the consumer's
            await ws.send('{"type": "ping"}')
            pongs.append(await asyncio.wait_for(ws.recv(), 20))
        return pongs

    with PhoneDaphne(tmp_path, flags=PHONE_DAPHNE_FLAGS, DEVICE_TICK_SECONDS="1", DEVICE_IDLE_SECONDS="2.5") as server:
        pongs = asyncio.run(phone(ws_url(server)))
        log = server.log_path.read_text()
    assert pongs == ['{"type":"pong"}'] * 4
    stored = Device.objects.get(pk=device.pk)
    assert stored.battery == 33 and not stored.is_available
    assert "Traceback" not in log and "ERROR" not in log


def test_the_protocol_answers_pings_once_open_and_hands_every_other_frame_to_daphne():
    from daphne.ws_protocol import WebSocketFactory

    import config.asgi  # noqa: F401 - installs the protocol

    protocol = WebSocketFactory.protocol.__new__(WebSocketFactory.protocol)
    protocol.client_addr = None
    sent, queued = [], []
    protocol.sendMessage = lambda payload, is_binary: sent.append((payload, is_binary))

    class Queue:
        def put_nowait(self, message):
            queued.append(message)

    protocol.application_queue = Queue()
    protocol.state = protocol.STATE_OPEN
    protocol.onMessage(b'{"type": "ping"}', False)
    assert sent == [(b'{"type":"pong"}', False)] and queued == [] and protocol.heard_at > 0
    protocol.onMessage(b'{"type":"state","available":true}', False)
    protocol.onMessage(b'{"type":"ping"}', True)  # binary: the consumer's to refuse
    assert [m.get("text", m.get("bytes")) for m in queued] == ['{"type":"state","available":true}', b'{"type":"ping"}']
    assert len(sent) == 1
    protocol.state = protocol.STATE_CLOSING  # its close under way: no pong (autobahn would raise)
    protocol.onMessage(b'{"type":"ping"}', False)
    assert len(sent) == 1


class FakeReactor:
    """Twisted's reactor as the periodic checks use it: `callLater` is recorded, not run."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Any, tuple[Any, ...]]] = []

    def callLater(self, delay: float, func: Any, *args: Any) -> None:
        self.calls.append((delay, func, args))

    def run_slices(self, period: float) -> list[float]:
        """Runs the next slices of a walk (calls due within half its period) until only the
        next walk is left; the gaps they were due after."""
        gaps = []
        while self.calls and self.calls[-1][0] < period / 2:
            delay, func, args = self.calls.pop()
            gaps.append(delay)
            func(*args)
        return gaps


class Task:
    """An application instance as Daphne's checker sees it (an asyncio future)."""

    def __init__(self, *, done: bool = False, error: BaseException | None = None) -> None:
        self._done, self.error, self.cancelled = done, error, False

    def done(self) -> bool:
        return self._done

    def exception(self) -> BaseException | None:
        return self.error

    def cancel(self) -> None:
        self.cancelled = True


class Connection:
    def __init__(self) -> None:
        self.checked = 0
        self.handled: list[BaseException] = []

    def check_timeouts(self) -> None:
        self.checked += 1

    def handle_exception(self, exception: BaseException) -> None:
        self.handled.append(exception)


class FakeServer:
    application_close_timeout = 10

    def __init__(self, connections: dict[Connection, dict[str, Any]], checkers: dict[str, Any]) -> None:
        self.connections = connections
        self.checkers = checkers

    def timeout_checker(self) -> None:
        self.checkers["timeout_checker"](self)

    def application_checker(self) -> None:
        self.checkers["application_checker"](self)

    def stop(self) -> None:
        raise AssertionError("not in these cases")


def _connections(count: int) -> dict[Connection, dict[str, Any]]:
    """Every case of Daphne's application check, over and over: running, done and reaped,
    done with an error, disconnected and gone, disconnected too long and still running."""
    import time

    now = time.time()
    cases: list[Callable[[], dict[str, Any]]] = [
        lambda: {"application_instance": Task()},
        lambda: {"application_instance": Task(done=True)},
        lambda: {"application_instance": Task(done=True, error=ValueError("boom"))},
        lambda: {"application_instance": Task(done=True), "disconnected": now},
        lambda: {"application_instance": Task(), "disconnected": now - 60},
        lambda: {"disconnected": now},
    ]
    return {Connection(): cases[n % len(cases)]() for n in range(count)}


def _outcome(connections: dict[Connection, dict[str, Any]], order: list[Connection]) -> list[Any]:
    out = []
    for connection in order:
        details = connections.get(connection)
        task = details.get("application_instance") if details is not None else None
        out.append(
            (
                details is not None,
                task is not None,
                task.cancelled if task else None,
                [repr(e) for e in connection.handled],
            )
        )
    return out


@pytest.mark.django_db(transaction=False)
def test_daphnes_application_check_in_slices_does_what_daphnes_does_to_every_connection(monkeypatch, caplog):
    """At 10,000 phones Daphne's walk reaping applications every second blocked the event
    loop 10-60 ms: here the same per-connection code (Daphne's, DAPHNE_VERSION), in slices."""
    import twisted.internet

    from devices.lib import daphne_ws

    daphne_ws.install()
    reactor = FakeReactor()
    monkeypatch.setattr(twisted.internet, "reactor", reactor)
    monkeypatch.setattr("daphne.server.reactor", reactor)
    count = 2 * daphne_ws.CHECK_SLICE + 7
    theirs = FakeServer(_connections(count), daphne_ws.DAPHNE_CHECKERS)
    ours = FakeServer(_connections(count), {"application_checker": daphne_ws.application_checker_in_slices})
    order_theirs, order_ours = list(theirs.connections), list(ours.connections)
    theirs.application_checker()
    assert [delay for delay, _f, _a in reactor.calls] == [daphne_ws.APPLICATION_CHECK_SECONDS]  # one walk
    reactor.calls.clear()
    theirs_logged = [(r.levelname, r.getMessage().split(" for connection")[0][:40]) for r in caplog.records]
    caplog.clear()
    ours.application_checker()
    assert sum(1 for c in order_ours if c in ours.connections) > count - daphne_ws.CHECK_SLICE  # one slice so far
    assert len(reactor.calls) == 1
    gaps = reactor.run_slices(daphne_ws.APPLICATION_CHECK_SECONDS)
    assert gaps == [daphne_ws.APPLICATION_CHECK_SECONDS / 2 / 3] * 2  # 3 slices over half a second
    delay, func, _args = reactor.calls.pop()
    assert func == ours.application_checker  # a second after the walk began
    assert delay == pytest.approx(daphne_ws.APPLICATION_CHECK_SECONDS - sum(gaps))
    assert _outcome(ours.connections, order_ours) == _outcome(theirs.connections, order_theirs)
    ours_logged = [(r.levelname, r.getMessage().split(" for connection")[0][:40]) for r in caplog.records]
    assert sorted(ours_logged) == sorted(theirs_logged) and ours_logged  # the same warnings and errors


def test_the_copied_application_check_is_of_the_installed_daphne():
    import daphne

    from devices.lib.daphne_ws import DAPHNE_VERSION

    assert daphne.__version__ == DAPHNE_VERSION, "read _check_application against Daphne's application_checker"


@pytest.mark.django_db(transaction=False)
def test_daphnes_timeout_check_runs_in_slices_with_the_event_loop_free_in_between(monkeypatch):
    """At 10,000 phones Daphne's walk over every connection every 2 s blocked the event
    loop 22-37 ms (offers and claims behind it): here the same check of each connection,
    CHECK_SLICE at a time spread over the first second, and the next walk 2 s after this
    one began."""
    import twisted.internet

    from devices.lib import daphne_ws

    reactor = FakeReactor()
    monkeypatch.setattr(twisted.internet, "reactor", reactor)
    server = FakeServer({Connection(): {} for _ in range(2 * daphne_ws.CHECK_SLICE + 500)}, {})
    server.checkers["timeout_checker"] = daphne_ws.timeout_checker_in_slices
    protocols = list(server.connections)
    server.timeout_checker()
    assert sum(p.checked for p in protocols) == daphne_ws.CHECK_SLICE
    assert [delay for delay, _func, _args in reactor.calls] == [daphne_ws.TIMEOUT_CHECK_SECONDS / 2 / 3]
    gone = protocols[-1]
    del server.connections[gone]  # disconnected meanwhile: not checked
    reactor.run_slices(daphne_ws.TIMEOUT_CHECK_SECONDS)
    assert all(p.checked == 1 for p in protocols if p is not gone) and gone.checked == 0
    delay, func, _args = reactor.calls.pop()
    assert func == server.timeout_checker and not reactor.calls
    assert delay == pytest.approx(daphne_ws.TIMEOUT_CHECK_SECONDS * (1 - 2 / 6))  # 2 s after the walk began
    from daphne.server import Server as DaphneServer

    daphne_ws.install()
    assert DaphneServer.timeout_checker is daphne_ws.timeout_checker_in_slices
    assert DaphneServer.application_checker is daphne_ws.application_checker_in_slices
