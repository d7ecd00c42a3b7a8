"""The device route on a real Daphne server, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests import factories
from tests.live import daphne_server, live_server_url  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


async def open_socket(url: str, token: str, **options: Any) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, proxy=None, open_timeout=10, **options) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_a_native_client_without_origin_is_accepted_and_a_bad_token_gets_403(live_server_url, alice_list):  # noqa: F811
    device, token = factories.make_enrolled_device(phone_list=alice_list)
    url = live_server_url.replace("http://", "ws://") + "/ws/device/"
    hello = asyncio.run(open_socket(url, token))
    assert hello["type"] == "hello" and hello["device_id"] == device.public_id
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(open_socket(url, "pfd_" + "A" * 36))
    assert refused.value.response.status_code == 403


def test_the_browser_route_refuses_a_foreign_origin(live_server_url, alice_list):  # noqa: F811
    _device, token = factories.make_enrolled_device(phone_list=alice_list, kind="browser")
    url = live_server_url.replace("http://", "ws://") + f"/ws/browser-device/?token={token}"
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(open_socket(url, "", origin="https://evil.example"))
    assert refused.value.response.status_code == 403
    hello = asyncio.run(open_socket(url, "", origin=live_server_url.replace("127.0.0.1", "localhost")))
    assert hello["type"] == "hello"
