"""`GET /events`: the Server-Sent Events stream that wakes SMSGate phones without Firebase.

The stream joins the channel-layer groups of the phone's list and of the phone itself,
so it hears the same `message.offer` / `work.available` hints as WebSocket phones and
turns them into `MessageEnqueued`; the app then calls `GET /message`, where the claim
happens. Events are hints (R25): on every (re)connect the app fetches anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from devices.models import Device
from devices.services import CLOSE_REPLACED
from devices.smsgate import services, wire
from devices.smsgate.api import authenticate_phone
from messaging.services import offers

# Channel-layer event type → SSE event name the app acts on.
EVENT_NAMES = {
    "message.offer": "MessageEnqueued",
    "work.available": "MessageEnqueued",
    services.SETTINGS_UPDATED: "SettingsUpdated",
    services.WEBHOOKS_UPDATED: "WebhooksUpdated",
}
# A burst of offers (a bulk send) becomes one MessageEnqueued per this many seconds.
COALESCE_SECONDS = 0.5


@require_GET
async def events(request: HttpRequest) -> HttpResponseBase:
    """Opens the phone's event stream; 401 for a bad device token."""
    try:
        device = await database_sync_to_async(authenticate_phone)(request)
    except services.InvalidDeviceToken as exc:
        return JsonResponse({"message": exc.message}, status=401)
    response = StreamingHttpResponse(_stream(device), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(device: Device) -> AsyncIterator[bytes]:
    layer = get_channel_layer()
    groups = [
        offers.list_group(device.phone_list_id),
        offers.device_group(device.pk),
        services.stream_group(device.phone_list_id),
    ]
    channel = await layer.new_channel() if layer is not None else f"sse.{id(groups)}"
    receiver: asyncio.Future[Any] | None = None
    try:
        await _join(layer, groups, channel)
        replaced = await database_sync_to_async(services.mark_stream_open)(device=device, channel_name=channel)
        if replaced and layer is not None:
            # The phone reconnected: its previous stream is dead or about to be.
            await layer.send(replaced, {"type": "device.close", "code": CLOSE_REPLACED, "reason": "replaced"})
        # Sent at once, so the client sees the headers before the first event.
        yield wire.sse_comment("connected")
        keepalive = float(settings.SMSGATE_SSE_KEEPALIVE_SECONDS)
        next_keepalive = time.monotonic() + keepalive
        quiet_until = 0.0
        enqueued_waiting = False
        while True:
            now = time.monotonic()
            if enqueued_waiting and now >= quiet_until:
                enqueued_waiting, quiet_until = False, now + COALESCE_SECONDS
                yield wire.sse_event("MessageEnqueued")
            if now >= next_keepalive:
                next_keepalive = now + keepalive
                yield wire.sse_comment("keepalive")
                await database_sync_to_async(services.refresh_stream)(device=device, channel_name=channel)
                # Re-joining refreshes the membership before the layer's group_expiry (R28).
                await _join(layer, groups, channel)
            deadline = min(next_keepalive, quiet_until) if enqueued_waiting else next_keepalive
            if layer is None:
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                continue
            if receiver is None:
                receiver = asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receiver}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                continue
            event_type = receiver.result().get("type", "")
            receiver = None
            if event_type == "device.close":
                return  # disabled, removed, or replaced by a newer stream of this phone
            name = EVENT_NAMES.get(event_type)
            if name == "MessageEnqueued":
                enqueued_waiting = True
            elif name:
                yield wire.sse_event(name)
    finally:
        if receiver is not None:
            receiver.cancel()
        if layer is not None:
            for group in groups:
                await layer.group_discard(group, channel)
        await database_sync_to_async(services.mark_stream_closed)(device=device, channel_name=channel)


async def _join(layer: Any, groups: list[str], channel: str) -> None:
    if layer is not None:
        for group in groups:
            await layer.group_add(group, channel)
