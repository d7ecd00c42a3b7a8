"""The phones' WebSocket, driven through the real ASGI application."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.utils import timezone

from config.asgi import application
from devices import services
from devices.consumers import fleet
from devices.fleet import presence_refresh
from devices.models import Device
from messaging.models import InboundSms
from messaging.services import offers
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def phone(alice_list):
    """(device, token) of one of Alice's phones."""
    return factories.make_enrolled_device(phone_list=alice_list, name="Pixel 7")


def connect_as(token: str | None, path: str = "/ws/device/", headers: list | None = None) -> WebsocketCommunicator:
    all_headers = list(headers or [])
    if token is not None:
        all_headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, path, headers=all_headers)


async def open_phone(token: str) -> tuple[WebsocketCommunicator, dict]:
    ws = connect_as(token)
    connected, _ = await ws.connect()
    assert connected
    return ws, await ws.receive_json_from(timeout=5)


@database_sync_to_async
def reload(device: Device) -> Device:
    return Device.objects.get(pk=device.pk)


@database_sync_to_async
def is_online(device: Device) -> bool:
    return Device.objects.online().filter(pk=device.pk).exists()


async def test_it_refuses_a_bad_token_at_the_handshake(phone):
    for token in [None, "nonsense", phone[1][:-1] + ("A" if phone[1][-1] != "A" else "B")]:
        ws = connect_as(token)
        connected, _ = await ws.connect()
        assert not connected
        assert await ws.receive_nothing()


async def test_it_sends_hello_with_the_device_list_and_settings(phone, alice_list):
    device, token = phone
    ws, hello = await open_phone(token)
    assert hello == {
        "type": "hello",
        "device_id": device.public_id,
        "list": alice_list.token,
        "settings": {**alice_list.phone_settings(), "caps": {"minute": None, "hour": None, "day": None}},
    }
    await ws.disconnect()


async def test_it_accepts_a_native_client_without_an_origin_header(phone):
    ws = connect_as(phone[1], headers=[])
    connected, _ = await ws.connect()
    assert connected
    await ws.disconnect()


async def test_it_marks_the_phone_online_while_connected_and_offline_after(phone):
    device, token = phone
    ws, _hello = await open_phone(token)
    connected = await reload(device)
    assert connected.is_connected and connected.channel_name and await is_online(device)
    await ws.disconnect()
    gone = await reload(device)
    assert not gone.is_connected and not await is_online(device)


async def test_it_treats_a_silent_phone_as_offline_after_the_presence_ttl(phone):
    device, token = phone
    ws, _hello = await open_phone(token)
    with time_machine.travel(timezone.now() + timedelta(seconds=80), tick=False):
        assert not await is_online(device)
    await ws.disconnect()


async def test_it_answers_ping_with_pong_and_the_next_pass_refreshes_last_seen(phone):
    """Once the connect's write is `presence_refresh()` old (half the TTL): the phone is still
    online until then, and a pass writes it again (tests/devices/test_fleet.py)."""
    device, token = phone
    ws, _hello = await open_phone(token)
    later = timezone.now() + presence_refresh() + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
        assert (await reload(device)).last_seen_at < later  # no write per frame
        assert await is_online(device)
        await fleet.tick()  # one UPDATE for every phone heard from whose write is due
        seen = (await reload(device)).last_seen_at
    assert seen == later
    await ws.disconnect()


async def test_it_stores_availability_battery_and_signal_from_state(phone):
    device, token = phone
    ws, _hello = await open_phone(token)
    await ws.send_json_to({"type": "state", "available": False, "battery": 57, "signal": -71})
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    stored = await reload(device)
    assert (stored.is_available, stored.battery, stored.signal) == (False, 57, -71)
    await ws.disconnect()


