"""The reference agent's protocol logic: claim, send once, report, re-report.

The agent talks to a recording connection here (the WebSocket itself is exercised by the
live-server test in tests/messaging/test_claim_race.py).
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from agent import phone as agent_phone
from agent.__main__ import make_backend, parse_args, token_file_for
from agent.backends import SimulateBackend
from agent.phone import BACKOFF_CAP, REFUSED_BACKOFF_CAP, Phone, backoff_delay, busy_delay, retry_after_header
from agent.store import PhoneState

ASSIGN = {"type": "assign", "message_id": "msg_1", "to": "+393331234567", "msg": "Hi", "parts": 1, "sim": None}


class RecordingConnection:
    """Stands in for the socket: keeps every frame the phone sends."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def of_type(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == kind]


class RecordedPhone(Phone):
    """A Phone whose connection and backend are the recording ones above."""

    ws: RecordingConnection  # type: ignore[assignment]
    backend: SimulateBackend


def make_phone(tmp_path, *, failure_rate: float = 0.0, state: PhoneState | None = None) -> RecordedPhone:
    backend = SimulateBackend(send_seconds=0, failure_rate=failure_rate, delivery_seconds=None, seed=1)
    phone = RecordedPhone(
        server="http://127.0.0.1:1",
        name="Test",
        pin="12345678",
        backend=backend,
        state=state or PhoneState(path=tmp_path / "phone.json", device_token="pfd_x"),
    )
    phone.ws = RecordingConnection()
    return phone


async def settle(phone: Phone) -> None:
    while phone.tasks:
        await next(iter(phone.tasks))


