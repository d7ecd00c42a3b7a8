"""The project's ASGI application with every WebSocket handshake held back
PF_TEST_HANDSHAKE_DELAY seconds before it reaches the application, as on a saturated event
loop (tests/devices/test_daphne_ws.py)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from config.asgi import application as project

DELAY = float(os.environ.get("PF_TEST_HANDSHAKE_DELAY", "0"))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    if scope["type"] == "websocket":
        await asyncio.sleep(DELAY)
    return await project(scope, receive, send)
