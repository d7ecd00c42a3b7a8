"""Sync or async phone consumer? A small in-process measurement.

    .venv/bin/python bench/consumer.py [--phones 200] [--pings 20] [--messages 1000]

Runs both consumer styles through Channels' ASGI test communicator on a throw-away test
database (SQLite by default; set DATABASE_URL for PostgreSQL):

- `async`: the real `devices.consumers.DeviceConsumer` (frames handled on the event loop,
  the ORM reached through `devices.consumer_base.orm`: in Channels' one sync thread, or
  on a pool of 4 threads through asgiref's `executor` option);
- `sync`: the same protocol as a `JsonWebsocketConsumer` (every frame handled in Channels'
  sync thread).

It measures (1) ping → pong round trips with all phones talking at once, the bulk of a
fleet's traffic, and (2) claims answered per second when every phone races for the same
messages in the same order, as offers to a list make them (the database decides; both
styles call `dispatch.claim_message`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any

from harness import ROOT

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.gettempdir()}/phonefleet-bench-consumer.sqlite3")
os.environ.setdefault("EMBEDDED_WORKER", "false")
os.environ.setdefault("SECRET_KEY", "bench-only")

import django

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import JsonWebsocketConsumer  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.db import connection, connections  # noqa: E402

from devices import consumer_base  # noqa: E402
from devices.consumers import DeviceConsumer  # noqa: E402
from devices.models import Device  # noqa: E402
from messaging.services import dispatch  # noqa: E402
from messaging.services.offers import offer_frame  # noqa: E402


class SyncDeviceConsumer(JsonWebsocketConsumer):
    """The same frames as DeviceConsumer (the parts measured here), written sync."""

    def connect(self) -> None:
        self.device = self.scope["device"]
        self.accept()
        self.send_json({"type": "hello", "device_id": self.device.public_id})

    def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content.get("type") == "ping":
            self.send_json({"type": "pong"})
        elif content.get("type") == "claim":
            message = dispatch.claim_message(device=self.device, message_id=content["message_id"])
            if message is None:
                self.send_json({"type": "taken", "message_id": content["message_id"]})
            else:
                self.send_json({**offer_frame(message), "type": "assign"})


def with_device(app: Any, device: Device) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await app({**scope, "device": device}, receive, send)

    return wrapped


def setup_data(phones: int) -> list[Device]:
    from tests import factories

    account = factories.make_account(credit=10**9)
    phone_list = factories.make_list(account=account, name="bench")
    devices = [factories.make_enrolled_device(phone_list=phone_list, name=f"p{n}")[0] for n in range(phones)]
    return list(Device.objects.select_related("phone_list").filter(pk__in=[d.pk for d in devices]))


def make_messages(device: Device, count: int) -> list[str]:
    from tests import factories

    return [factories.make_message(phone_list=device.phone_list, cost=0).public_id for _ in range(count)]


async def connect_all(style: str, devices: list[Device]) -> list[WebsocketCommunicator]:
    consumer = DeviceConsumer if style == "async" else SyncDeviceConsumer
    sockets = []
    for device in devices:
        ws = WebsocketCommunicator(with_device(consumer.as_asgi(), device), "/ws/device/")
        connected, _ = await ws.connect()
        assert connected
        await ws.receive_json_from()  # hello
        while not await ws.receive_nothing(timeout=0.01):
            pass  # offers of work that was already open
        sockets.append(ws)
    return sockets


async def ping_round_trips(sockets: list[WebsocketCommunicator], pings: int) -> float:
    async def one(ws: WebsocketCommunicator) -> None:
        for _ in range(pings):
            await ws.send_json_to({"type": "ping"})
            assert (await ws.receive_json_from(timeout=30))["type"] == "pong"

    started = time.perf_counter()
    await asyncio.gather(*(one(ws) for ws in sockets))
    return len(sockets) * pings / (time.perf_counter() - started)


async def claim_race(sockets: list[WebsocketCommunicator], message_ids: list[str]) -> tuple[float, int]:
    wins = 0

    async def one(ws: WebsocketCommunicator, order: list[str]) -> None:
        nonlocal wins
        for message_id in order:
            await ws.send_json_to({"type": "claim", "message_id": message_id})
            answer = await ws.receive_json_from(timeout=60)
            while answer["type"] == "offer":  # the periodic tick's offers of open work
                answer = await ws.receive_json_from(timeout=60)
            wins += answer["type"] == "assign"

    # Every phone is offered every message at once, so they all claim in the same order.
    orders = [list(message_ids) for _ in sockets]
    started = time.perf_counter()
    await asyncio.gather(*(one(ws, order) for ws, order in zip(sockets, orders, strict=True)))
    return len(sockets) * len(message_ids) / (time.perf_counter() - started), wins


async def close_worker_connections() -> None:
    """Closes the database connections of Channels' sync thread and of the consumer's ORM
    threads (so the test database can be dropped at the end)."""
    await database_sync_to_async(lambda: connections.close_all())()
    consumer_base.close_orm_connections()


async def measure(style: str, devices: list[Device], args: argparse.Namespace) -> dict[str, float]:
    sockets = await connect_all(style, devices)
    pings = await ping_round_trips(sockets, args.pings)
    claimers = sockets[: args.claimers]
    message_ids = await database_sync_to_async(make_messages)(devices[0], args.messages)
    claims, wins = await claim_race(claimers, message_ids)
    for ws in sockets:
        await ws.disconnect()
    await close_worker_connections()
    assert wins == len(message_ids), f"{style}: {wins} wins for {len(message_ids)} messages"
    return {"pings_per_s": pings, "claims_per_s": claims}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phones", type=int, default=200)
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--claimers", type=int, default=10)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        devices = setup_data(args.phones)
        print(
            f"{connection.vendor}, {args.phones} phones, {args.pings} pings each, "
            f"{args.claimers} phones racing for {args.messages} messages"
        )
        variants = (
            ("sync", False, "sync"),
            ("async", True, "async (ORM in one thread)"),
            ("async", False, "async (ORM on a pool of threads)"),
        )
        for style, one_thread, label in variants:
            consumer_base.ORM_THREAD_SENSITIVE = one_thread
            result = asyncio.run(measure(style, devices, args))
            print(
                f"{label:>36}: {result['pings_per_s']:8.0f} ping round trips/s   "
                f"{result['claims_per_s']:7.0f} claims answered/s"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