async def test_a_state_that_changes_nothing_is_not_written(phone, monkeypatch):
    """Every phone repeats its state right after `hello`: written only when it changes
    availability, battery or signal (one statement less per connect)."""
    device, token = phone
    writes = []
    store = services.set_device_state

    def counted(**kwargs: object) -> None:
        writes.append(kwargs)
        store(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "set_device_state", counted)
    ws, _hello = await open_phone(token)

    async def state(frame: dict) -> Device:
        await ws.send_json_to({"type": "state", **frame})
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
        return await reload(device)

    await state({"available": True})  # as it was
    assert writes == []
    stored = await state({"available": True, "battery": 80, "signal": -70})
    assert len(writes) == 1 and (stored.battery, stored.signal) == (80, -70)
    await state({"available": True, "battery": 80, "signal": -70})  # the same again
    await state({"available": True, "battery": 80})
    assert len(writes) == 1
    stored = await state({"available": True, "battery": 79})
    assert len(writes) == 2 and (stored.is_available, stored.battery, stored.signal) == (True, 79, -70)
    stored = await state({"available": False, "battery": 79})
    assert len(writes) == 3 and not stored.is_available
    stored = await state({"available": True})
    assert len(writes) == 4 and stored.is_available
    await ws.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "dance"}',
        '{"type": "claim"}',
        '{"type": "report", "message_id": "msg_x", "status": "eaten"}',
        '{"type": "state", "available": "yes"}',
        '{"type": "state", "available": true, "battery": 900}',
        '{"type": "incoming", "from": "", "msg": "hi"}',
        '{"type": "report", "message_id": "msg_x", "status": "sent", "at": "yesterday"}',
    ],
)
async def test_it_answers_a_malformed_frame_with_an_error_frame_and_stays_open(phone, frame):
    ws, _hello = await open_phone(phone[1])
    await ws.send_to(text_data=frame)
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "error" and answer["error"]
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.disconnect()


async def test_it_closes_a_connection_that_keeps_sending_garbage(phone):
    ws, _hello = await open_phone(phone[1])
    for _ in range(10):
        await ws.send_to(text_data="garbage")
        assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_BAD_FRAMES}


async def test_it_closes_a_phone_that_stays_silent_past_the_idle_timeout(phone, settings):
    settings.DEVICE_TICK_SECONDS = 0.01
    settings.DEVICE_IDLE_SECONDS = 90
    ws, _hello = await open_phone(phone[1])
    with time_machine.travel(timezone.now() + timedelta(seconds=91)):
        closed = await ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": services.CLOSE_IDLE}


async def test_it_keeps_a_talking_phone_open_across_ticks(phone, settings):
    settings.DEVICE_TICK_SECONDS = 0.01
    ws, _hello = await open_phone(phone[1])
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_it_closes_the_live_connection_when_the_phone_is_disabled(phone):
    device, token = phone
    ws, _hello = await open_phone(token)
    await database_sync_to_async(disable_and_commit)(device)
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_DISABLED}
    again = connect_as(token)
    assert (await again.connect())[0] is False


def disable_and_commit(device: Device) -> None:
    services.disable_device(device=device)


async def test_it_closes_the_live_connection_and_refuses_the_token_when_the_phone_is_removed(phone):
    device, token = phone
    ws, _hello = await open_phone(token)
    await database_sync_to_async(services.remove_device)(device=device)
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_DISABLED}
    assert (await connect_as(token).connect())[0] is False


async def test_a_disabled_phone_is_closed_by_its_periodic_check_even_without_the_hint(phone, settings):
    device, token = phone
    settings.DEVICE_TICK_SECONDS = 0.01
    ws, _hello = await open_phone(token)
    # Disabled behind the consumer's back: no channel-layer message is sent.
    await database_sync_to_async(lambda: Device.objects.filter(pk=device.pk).update(is_enabled=False))()
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_DISABLED}


async def test_a_reconnecting_phone_replaces_its_old_connection(phone):
    device, token = phone
    old, _ = await open_phone(token)
    new, _ = await open_phone(token)
    assert (await old.receive_json_from(timeout=5))["type"] == "error"
    assert await old.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_REPLACED}
    await old.disconnect()
    assert (await reload(device)).is_connected
    await new.disconnect()
    assert not (await reload(device)).is_connected


async def test_it_stores_an_incoming_sms_once_and_acks_it(phone, alice_list):
    ws, _hello = await open_phone(phone[1])
    frame = {"type": "incoming", "from": "+393330000001", "msg": "OK", "at": "2026-11-25T10:00:00Z", "id": "42"}
    await ws.send_json_to(frame)
    first = await ws.receive_json_from(timeout=5)
    await ws.send_json_to(frame)
    second = await ws.receive_json_from(timeout=5)
    assert first["type"] == "ack" and first["status"] == "received" and first["id"] == "42"
    assert first["message_id"] == second["message_id"]
    stored = await database_sync_to_async(
        lambda: list(InboundSms.objects.values_list("sender", "text", "phone_list"))
    )()
    assert stored == [("+393330000001", "OK", alice_list.pk)]
    await ws.disconnect()


