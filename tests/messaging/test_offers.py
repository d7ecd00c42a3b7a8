"""Hints from synchronous code (API views, the worker) reach consumers through the real
Redis channel layer of devices/lib/channel_layer.py."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from devices import services as device_services

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_layer():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    return get_channel_layer()


async def test_a_group_hint_from_sync_code_reaches_every_member_once(redis_layer):
    first, second, outsider = [await redis_layer.new_channel() for _ in range(3)]
    group = device_services.list_group(987654)
    for channel in (first, second):
        await redis_layer.group_add(group, channel)
    await redis_layer.group_add(device_services.list_group(987655), outsider)
    assert await asyncio.to_thread(redis_layer.listening.wait, 10)
    event: dict[str, object] = {"type": "message.offer", "frame": {"type": "offer", "message_id": "msg_x"}}

    await asyncio.to_thread(device_services.notify_group, group, event)

    for channel in (first, second):
        assert await asyncio.wait_for(redis_layer.receive(channel), timeout=5) == event
    # A marker sent now arrives after anything published before it (one process publishes
    # on one connection, in order): the outsider got nothing if the marker comes first.
    await asyncio.to_thread(redis_layer.publish_channel, outsider, {"type": "marker"})
    assert await asyncio.wait_for(redis_layer.receive(outsider), timeout=5) == {"type": "marker"}
    await redis_layer.flush()


async def test_a_device_close_reaches_the_phones_own_group(redis_layer):
    from devices import services as device_services

    channel = await redis_layer.new_channel()
    await redis_layer.group_add(device_services.device_group(424242), channel)
    assert await asyncio.to_thread(redis_layer.listening.wait, 10)

    await asyncio.to_thread(device_services.close_device_connection, device_id=424242, code=4403, reason="disabled")

    event = await asyncio.wait_for(redis_layer.receive(channel), timeout=5)
    assert event == {"type": "device.close", "code": 4403, "reason": "disabled"}
    await redis_layer.flush()


async def test_a_hint_to_an_unreachable_redis_is_logged_not_raised(redis_layer, monkeypatch, caplog):
    def refuse():
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(redis_layer, "_client", refuse)
    await asyncio.to_thread(device_services.notify_group, device_services.list_group(1), {"type": "work.available"})
    assert "could not send work.available to list.1" in caplog.text
