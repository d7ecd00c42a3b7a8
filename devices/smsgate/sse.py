"""`GET /events`: the Server-Sent Events stream that wakes SMSGate phones without Firebase.

The stream joins the channel-layer groups of the phone's list (its hints, and its offers)
and of the phone itself, so it hears the same `message.offer` / `work.available` hints as
WebSocket phones and
turns them into `MessageEnqueued`; the app then calls `GET /message`, where the claim
happens. Events are hints: on every (re)connect the app fetches anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from devices import services as device_services
from devices.models import Device
from devices.services import CLOSE_REPLACED
from devices.smsgate import services, wire
from devices.smsgate.api import authenticate_phone

logger = logging.getLogger(__name__)

# Asks the app to send the SMS it received in a period again, as `sms:received` webhooks.
EXPORT_REQUESTED = "smsgate.export"
# Channel-layer event type → SSE event name the app acts on.
EVENT_NAMES = {
    "message.offer": "MessageEnqueued",
    "work.available": "MessageEnqueued",
    device_services.SETTINGS_UPDATED: "SettingsUpdated",
    device_services.WEBHOOKS_UPDATED: "WebhooksUpdated",
    # The SMSGate client API's inbox refresh (messaging/services/smsgate.py): its data goes along.
    EXPORT_REQUESTED: "MessagesExportRequested",
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


class _PhoneStream:
    """One open `/events` connection: its channel, its groups and its presence."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.layer = get_channel_layer()
        self.groups = [
            device_services.list_group(device.phone_list_id),
            device_services.offer_group(device.phone_list_id),
            device_services.device_group(device.pk),
            device_services.stream_group(device.phone_list_id),
        ]
        self.channel = ""
        self.receiver: asyncio.Future[Any] | None = None

    async def open(self) -> None:
        self.channel = await self.layer.new_channel() if self.layer is not None else f"sse.{id(self)}"
        await self.join()
        replaced = await database_sync_to_async(services.mark_stream_open)(
            device=self.device, channel_name=self.channel
        )
        if replaced and self.layer is not None:
            # The phone reconnected: its previous stream is dead or about to be.
            await self.layer.send(replaced, {"type": "device.close", "code": CLOSE_REPLACED, "reason": "replaced"})

    async def join(self) -> None:
        # Re-joining also renews the membership before the layer's group_expiry.
        for group in self.groups if self.layer is not None else []:
            await self.layer.group_add(group, self.channel)

    async def refresh(self) -> bool:
        """Renews presence and group membership; True when work waits for this phone."""
        refresh = database_sync_to_async(services.refresh_stream)
        waiting: bool = await refresh(device=self.device, channel_name=self.channel)
        await self.join()
        return waiting

    async def next_event(self, timeout: float) -> dict[str, object] | None:
        """The next channel-layer event, or None if nothing came within `timeout`."""
        if self.layer is None:
            await asyncio.sleep(timeout)
            return None
        if self.receiver is None:
            # Never cancelled on a timeout: the pending receive is reused by the next call.
            self.receiver = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.receiver}, timeout=timeout)
        if not done:
            return None
        event, self.receiver = self.receiver.result(), None
        return event if isinstance(event, dict) else None

    async def close(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel()
        with contextlib.suppress(Exception):
            for group in self.groups if self.layer is not None else []:
                await self.layer.group_discard(group, self.channel)
        await database_sync_to_async(services.mark_stream_closed)(device=self.device, channel_name=self.channel)


async def _stream(device: Device) -> AsyncGenerator[bytes]:
    stream = _PhoneStream(device)
    keepalive = float(settings.SMSGATE_SSE_KEEPALIVE_SECONDS)
    try:
        await stream.open()
        # Sent at once, so the client sees the headers before the first event.
        yield wire.sse_comment("connected")
        # The app fetches settings and webhooks when it starts and then once a day, and its
        # first fetch runs before its sign-up completes, so it fetches nothing: a new phone
        # would have no webhooks and no signing key for a day. Every new stream (which the
        # app opens right after signing up, and on every reconnect) makes it fetch both now.
        yield wire.sse_event("SettingsUpdated")
        yield wire.sse_event("WebhooksUpdated")
        next_keepalive, quiet_until, enqueued_waiting = time.monotonic() + keepalive, 0.0, False
        while True:
            now = time.monotonic()
            if enqueued_waiting and now >= quiet_until:
                enqueued_waiting, quiet_until = False, now + COALESCE_SECONDS
                yield wire.sse_event("MessageEnqueued")
            if now >= next_keepalive:
                next_keepalive = now + keepalive
                yield wire.sse_comment("keepalive")
                # Offers are hints: a lost one is caught up here, from the database.
                enqueued_waiting = await stream.refresh() or enqueued_waiting
            deadline = min(next_keepalive, quiet_until) if enqueued_waiting else next_keepalive
            event = await stream.next_event(max(0.0, deadline - time.monotonic()))
            event_type = str(event.get("type", "")) if event else None
            if event_type == "device.close":
                return  # disabled, removed, or replaced by a newer stream of this phone
            name = EVENT_NAMES.get(event_type or "")
            if name == "MessageEnqueued":
                enqueued_waiting = True  # sent at the top of the loop, once per burst
            elif name == "MessagesExportRequested" and event:
                yield wire.sse_event(name, str(event.get("data") or "{}"))
            elif name:
                yield wire.sse_event(name)
    except Exception:
        # Ending the stream is safe: the app reconnects and fetches its work at once.
        logger.warning("SMSGate event stream of %s failed", device.public_id, exc_info=True)
    finally:
        await stream.close()