async def test_group_offers_reach_an_available_phone_only(phone, alice_list):
    ws, _hello = await open_phone(phone[1])
    layer = get_channel_layer()
    frame = {"type": "offer", "message_id": "msg_1", "to": "+39333", "msg": "hi", "parts": 1, "sim": None}
    await layer.group_send(f"list.{alice_list.pk}", {"type": "message.offer", "frame": frame})
    assert await ws.receive_json_from(timeout=5) == frame
    await ws.send_json_to({"type": "state", "available": False})
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await layer.group_send(f"list.{alice_list.pk}", {"type": "message.offer", "frame": frame})
    assert await ws.receive_nothing()
    await ws.disconnect()


async def test_the_browser_route_takes_a_query_token_from_our_own_origin_only(alice_list):
    device, token = await database_sync_to_async(factories.make_enrolled_device)(
        phone_list=alice_list, kind=Device.Kind.BROWSER
    )
    path = f"/ws/browser-device/?token={token}"
    ours = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")])
    assert (await ours.connect())[0] is True
    assert (await ours.receive_json_from(timeout=5))["device_id"] == device.public_id
    await ours.disconnect()
    foreign = WebsocketCommunicator(application, path, headers=[(b"origin", b"https://evil.example")])
    assert (await foreign.connect())[0] is False


async def test_the_browser_route_refuses_a_native_phone_token(phone):
    path = f"/ws/browser-device/?token={phone[1]}"
    ws = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
    assert (await ws.connect())[0] is False


async def test_a_phone_still_connects_and_gets_work_while_the_channel_layer_is_down(phone, alice_list, monkeypatch):
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)

    async def layer_down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_add", layer_down)
    monkeypatch.setattr(get_channel_layer(), "group_discard", layer_down)
    ws, hello = await open_phone(phone[1])
    assert hello["type"] == "hello"
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    await ws.disconnect()


async def test_a_slow_claim_does_not_hold_back_the_phones_next_offers(phone, alice_list, monkeypatch):
    from devices import consumers

    release = asyncio.Event()

    async def slow_claim(device, message_id):
        await release.wait()  # the database is slow to answer this claim
        return None

    monkeypatch.setattr(consumers, "_claim", slow_claim)
    ws, _hello = await open_phone(phone[1])
    await ws.send_json_to({"type": "claim", "message_id": "msg_slow"})
    frame = {"type": "offer", "message_id": "msg_next", "to": "+39333", "msg": "hi", "parts": 1, "sim": None}
    await get_channel_layer().group_send(f"list.{alice_list.pk}", {"type": "message.offer", "frame": frame})
    assert await ws.receive_json_from(timeout=5) == frame  # while the claim still waits
    release.set()
    assert await ws.receive_json_from(timeout=5) == {"type": "taken", "message_id": "msg_slow"}
    await ws.disconnect()


async def test_a_burst_of_offers_reaches_the_phone_whole_and_in_order(phone, alice_list):
    ws, _hello = await open_phone(phone[1])
    layer = get_channel_layer()
    sent = []
    for n in range(300):
        frame = {"type": "offer", "message_id": f"msg_{n}", "to": "+39333", "msg": "hi", "parts": 1, "sim": None}
        sent.append(frame)
        await layer.group_send(f"list.{alice_list.pk}", {"type": "message.offer", "frame": frame})
    received = [await ws.receive_json_from(timeout=5) for _ in sent]
    assert received == sent
    await ws.disconnect()


async def test_an_offer_serialised_by_its_sender_goes_out_as_it_is(phone, alice_list):
    ws, _hello = await open_phone(phone[1])
    frame = {"type": "offer", "message_id": "msg_t", "to": "+39333", "msg": "Ciao ☕", "parts": 1, "sim": None}
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    event = {"type": "message.offer", "frame": frame, "text": text}
    await get_channel_layer().group_send(f"list.{alice_list.pk}", event)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.send", "text": text}
    await ws.disconnect()


