"""A verification end to end: the API starts it, a real phone connection (the phones'
WebSocket, through the real ASGI application) is offered the SMS with the code masked,
claims it and gets the real text, reports it sent; the code it got is then approved."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from messaging.models import Message
from tests import factories
from tests.messaging.verifying import check, start

pytestmark = pytest.mark.django_db(transaction=True)


async def next_frame_of_type(ws: WebsocketCommunicator, kind: str) -> dict:
    while True:
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == kind:
            return frame


async def test_a_code_sent_through_a_real_phone_connection_is_approved(alice_key, alice_list):
    _key, secret = alice_key
    _device, token = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list)
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    client = Client()
    started = await sync_to_async(start)(client, secret, template="Your Shop code: {code}")
    assert started["status_code"] == "2" and len(started["records"]) == 1  # the phone was online

    offer = await next_frame_of_type(ws, "offer")
    assert (offer["message_id"], offer["msg"]) == (started["message_id"], "Your Shop code: ******")
    await ws.send_json_to({"type": "claim", "message_id": offer["message_id"]})
    assign = await next_frame_of_type(ws, "assign")
    code = re.fullmatch(r"Your Shop code: (\d{6})", assign["msg"])
    assert code, assign
    await ws.send_json_to({"type": "report", "message_id": offer["message_id"], "status": "sent"})
    assert (await next_frame_of_type(ws, "ack"))["status"] == "sent"
    await ws.disconnect()

    answer = await sync_to_async(check)(client, secret, verification_id=started["verification_id"], code=code.group(1))
    assert (answer["status_code"], answer["status"]) == ("2", "approved")
    shown = await sync_to_async(client.get)(
        f"/api/v1/verify/{started['verification_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert shown.json()["message"]["status"] == "sent"
    stored = await database_sync_to_async(Message.objects.get)(public_id=started["message_id"])
    assert (stored.text, stored.sealed_text) == ("Your Shop code: ******", "")
