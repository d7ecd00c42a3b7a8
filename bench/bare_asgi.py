"""A bare Channels consumer behind Daphne: the yardstick `bench/soak.py` measures the
phones' consumer against (memory per connection).

    daphne bench.bare_asgi:application

The same settings as the project (so the same channel layer: each connection gets its
channel, as every Channels consumer does), one route, `/ws/device/`, any token accepted,
`ping` answered with `pong` and every other frame ignored: what holding a WebSocket in
Channels costs before any of Phonefleet's own work.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BareConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == '{"type":"ping"}':
            await self.send(text_data='{"type":"pong"}')


application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter([path("ws/device/", BareConsumer.as_asgi())])}
)