async def test_reports_of_one_message_run_in_order_while_other_messages_run_beside_them(phone, monkeypatch):
    """A phone sends `sent` and `delivered` of message A back to back, then `sent` of B.
    A's `delivered` starts only after A's `sent` is done; B's is not held up by A (R29)."""
    from devices import consumers

    _device, token = phone
    started: list[tuple[str, str]] = []
    a_sent_may_finish = asyncio.Event()

    class Stored:
        def __init__(self, status: str) -> None:
            self.status = status

    async def report(device, message_id, status, error, at):
        started.append((message_id, status))
        if (message_id, status) == ("msg_A", "sent"):
            await a_sent_may_finish.wait()  # A's `sent` is slow (a busy database)
        return Stored(status)

    monkeypatch.setattr(consumers, "_report", report)
    ws, _hello = await open_phone(token)
    for message_id, status in [("msg_A", "sent"), ("msg_A", "delivered"), ("msg_B", "sent")]:
        await ws.send_json_to({"type": "report", "message_id": message_id, "status": status})
    assert await ws.receive_json_from(timeout=5) == {"type": "ack", "message_id": "msg_B", "status": "sent"}
    assert started == [("msg_A", "sent"), ("msg_B", "sent")]  # A's delivered waits for A's sent
    a_sent_may_finish.set()
    acks = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [(ack["message_id"], ack["status"]) for ack in acks] == [("msg_A", "sent"), ("msg_A", "delivered")]
    assert started[-1] == ("msg_A", "delivered")
    await ws.disconnect()


@pytest.fixture
def two_tokens(alice_list):
    return [factories.make_enrolled_device(phone_list=alice_list, name=name)[1] for name in ("A", "B")]


async def test_a_busy_server_tells_a_valid_phone_when_to_come_back_instead_of_refusing_it(two_tokens, settings):
    settings.DEVICE_ACCEPT_RATE = 0.01  # one handshake, then none for 100 s
    first, second = two_tokens
    ws, _hello = await open_phone(first)
    busy = connect_as(second)
    assert (await busy.connect())[0]  # accepted, so that it is not an HTTP 403
    frame = await busy.receive_json_from(timeout=5)
    assert frame["type"] == "error" and 1 <= frame["retry_after"] <= 60
    assert await busy.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_TRY_LATER}
    await ws.disconnect()


async def test_a_token_the_database_cannot_check_gets_try_later_not_403(phone, monkeypatch):
    def database_down(*, token):
        raise OperationalError("connection pool exhausted")

    monkeypatch.setattr(services, "authenticate_device", database_down)
    ws = connect_as(phone[1])
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["retry_after"] == 5
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": services.CLOSE_TRY_LATER}


@database_sync_to_async
def queued_message(phone_list):
    return factories.make_message(phone_list=phone_list).public_id


@pytest.fixture
def phones_a_and_b(alice_list):
    return [factories.make_enrolled_device(phone_list=alice_list, name=name) for name in "AB"]


async def test_a_phone_side_failure_offers_the_message_to_the_other_phone_and_pauses_the_failing_one(
    alice_list, phones_a_and_b, settings
):
    settings.DEVICE_TICK_SECONDS = 3600  # only the failover's own offer, no periodic one
    a, b = phones_a_and_b
    ws_a, _ = await open_phone(a[1])
    ws_b, _ = await open_phone(b[1])
    message_id = await queued_message(alice_list)
    await ws_a.send_json_to({"type": "claim", "message_id": message_id})
    assert (await ws_a.receive_json_from(timeout=5))["type"] == "assign"
    report = {"type": "report", "message_id": message_id, "status": "failed", "error": "RESULT_ERROR_RADIO_OFF"}
    await ws_a.send_json_to(report)
    assert await ws_a.receive_json_from(timeout=5) == {"type": "ack", "message_id": message_id, "status": "failed"}
    offer = await ws_b.receive_json_from(timeout=5)
    assert (offer["type"], offer["message_id"]) == ("offer", message_id)
    assert await ws_a.receive_nothing()  # paused: no offers
    await ws_a.send_json_to({"type": "claim", "message_id": message_id})
    assert await ws_a.receive_json_from(timeout=5) == {"type": "taken", "message_id": message_id}
    await ws_b.send_json_to({"type": "claim", "message_id": message_id})
    assert (await ws_b.receive_json_from(timeout=5))["type"] == "assign"
    assert (await reload(a[0])).paused_until is not None
    await ws_a.disconnect()
    await ws_b.disconnect()


