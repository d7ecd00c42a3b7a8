"""WebSocket routes and the device-token middleware that guards them.

`/ws/device/` is for native phones: `Authorization: Bearer <device_token>`, no Origin
needed. `/ws/browser-device/` is for the panel's virtual phone: browsers cannot set
headers, so it takes `?token=`, only for `browser` devices, and only from our own hosts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from devices import services
from devices.consumers import DeviceConsumer
from devices.models import Device


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _query_token(scope: dict[str, Any]) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class DeviceTokenAuthMiddleware:
    """Authenticates the phone before the handshake is accepted: a bad token gets the
    handshake refused (HTTP 403) and never a frame."""

    def __init__(self, app: Any, *, from_query: bool = False, kinds: tuple[str, ...] = ()) -> None:
        self.app = app
        self.from_query = from_query
        self.kinds = kinds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _query_token(scope) if self.from_query else _bearer(scope)
        device = await database_sync_to_async(services.authenticate_device)(token=token)
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
