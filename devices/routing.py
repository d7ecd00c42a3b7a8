"""WebSocket routes and the device-token middleware that guards them.

`/ws/device/` is for native phones: `Authorization: Bearer <device_token>`, no Origin
needed. `/ws/browser-device/` is for the panel's virtual phone: browsers cannot set
headers, so it takes `?token=`, only for `browser` devices, and only from our own hosts.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.urls import path, re_path

from devices import services
from devices.consumer_base import orm
from devices.consumers import DeviceConsumer
from devices.lib import daphne_ws
from devices.lib.admission import for_process as admission_for_process
from devices.lib.admission import log_shed
from devices.models import Device

logger = logging.getLogger(__name__)

# When the token cannot be checked (database unreachable or its pool exhausted).
RETRY_AFTER_DATABASE_ERROR = 5


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _query_token(scope: dict[str, Any]) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


@orm
def _authenticate(token: str | None) -> Device | None:
    return services.authenticate_device(token=token)


async def try_later(receive: Any, send: Any, retry_after: int) -> None:
    """Answers a handshake "busy, come back in `retry_after` s": accepted, one `error` frame
    with `retry_after`, closed with 4503 (busy, like HTTP 503). Daphne can only refuse a
    handshake with 403, which a phone must take for a revoked token."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    frame = {
        "type": "error",
        "error": f"The server is busy; connect again in {retry_after} s.",
        "retry_after": retry_after,
    }
    await send({"type": "websocket.send", "text": json.dumps(frame)})
    await send({"type": "websocket.close", "code": services.CLOSE_TRY_LATER})


class DeviceTokenAuthMiddleware:
    """Authenticates the phone before the handshake is accepted: a bad token gets the
    handshake refused (HTTP 403) and never a frame. A valid token is never refused: while
    the process is busy (`devices/lib/admission.py`) or the database cannot answer, the
    phone is told to try later (close 4503, docs/device-protocol.md). Under Daphne the
    process's protocol (`devices/lib/daphne_ws.py`) has already taken the handshake on or
    answered it 503 before the upgrade; this does it for any other server."""

    def __init__(self, app: Any, *, from_query: bool = False, kinds: tuple[str, ...] = ()) -> None:
        self.app = app
        self.from_query = from_query
        self.kinds = kinds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if daphne_ws.admitted(scope):
            return await self._authenticated(scope, receive, send)
        admission = admission_for_process(settings.DEVICE_ACCEPT_RATE)
        now = time.monotonic()
        retry_after = admission.enter(now)
        if retry_after is not None:
            log_shed(admission, now)
            return await try_later(receive, send, retry_after)
        pending = True

        async def send_and_release(message: dict[str, Any]) -> None:
            nonlocal pending
            if pending and message["type"] in ("websocket.send", "websocket.close"):
                pending = False  # the handshake's work is done: its first frame, or a close
                admission.leave()
            await send(message)

        try:
            return await self._authenticated(scope, receive, send_and_release)
        finally:
            if pending:
                pending = False
                admission.leave()

    async def _authenticated(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _query_token(scope) if self.from_query else _bearer(scope)
        try:
            device = await _authenticate(token)
        except Exception:  # not the token's fault: the phone must not give up
            logger.warning("device handshake: the token could not be checked; phone told to try later", exc_info=True)
            return await try_later(receive, send, RETRY_AFTER_DATABASE_ERROR)
        if device is None or (self.kinds and device.kind not in self.kinds):
            message = await receive()
            if message["type"] == "websocket.connect":
                # Closing before accepting: the server answers the handshake with 403.
                await send({"type": "websocket.close", "code": 1008})
            return None
        return await self.app({**scope, "device": device}, receive, send)


async def refuse_unknown_path(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    """Any other WebSocket path: the handshake is refused (HTTP 403), where Channels' router
    would raise and the server log a traceback."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


websocket_urlpatterns = [
    path("ws/device/", DeviceTokenAuthMiddleware(DeviceConsumer.as_asgi())),
    path(
        "ws/browser-device/",
        AllowedHostsOriginValidator(
            DeviceTokenAuthMiddleware(DeviceConsumer.as_asgi(), from_query=True, kinds=(Device.Kind.BROWSER,))
        ),
    ),
    re_path(r"", refuse_unknown_path),
]

websocket_application = URLRouter(websocket_urlpatterns)