async def offer_to_list(phone_list, message_id: str, offer_id: str) -> None:
    """The offer event the send API sends after commit (messaging.services.offers)."""
    frame = {"type": "offer", "message_id": message_id, "to": "+39333", "msg": "hi", "parts": 1, "sim": None}
    event = {"type": "message.offer", "frame": frame, "offer_id": offer_id, "list": phone_list.pk}
    await get_channel_layer().group_send(services.offer_group(phone_list.pk), event)


async def test_a_list_offer_reaches_the_claim_rounds_of_a_process_once(alice_list, settings, monkeypatch):
    """Not a copy to every connection of the list, of which all but the first did nothing."""
    from devices import consumers

    settings.DEVICE_TICK_SECONDS = 3600
    copies: list[str] = []
    offer = consumers.claims.offer

    async def counted(list_id: int, message_id: str, text: str, offer_id: str | None = None) -> None:
        copies.append(message_id)
        await offer(list_id, message_id, text, offer_id)

    monkeypatch.setattr(consumers.claims, "offer", counted)
    monkeypatch.setattr(consumers.claims, "OFFER_WAIT_MAX", 5.0)  # not opened to all while we look
    enrol = database_sync_to_async(factories.make_enrolled_device)
    tokens = [(await enrol(phone_list=alice_list, name=name))[1] for name in "ABC"]
    sockets = [(await open_phone(token))[0] for token in tokens]
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    await database_sync_to_async(offers.offer_message)(message=message)
    frames = [await ws.receive_json_from() for ws in sockets if not await ws.receive_nothing(timeout=0.3)]
    assert [frame["message_id"] for frame in frames] == [message.public_id]  # the phone next in turn
    assert copies == [message.public_id]
    for ws in sockets:
        await ws.disconnect()


async def test_an_offer_to_the_lists_group_from_a_server_of_before_still_reaches_the_phone_next_in_turn(
    alice_list, phones_a_and_b, settings
):
    settings.DEVICE_TICK_SECONDS = 3600
    (_, token_a), (_, token_b) = phones_a_and_b
    ws_a, _ = await open_phone(token_a)
    ws_b, _ = await open_phone(token_b)
    message_id = await queued_message(alice_list)
    frame = {"type": "offer", "message_id": message_id, "to": "+39333", "msg": "hi", "parts": 1, "sim": None}
    await get_channel_layer().group_send(
        services.list_group(alice_list.pk), {"type": "message.offer", "frame": frame, "offer_id": "old"}
    )
    assert (await ws_a.receive_json_from(timeout=5))["message_id"] == message_id
    await ws_a.send_json_to({"type": "claim", "message_id": message_id})
    assert (await ws_a.receive_json_from(timeout=5))["type"] == "assign"
    assert await ws_b.receive_nothing(timeout=0.3)  # B's copy of the event did nothing
    await ws_a.disconnect()
    await ws_b.disconnect()


async def test_a_list_offer_goes_to_the_phone_next_in_turn_only(alice_list, phones_a_and_b, settings):
    settings.DEVICE_TICK_SECONDS = 3600  # no periodic offer of the open work
    (_, token_a), (_, token_b) = phones_a_and_b
    ws_a, _ = await open_phone(token_a)
    ws_b, _ = await open_phone(token_b)
    message_id = await queued_message(alice_list)
    await offer_to_list(alice_list, message_id, "offer 1")
    assert (await ws_a.receive_json_from(timeout=5))["message_id"] == message_id  # neither assigned yet: A
    await ws_a.send_json_to({"type": "claim", "message_id": message_id})
    assert (await ws_a.receive_json_from(timeout=5))["type"] == "assign"
    assert await ws_b.receive_nothing(timeout=0.3)  # no offer, no `taken`: one frame each way
    await ws_a.disconnect()
    await ws_b.disconnect()


