"""Reports in the order phones send them, and callbacks in the order things happened (R29).

A phone answers every `assign` with `sent` and `delivered` in the same instant, as a phone
does when it flushes reports it kept while offline. 200 messages go through the real
consumer (Channels' test communicator, the phone's frames) with callbacks on, then the
real worker loop (two of them on PostgreSQL, as `manage.py worker` twice) delivers the
callbacks to a local receiver that verifies each signature. Every message must get exactly
one `sent` and one `delivered` callback, the `sent` first, in both IPN formats.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection, connections

from config.asgi import application
from ipn import services as ipn_services
from messaging import worker
from messaging.models import Message
from tests import factories
from tests.ipn.conftest import receiver  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 200
FRAME_TIMEOUT = 20  # a deadline, not a wait: frames normally arrive in milliseconds
SENT = {"standard": "message.sent", "geniosms": "SENT"}
DELIVERED = {"standard": "message.delivered", "geniosms": "DELIVERY"}


async def phone_that_reports_at_once(token: str, total: int) -> None:
    """Claims every offer; on each `assign` sends `sent` and `delivered` back to back with
    the same time, without waiting for an answer; asks for more work when it holds none."""
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await ws.connect())[0]
    holding: set[str] = set()
    delivered = 0
    try:
        while delivered < total:
            frame = await ws.receive_json_from(FRAME_TIMEOUT)
            kind, message_id = frame["type"], frame.get("message_id")
            if kind == "offer":
                holding.add(message_id)
                await ws.send_json_to({"type": "claim", "message_id": message_id})
            elif kind == "assign":
                at = datetime.now(UTC).isoformat()  # one instant for both
                for status in ("sent", "delivered"):
                    await ws.send_json_to({"type": "report", "message_id": message_id, "status": status, "at": at})
            elif kind == "ack" and frame["status"] == "delivered":
                delivered += 1
                holding.discard(message_id)
                if not holding:
                    await ws.send_json_to({"type": "state", "available": True})  # more, please
            assert kind in ("hello", "offer", "assign", "ack"), frame
    finally:
        await ws.disconnect()


def run_workers(count: int, until) -> None:
    """`count` worker loops (messaging/worker.py) until `until()` is true or a deadline passes."""
    stop = threading.Event()

    def work() -> None:
        try:
            worker.run_forever(stop, idle_sleep=0.02)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        until()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def callback_of(body: bytes, ipn_format: str) -> tuple[str, str]:
    """(message id, event) of one callback, in either format."""
    if ipn_format == "geniosms":
        form = parse_qs(body.decode())
        return form["id_smsout"][0], form["ipn_type"][0]
    event = json.loads(body)
    return event["data"]["message_id"], event["type"]


@pytest.mark.parametrize("ipn_format", ["standard", "geniosms"])
def test_every_message_gets_one_sent_then_one_delivered_callback(receiver, settings, ipn_format):  # noqa: F811
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    account = factories.make_account(credit=MESSAGES)
    phone_list = factories.make_list(account=account, pin="025719")
    endpoint = ipn_services.update_endpoint(account=account, url=receiver.url, enabled=True, format=ipn_format)
    receiver.secret = endpoint.secret
    _device, token = factories.make_enrolled_device(phone_list=phone_list)
    messages = {factories.make_message(phone_list=phone_list).public_id for _ in range(MESSAGES)}

    async_to_sync(phone_that_reports_at_once)(token, MESSAGES)
    workers = 2 if connection.vendor == "postgresql" else 1  # SQLite: one writer, as embedded
    run_workers(workers, until=lambda: receiver.wait_for(2 * MESSAGES, timeout=120))

    assert all(request.verified for request in receiver.requests)
    arrived: dict[str, list[str]] = defaultdict(list)
    for request in receiver.requests:
        message_id, event = callback_of(request.body, ipn_format)
        arrived[message_id].append(event)
    assert set(arrived) == messages
    wrong = {mid: events for mid, events in arrived.items() if events != [SENT[ipn_format], DELIVERED[ipn_format]]}
    assert wrong == {}
    timelines: dict[Any, list[str]] = defaultdict(list)
    rows = Message.objects.values_list("pk", "events__status").order_by("pk", "events__at", "events__id")
    for message_pk, status in rows:
        timelines[message_pk].append(status)
    assert {tuple(timeline) for timeline in timelines.values()} == {("assigned", "sent", "delivered")}
