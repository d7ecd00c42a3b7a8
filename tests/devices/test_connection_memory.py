"""Memory one idle phone connection holds, in process: the project's WebSocket stack
(middleware, consumer, fleet registration, groups) against a bare Channels consumer on the
same channel layer, both driven through Channels' test communicator (which costs the same
in both). A regression guard for issue 21's "≤ 1.5× the bare consumer" (docs/benchmarks.md,
"10,000 phones"): bytes, no timing. `-s` prints the allocation sites that differ most.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from config.asgi import application
from devices.consumers import fleet
from devices.models import Device
from tests import factories

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONES = 200
# Per connection, project / bare, through the communicator: 22.7 / 17.5 KB = 1.30 with
# Redis, 1.31 with the in-memory layer (2026-12-03). The guard is the target.
MAX_RATIO = 1.5


class BareConsumer(AsyncWebsocketConsumer):
    """bench/bare_asgi.py's consumer: accepts, answers ping."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == '{"type":"ping"}':
            await self.send(text_data='{"type":"pong"}')


bare_application = URLRouter([path("ws/device/", BareConsumer.as_asgi())])


async def held(app: Any, tokens: list[str], *, hello: bool) -> tuple[int, list[Any], list[Any]]:
    """Opens one connection per token on `app` (each says `state: available` and is answered
    or settles), then the traced bytes and a snapshot while all are held."""
    tracing = tracemalloc.is_tracing()
    gc.collect()
    start = tracemalloc.take_snapshot() if tracing else None
    base = tracemalloc.get_traced_memory()[0]
    sockets = []
    for token in tokens:
        ws = WebsocketCommunicator(app, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
        connected, _ = await ws.connect(timeout=10)
        assert connected
        if hello:
            assert (await ws.receive_json_from(timeout=10))["type"] == "hello"
        await ws.send_to(text_data='{"type":"ping"}')
        assert (await ws.receive_json_from(timeout=10))["type"] == "pong"
        sockets.append(ws)
    await asyncio.sleep(0.2)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    sites = tracemalloc.take_snapshot().compare_to(start, "lineno") if start is not None else []
    return used, sockets, sites


def per_connection(used: int) -> float:
    return used / PHONES


@pytest.fixture
def tokens(alice_list) -> list[str]:
    made = [factories.make_enrolled_device(phone_list=alice_list, name=f"P{n}")[1] for n in range(PHONES)]
    Device.objects.update(is_available=True)
    return made


async def test_an_idle_phone_connection_holds_at_most_half_again_what_a_bare_consumer_holds(tokens):
    # First use starts pools and threads: one connection each, outside the measurement.
    for app, hello in ((application, True), (bare_application, False)):
        _used, sockets, _diff = await held(app, tokens[:1], hello=hello)
        for ws in sockets:
            await ws.disconnect()
    tracemalloc.start(1)
    try:
        project_used, project_sockets, project_sites = await held(application, tokens, hello=True)
        assert len(fleet.held) == PHONES
        for ws in project_sockets:
            await ws.disconnect()
        del project_sockets
        bare_used, bare_sockets, bare_sites = await held(bare_application, tokens, hello=False)
        for ws in bare_sockets:
            await ws.disconnect()
    finally:
        tracemalloc.stop()
    project, bare = per_connection(project_used), per_connection(bare_used)
    print(f"\nper connection: project {project:.0f} B, bare {bare:.0f} B, ratio {project / bare:.2f}")
    for stat in project_sites[:25]:
        if abs(stat.size_diff) >= 8 * PHONES:
            print(f"  project {stat.size_diff / PHONES:7.0f} B {stat.count_diff / PHONES:5.1f} {stat.traceback}")
    for stat in bare_sites[:10]:
        if abs(stat.size_diff) >= 8 * PHONES:
            print(f"  bare    {stat.size_diff / PHONES:7.0f} B {stat.count_diff / PHONES:5.1f} {stat.traceback}")
    assert project <= MAX_RATIO * bare