async def test_it_claims_an_offer_when_it_has_room(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle({"type": "offer", "message_id": "msg_1"})
    await phone.handle({"type": "offer", "message_id": "msg_2"})
    assert phone.ws.of_type("claim") == [{"type": "claim", "message_id": "msg_1"}]
    await phone.handle({"type": "taken", "message_id": "msg_1"})
    assert [f["message_id"] for f in phone.ws.of_type("claim")] == ["msg_1", "msg_2"]


async def test_a_duplicate_assign_is_sent_over_the_radio_once(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle(ASSIGN)
    await phone.handle(ASSIGN)
    await settle(phone)
    await phone.handle(ASSIGN)
    await settle(phone)
    assert phone.backend.radio_sends == ["+393331234567"]
    reports = phone.ws.of_type("report")
    assert {r["status"] for r in reports} == {"sent"} and len(reports) == 2  # the second is a re-report


async def test_it_stores_the_outcome_before_reporting_and_re_reports_after_a_restart(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle(ASSIGN)
    await settle(phone)
    saved = json.loads((tmp_path / "phone.json").read_text())
    assert saved["outcomes"]["msg_1"]["status"] == "sent"
    restarted = make_phone(tmp_path, state=PhoneState.load(tmp_path / "phone.json"))
    await restarted.handle({"type": "offer", "message_id": "msg_1"})
    await restarted.handle(ASSIGN)
    await settle(restarted)
    assert restarted.backend.radio_sends == []
    assert restarted.ws.of_type("claim") == []
    assert [r["status"] for r in restarted.ws.of_type("report")] == ["sent", "sent"]


async def test_an_acked_report_is_not_sent_again_on_reconnect(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle(ASSIGN)
    await settle(phone)
    assert [mid for mid, _ in phone.state.unacked()] == ["msg_1"]
    await phone.handle({"type": "ack", "message_id": "msg_1", "status": "sent"})
    assert phone.state.unacked() == []
    assert PhoneState.load(tmp_path / "phone.json").unacked() == []


async def test_a_radio_failure_is_reported_as_failed_with_its_error(tmp_path):
    phone = make_phone(tmp_path, failure_rate=1.0)
    await phone.handle(ASSIGN)
    await settle(phone)
    (report,) = phone.ws.of_type("report")
    assert report["status"] == "failed" and report["error"]


async def test_it_answers_ping_and_announces_availability_after_hello(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle({"type": "hello", "device_id": "dev_1", "list": "lst_1", "settings": {}})
    await phone.handle({"type": "ping"})
    assert phone.ws.frames == [{"type": "state", "available": True, "battery": 100}, {"type": "pong"}]


@pytest.mark.parametrize("attempt", [0, 1, 3, 5, 6, 20])
def test_backoff_is_full_jitter_between_zero_and_the_capped_exponential(attempt):
    rng = random.Random(attempt)
    ceiling = min(BACKOFF_CAP, 2.0**attempt)
    delays = [backoff_delay(attempt, rng) for _ in range(500)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1


def test_count_gives_each_phone_its_own_token_file(tmp_path):
    args = parse_args(["--server", "http://x", "--pin", "1", "--count", "3", "--token-file", str(tmp_path / "p.json")])
    files = [token_file_for(args.token_file, i, args.count) for i in range(3)]
    assert [f.name for f in files if f is not None] == ["p-1.json", "p-2.json", "p-3.json"]
    assert token_file_for(tmp_path / "p.json", 0, 1) == tmp_path / "p.json"


async def test_a_busy_server_s_retry_after_is_kept_for_the_next_reconnect(tmp_path):
    phone = make_phone(tmp_path)
    await phone.handle({"type": "error", "error": "The server is busy; connect again in 7 s.", "retry_after": 7})
    assert phone.retry_after == 7.0
    await phone.handle({"type": "error", "error": "Unknown message.", "message_id": "msg_1"})
    assert phone.retry_after == 7.0  # an ordinary error says nothing about reconnecting


def test_the_wait_after_busy_is_within_the_second_before_the_server_s_time():
    rng = random.Random(1)
    delays = [busy_delay(10, rng) for _ in range(500)]
    assert all(9 <= d <= 10 for d in delays)
    assert max(delays) > 9.9 and min(delays) < 9.1  # spread over that second
    assert all(0 <= busy_delay(1, rng) <= 1 for _ in range(100))


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7.0), ("0", None), ("-3", None), ("abc", None), (None, None), ("99999", None)]
)
def test_a_503_s_retry_after_header_is_read_as_seconds(header, seconds):
    assert retry_after_header(header) == seconds


async def test_a_503_before_the_upgrade_is_busy_with_its_retry_after_not_a_refused_token(tmp_path, monkeypatch):
    phone = make_phone(tmp_path)
    phone.state.device_token = "pfd_x"

    def busy(*args, **kwargs):
        raise InvalidStatus(Response(503, "Service Unavailable", Headers({"Retry-After": "12"})))

    monkeypatch.setattr(agent_phone, "connect", busy)
    with pytest.raises(InvalidStatus):
        await phone._connect_once(asyncio.Event())
    assert phone.retry_after == 12.0


def test_while_the_server_refuses_connections_the_backoff_stays_under_its_lower_cap():
    rng = random.Random(2)
    delays = [backoff_delay(10, rng, cap=REFUSED_BACKOFF_CAP) for _ in range(500)]
    assert all(0 <= d <= REFUSED_BACKOFF_CAP for d in delays) and REFUSED_BACKOFF_CAP < BACKOFF_CAP


async def test_fail_with_makes_every_send_fail_with_that_error_and_nothing_go_on_the_air(tmp_path):
    args = parse_args(["--server", "http://x", "--fail-with", "RESULT_ERROR_RADIO_OFF", "--sent-log", "s.log"])
    backend = make_backend(args)
    assert isinstance(backend, SimulateBackend) and backend.failure_rate == 1.0
    backend.send_seconds, backend.sent_log = 0, tmp_path / "sent.log"
    phone = make_phone(tmp_path)
    phone.backend = backend
    await phone.handle(ASSIGN)
    await settle(phone)
    (report,) = phone.ws.of_type("report")
    assert report["status"] == "failed" and report["error"].startswith("RESULT_ERROR_RADIO_OFF")
    assert backend.radio_sends == [] and not (tmp_path / "sent.log").exists()


def test_fail_with_takes_a_probability():
    args = parse_args(["--server", "http://x", "--fail-with", "RESULT_ERROR_NO_SERVICE", "--failure-rate", "0.25"])
    backend = make_backend(args)
    assert isinstance(backend, SimulateBackend)
    assert (backend.failure_rate, backend.fail_with) == (0.25, "RESULT_ERROR_NO_SERVICE")
    assert make_backend(parse_args(["--server", "http://x"])).failure_rate == 0.0  # type: ignore[attr-defined]


async def test_a_random_failure_reports_a_generic_failure(tmp_path):
    phone = make_phone(tmp_path, failure_rate=1.0)
    await phone.handle(ASSIGN)
    await settle(phone)
    (report,) = phone.ws.of_type("report")
    assert report["error"].startswith("RESULT_ERROR_GENERIC_FAILURE")
