"""SMSGate phones (fetching = claiming, over HTTP) and WebSocket phones (offer/claim) race
for the same list on a live server: every message is sent exactly once, none is lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
import websockets

from devices import services as device_services
from messaging.models import Message, MessageEvent
from tests import factories
from tests.smsgate.phone import SmsGateApp

pytestmark = pytest.mark.slow

MESSAGES = 200
SMSGATE_PHONES = 3
WEBSOCKET_PHONES = 3
DEADLINE_SECONDS = 90


async def smsgate_phone(
    base_url: str, token: str, name: str, remaining: set[str], sent: list[tuple[str, str]], start: asyncio.Event
) -> None:
    """Fetches and reports like the app: it never sends an id it already has locally."""
    await start.wait()
    done: set[str] = set()
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "me.capcom.smsgateway/1.68.0"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while remaining and time.monotonic() < deadline:
            jobs = (await http.get("/message", params={"order": "fifo"})).json()
            for job in jobs:
                if job["id"] in done:
                    continue
                done.add(job["id"])
                sent.append((name, job["id"]))
                remaining.discard(job["id"])
                patch = [{"id": job["id"], "state": "Sent", "recipients": [], "states": {}}]
                assert (await http.patch("/message", json=patch)).status_code == 204
            if not jobs:
                await asyncio.sleep(0.02)  # the real app waits for its next wake-up


async def websocket_phone(
    ws_url: str,
    token: str,
    name: str,
    remaining: set[str],
    sent: list[tuple[str, str]],
    ready: asyncio.Event,
    lost: list[str],
) -> None:
    """Claims every offer; sends (and reports) only what it is assigned."""
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        assert json.loads(await socket.recv())["type"] == "hello"
        ready.set()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while remaining and time.monotonic() < deadline:
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=0.5))
            except TimeoutError:
                continue
            if frame["type"] == "offer" and frame["message_id"] in remaining:
                await socket.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
            elif frame["type"] == "taken":
                lost.append(frame["message_id"])
            elif frame["type"] == "assign":
                sent.append((name, frame["message_id"]))
                remaining.discard(frame["message_id"])
                await socket.send(json.dumps({"type": "report", "message_id": frame["message_id"], "status": "sent"}))


async def race(
    server, smsgate_tokens: list[str], ws_tokens: list[str], ids: set[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Runs every phone until all messages are sent; returns (phone, id) sends and the
    claims WebSocket phones lost to another phone."""
    remaining: set[str] = set(ids)
    sent: list[tuple[str, str]] = []
    lost: list[str] = []
    ws_url = server.url.replace("http://", "ws://") + "/ws/device/"
    # SMSGate phones start fetching once every WebSocket phone is connected: a real race.
    ready = [asyncio.Event() for _ in ws_tokens]
    start = asyncio.Event()

    async def start_when_ready() -> None:
        await asyncio.gather(*(event.wait() for event in ready))
        start.set()

    await asyncio.gather(
        start_when_ready(),
        *(smsgate_phone(server.mobile, t, f"smsgate{i}", remaining, sent, start) for i, t in enumerate(smsgate_tokens)),
        *(websocket_phone(ws_url, t, f"ws{i}", remaining, sent, ready[i], lost) for i, t in enumerate(ws_tokens)),
    )
    return sent, lost


def test_smsgate_and_websocket_phones_never_send_the_same_message(postgres_only, server, alice_list, mobile_token):
    smsgate_tokens = []
    for _ in range(SMSGATE_PHONES):
        app = SmsGateApp(server.mobile)
        assert app.sign_up(mobile_token).status_code == 201
        smsgate_tokens.append(app.token)
        app.close()
    ws_tokens = [
        device_services.create_device(phone_list=alice_list, name=f"Agent {i}")[1] for i in range(WEBSOCKET_PHONES)
    ]
    ids = {factories.make_message(phone_list=alice_list, cost=0).public_id for _ in range(MESSAGES)}

    sent, lost_claims = asyncio.run(race(server, smsgate_tokens, ws_tokens, ids))

    sends_per_message = Counter(message_id for _phone, message_id in sent)
    assert set(sends_per_message) == ids, "lost messages"
    assert max(sends_per_message.values()) == 1, "a message was sent by two phones"
    assert Message.objects.filter(public_id__in=ids, status=Message.Status.SENT).count() == MESSAGES
    assigned = Counter(
        MessageEvent.objects.filter(message__public_id__in=ids, status="assigned").values_list("message_id", flat=True)
    )
    assert set(assigned.values()) == {1}
    # Both kinds competed: SMSGate phones sent some, and WebSocket phones lost claims to them.
    by_kind = Counter(phone.rstrip("0123456789") for phone, _id in sent)
    assert by_kind["smsgate"] > 0 and lost_claims, f"no real race: {by_kind}, {len(lost_claims)} lost claims"