async def test_a_list_offer_goes_to_the_other_phones_when_the_chosen_one_is_late(alice_list, phones_a_and_b, settings):
    from devices import consumers

    settings.DEVICE_TICK_SECONDS = 3600
    consumers.claims.OFFER_WAIT_MAX = 0.3  # the wait for a phone not measured yet
    (_, token_a), (_, token_b) = phones_a_and_b
    ws_a, _ = await open_phone(token_a)
    ws_b, _ = await open_phone(token_b)
    message_id = await queued_message(alice_list)
    await offer_to_list(alice_list, message_id, "offer 1")
    assert (await ws_a.receive_json_from(timeout=5))["message_id"] == message_id  # A does not answer
    assert await ws_b.receive_nothing(timeout=0.1)
    assert (await ws_b.receive_json_from(timeout=5))["message_id"] == message_id  # after the wait
    await ws_b.send_json_to({"type": "claim", "message_id": message_id})
    assert (await ws_b.receive_json_from(timeout=5))["type"] == "assign"
    await ws_a.send_json_to({"type": "claim", "message_id": message_id})  # too late
    assert await ws_a.receive_json_from(timeout=5) == {"type": "taken", "message_id": message_id}
    await ws_a.disconnect()
    await ws_b.disconnect()


async def test_a_connect_is_offered_its_open_work_once_and_state_offers_it_again_only_on_becoming_available(
    phone, alice_list, monkeypatch
):
    """The connect reads the open work in the same trip that marks the phone connected; the
    `state: available` every phone sends next does not read it again (docs/benchmarks.md,
    "10,000 phones"); a phone that becomes available is offered it at once."""
    from devices import consumers

    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    reads = []
    read_open_work = consumers._open_work

    async def counted(device):
        reads.append(device.pk)
        return await read_open_work(device)

    monkeypatch.setattr(consumers, "_open_work", counted)
    ws, _hello = await open_phone(phone[1])
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    await ws.send_json_to({"type": "state", "available": True, "battery": 80})
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}  # no second offer
    assert reads == []  # the connect's read was part of its one trip
    await ws.send_json_to({"type": "state", "available": False})
    await ws.send_json_to({"type": "state", "available": True})
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    assert reads == [phone[0].pk]
    assert (await reload(phone[0])).battery == 80
    await ws.disconnect()


async def test_an_available_phone_that_asks_for_more_is_offered_the_work_past_the_connects_batch(phone, alice_list):
    """The connect offers at most OFFER_BATCH messages; a phone that has handled them says
    `state: available` again ("more, please") and is offered the rest at once, not at the
    fleet's next tick."""
    from devices.consumers import OFFER_BATCH

    def queue() -> list[str]:
        return [factories.make_message(phone_list=alice_list).public_id for _ in range(OFFER_BATCH + 3)]

    queued = await database_sync_to_async(queue)()
    ws, _hello = await open_phone(phone[1])
    first = [(await ws.receive_json_from(timeout=5))["message_id"] for _ in range(OFFER_BATCH)]
    assert first == queued[:OFFER_BATCH]
    await ws.send_json_to({"type": "state", "available": True})  # right after hello: no second read
    for message_id in first:
        await ws.send_json_to({"type": "claim", "message_id": message_id})
    assigned = [await ws.receive_json_from(timeout=5) for _ in first]
    assert {(frame["type"], frame["message_id"]) for frame in assigned} == {("assign", mid) for mid in first}
    await ws.send_json_to({"type": "state", "available": True})  # more, please
    rest = [(await ws.receive_json_from(timeout=5))["message_id"] for _ in queued[OFFER_BATCH:]]
    assert rest == queued[OFFER_BATCH:]
    await ws.disconnect()


async def test_a_phone_unavailable_when_it_connects_is_offered_its_work_when_it_says_it_is_available(phone, alice_list):
    await database_sync_to_async(Device.objects.filter(pk=phone[0].pk).update)(is_available=False)
    message = await database_sync_to_async(factories.make_message)(phone_list=alice_list)
    ws, _hello = await open_phone(phone[1])
    assert await ws.receive_nothing()
    await ws.send_json_to({"type": "state", "available": True})
    assert (await ws.receive_json_from(timeout=5))["message_id"] == message.public_id
    await ws.disconnect()
