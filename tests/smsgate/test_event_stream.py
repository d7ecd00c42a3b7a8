"""The `/events` generator driven directly through the channel layer: bursts, closing, presence."""

from __future__ import annotations

import asyncio
import time

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from devices import services as device_services
from devices.models import Device
from devices.services import device_group, list_group
from devices.smsgate import services as smsgate
from devices.smsgate import sse, wire
from tests import factories

ENQUEUED = wire.sse_event("MessageEnqueued")
OPENING = [wire.sse_comment("connected"), wire.sse_event("SettingsUpdated"), wire.sse_event("WebhooksUpdated")]


@pytest.fixture
def stream_settings(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.SMSGATE_SSE_KEEPALIVE_SECONDS = 60


def make_phone() -> Device:
    account = factories.make_account()
    phone_list = factories.make_list(account=account)
    _row, secret = smsgate.create_enrolment_token(phone_list=phone_list)
    credential = smsgate.resolve_private_token(secret=secret)
    return smsgate.register_device(credential=credential, name="Pixel").device


async def next_chunk(stream, timeout: float = 3.0) -> bytes:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def opened(stream) -> None:
    """Reads what every new stream starts with."""
    assert [await next_chunk(stream) for _ in OPENING] == OPENING


async def test_every_new_stream_starts_by_making_the_app_fetch_settings_and_webhooks(transactional_db, stream_settings):
    """The app's own first fetch of both runs before its sign-up completes and fetches
    nothing; its next is a day later (capcom6/android-sms-gateway, GatewayService.start)."""
    device = await database_sync_to_async(make_phone)()
    for _ in range(2):  # a reconnect too
        stream = sse._stream(device)
        await opened(stream)
        with pytest.raises(TimeoutError):
            await next_chunk(stream, timeout=0.3)  # and nothing else until something happens
        await stream.aclose()


async def test_an_offer_of_the_list_as_the_send_api_makes_it_wakes_the_phone(transactional_db, stream_settings):
    """Offers of a list have their own group (one listener per server process for the
    WebSocket phones, devices/list_offers.py): the stream is in it too."""
    from types import SimpleNamespace

    from messaging.services import offers

    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    message = SimpleNamespace(
        public_id="msg_1",
        to="+393331234567",
        text="Hi",
        parts=1,
        sim=None,
        phone_list_id=device.phone_list_id,
        pinned_device_id=None,
    )
    await database_sync_to_async(offers.offer_message)(message=message)
    assert await next_chunk(stream) == ENQUEUED
    await stream.aclose()


async def test_a_burst_of_offers_wakes_the_phone_once_now_and_once_after_the_burst(transactional_db, stream_settings):
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    layer = get_channel_layer()
    for _ in range(20):
        await layer.group_send(list_group(device.phone_list_id), {"type": "message.offer", "frame": {}})
    started = time.monotonic()
    assert await next_chunk(stream) == ENQUEUED
    assert await next_chunk(stream) == ENQUEUED
    assert time.monotonic() - started >= sse.COALESCE_SECONDS * 0.9
    with pytest.raises(TimeoutError):
        await next_chunk(stream, timeout=sse.COALESCE_SECONDS * 2)
    await stream.aclose()


async def test_work_whose_offer_was_lost_wakes_the_phone_at_the_next_keepalive(
    transactional_db, stream_settings, settings
):
    settings.SMSGATE_SSE_KEEPALIVE_SECONDS = 0.2
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    assert await next_chunk(stream) == wire.sse_comment("keepalive")  # nothing waits yet
    # Queued without any channel-layer offer, as if the hint had been lost.
    await database_sync_to_async(factories.make_message)(phone_list=device.phone_list)
    chunks = [await next_chunk(stream) for _ in range(3)]
    assert ENQUEUED in chunks
    await stream.aclose()


async def test_settings_and_webhook_notices_become_their_events(transactional_db, stream_settings):
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    await database_sync_to_async(device_services.notify_webhooks_updated)(phone_list_id=device.phone_list_id)
    assert await next_chunk(stream) == wire.sse_event("WebhooksUpdated")
    await database_sync_to_async(smsgate.rotate_signing_key)(device=device)
    assert await next_chunk(stream) == wire.sse_event("SettingsUpdated")
    await stream.aclose()


async def test_a_change_of_the_lists_rate_limit_makes_its_phones_fetch_settings(transactional_db, stream_settings):
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    change = database_sync_to_async(device_services.update_list_settings)
    await change(phone_list=device.phone_list, rate_limit_per_minute=6)
    assert await next_chunk(stream) == wire.sse_event("SettingsUpdated")
    await change(phone_list=device.phone_list, rate_limit_per_minute=6, name="Same limit")
    await change(phone_list=device.phone_list, rate_limit_per_minute=None)
    assert await next_chunk(stream) == wire.sse_event("SettingsUpdated")
    with pytest.raises(TimeoutError):
        await next_chunk(stream, timeout=0.3)  # one event per change; none when it stayed
    await stream.aclose()


async def test_the_phone_is_online_while_its_stream_is_open_and_a_close_event_ends_it(
    transactional_db, stream_settings
):
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    fresh = await Device.objects.aget(pk=device.pk)
    assert fresh.is_connected and fresh.channel_name and await Device.objects.online().filter(pk=device.pk).aexists()

    await get_channel_layer().group_send(device_group(device.pk), {"type": "device.close", "code": 4403})
    with pytest.raises(StopAsyncIteration):
        await next_chunk(stream)
    assert not (await Device.objects.aget(pk=device.pk)).is_connected


async def test_a_reconnect_closes_the_previous_stream_of_the_same_phone(transactional_db, stream_settings):
    device = await database_sync_to_async(make_phone)()
    old, new = sse._stream(device), sse._stream(device)
    await opened(old)
    await opened(new)
    with pytest.raises(StopAsyncIteration):
        await next_chunk(old)
    # The old stream's end does not take the phone offline: the new one holds it.
    assert (await Device.objects.aget(pk=device.pk)).is_connected
    await new.aclose()
    assert not (await Device.objects.aget(pk=device.pk)).is_connected


def test_every_authenticated_request_marks_the_phone_as_seen(client, alice_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    registration = smsgate.register_device(credential=smsgate.resolve_private_token(secret=secret), name="Pixel")
    with time_machine.travel("2026-06-01T08:00:00Z", tick=False):
        client.get("/api/mobile/v1/settings", HTTP_AUTHORIZATION=f"Bearer {registration.token}")
    seen = Device.objects.get(pk=registration.device.pk).last_seen_at
    assert seen is not None and seen.isoformat() == "2026-06-01T08:00:00+00:00"


async def test_an_inbox_export_request_becomes_its_event_with_the_period(transactional_db, stream_settings):
    device = await database_sync_to_async(make_phone)()
    stream = sse._stream(device)
    await opened(stream)
    data = '{"since": "2026-12-01T00:00:00.000+00:00", "until": "2026-12-02T00:00:00.000+00:00"}'
    await get_channel_layer().group_send(device_group(device.pk), {"type": sse.EXPORT_REQUESTED, "data": data})
    assert await next_chunk(stream) == wire.sse_event("MessagesExportRequested", data)
    await stream.aclose()
