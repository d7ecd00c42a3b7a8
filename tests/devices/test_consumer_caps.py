"""A phone at one of its caps over its WebSocket: not offered work, its claims lose at
once, and offered the open work again when it is under its caps again."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from config.asgi import application
from devices.consumers import fleet
from devices.models import Device
from messaging.models import Message
from messaging.services import offers
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def connect(token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])


async def open_phone(token: str) -> WebsocketCommunicator:
    ws = connect(token)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    return ws


async def next_frame(ws: WebsocketCommunicator, kind: str) -> dict:
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] != kind:
        frame = await ws.receive_json_from(timeout=5)
    return frame


@database_sync_to_async
def set_list_caps(phone_list, **caps: int | None) -> None:
    for name, value in caps.items():
        setattr(phone_list, f"rate_limit_per_{name}", value)
    phone_list.save(update_fields=[f"rate_limit_per_{name}" for name in caps])


async def test_a_phone_at_its_hour_cap_is_not_offered_work_until_its_cap_is_raised(alice_list):
    await set_list_caps(alice_list, hour=1)
    _device, token = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list)
    first = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    ws = await open_phone(token)
    assert (await next_frame(ws, "offer"))["message_id"] == first.public_id
    await ws.send_json_to({"type": "claim", "message_id": first.public_id})
    assert (await next_frame(ws, "assign"))["message_id"] == first.public_id  # its last room this hour

    second = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    await sync_to_async(offers.offer_message)(message=second)
    await fleet.tick()  # the periodic look at the open work offers it nothing either
    assert await ws.receive_nothing(timeout=0.3)
    await ws.send_json_to({"type": "claim", "message_id": second.public_id})  # from an old offer, say
    assert await ws.receive_json_from(timeout=5) == {"type": "taken", "message_id": second.public_id}
    # Every phone of the list is at its cap: the message waits (and would expire by its TTL).
    assert (await database_sync_to_async(Message.objects.get)(pk=second.pk)).status == "queued"

    await set_list_caps(alice_list, hour=2)
    await fleet.tick()  # the list's new caps reach the connection, which is offered the work
    assert (await next_frame(ws, "offer"))["message_id"] == second.public_id
    await ws.send_json_to({"type": "claim", "message_id": second.public_id})
    assert (await next_frame(ws, "assign"))["message_id"] == second.public_id
    await ws.disconnect()


async def test_the_work_goes_to_the_phone_under_its_cap(alice_list):
    capped, capped_token = await database_sync_to_async(factories.make_enrolled_device)(
        phone_list=alice_list, name="capped"
    )
    _free, free_token = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list, name="free")
    await database_sync_to_async(Device.objects.filter(pk=capped.pk).update)(rate_limit_per_day=1)
    first = await database_sync_to_async(factories.make_message)(phone_list=alice_list, pinned_device=capped)
    capped_ws = await open_phone(capped_token)
    await next_frame(capped_ws, "offer")
    await capped_ws.send_json_to({"type": "claim", "message_id": first.public_id})
    assert (await next_frame(capped_ws, "assign"))["message_id"] == first.public_id
    free_ws = await open_phone(free_token)

    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    await sync_to_async(offers.offer_message)(message=message)
    assert (await next_frame(free_ws, "offer"))["message_id"] == message.public_id
    assert await capped_ws.receive_nothing(timeout=0.3)
    await free_ws.send_json_to({"type": "claim", "message_id": message.public_id})
    assert (await next_frame(free_ws, "assign"))["message_id"] == message.public_id
    await capped_ws.disconnect()
    await free_ws.disconnect()
