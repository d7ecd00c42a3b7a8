"""GenioSms clients change only the host: their sample flows, run end to end.

Real parts only: the send calls go through the URL routes with GenioSms's User-Agent,
two phones speak the device WebSocket protocol through the ASGI application, IPN
callbacks reach a real local HTTP server that reads them as a form (as GenioSms's
`ipn.php` reads `$_POST`), and the delivery worker's step function sends them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import standardwebhooks
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from devices.models import Device, PhoneList, Subscriber
from ipn import delivery
from messaging.models import Message
from messaging.services import subscriptions
from tests import factories
from tests.live import daphne_server, free_port, live_server_url, stop_process, wait_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)

GENIOSMS_UA = "GenioSmsBot/1.0 (+http://api.geniosms.net)"
PIN = "025719"  # GenioSms's own example: a leading zero that must survive
ANNA, BRUNO, CARLA = "+393331110001", "+393331110002", "+393331110003"
FRAME_TIMEOUT = 15  # a deadline, not a wait: frames normally arrive in milliseconds


# --- A GenioSms-style IPN receiver --------------------------------------------------------


@dataclass
class FormReceiver:
    """Decodes each POST as a form, like PHP's $_POST, and checks the signature headers."""

    secret: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                standardwebhooks.Webhook(receiver.secret).verify(body, dict(self.headers), json_parse=False)
                fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
                with receiver.changed:
                    receiver.forms.append(fields)
                    receiver.content_types.append(self.headers.get("Content-Type", ""))
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ipn.php"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    server = FormReceiver()
    server.start()
    yield server
    server.stop()


# --- The cast: an account, a list with PIN 025719, two phones, an API key -------------------


@dataclass
class World:
    phone_list: PhoneList
    api_key: str
    devices: list[Device]
    tokens: list[str]
    client: Client = field(default_factory=Client)


@pytest.fixture
def world() -> World:
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account, name="Shop", pin=PIN)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    devices, tokens = [], []
    for name, number in (("Pixel", "+393330000777"), ("Galaxy", "+393330000888")):
        device, token = factories.make_enrolled_device(phone_list=phone_list, name=name)
        device.phone_number = number
        device.save(update_fields=["phone_number"])
        devices.append(device)
        tokens.append(token)
    return World(phone_list, secret, devices, tokens)


def sync(func: Callable[..., Any]) -> Callable[..., Any]:
    return database_sync_to_async(func)


# --- A phone speaking the device protocol ---------------------------------------------------------


class Phone:
    def __init__(self, token: str) -> None:
        self.ws = WebsocketCommunicator(
            application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        self.stash: list[dict[str, Any]] = []

    async def connect(self) -> Phone:
        connected, _ = await self.ws.connect()
        assert connected
        assert (await self.ws.receive_json_from(FRAME_TIMEOUT))["type"] == "hello"
        return self

    async def next(self, *types: str, message_id: str | None = None) -> dict[str, Any]:
        """The next frame of one of these types (for this message), keeping the others."""
        for i, frame in enumerate(self.stash):
            if frame["type"] in types and message_id in (None, frame.get("message_id")):
                return self.stash.pop(i)
        while True:
            frame = await self.ws.receive_json_from(FRAME_TIMEOUT)
            if frame["type"] in types and message_id in (None, frame.get("message_id")):
                return frame
            self.stash.append(frame)

    async def claim(self, message_id: str) -> dict[str, Any]:
        await self.ws.send_json_to({"type": "claim", "message_id": message_id})
        return await self.next("assign", "taken", message_id=message_id)

    async def report(self, message_id: str, status: str) -> None:
        await self.ws.send_json_to({"type": "report", "message_id": message_id, "status": status})
        ack = await self.next("ack", "error", message_id=message_id)
        assert ack == {"type": "ack", "message_id": message_id, "status": status}

    async def incoming(self, sender: str, text: str, at: str) -> str:
        await self.ws.send_json_to({"type": "incoming", "from": sender, "msg": text, "at": at})
        ack = await self.next("ack")
        assert ack["status"] == "received"
        return ack["message_id"]


@pytest.fixture
async def phones(world):
    connected = [await Phone(token).connect() for token in world.tokens]
    yield connected
    for phone in connected:
        await phone.ws.disconnect()


async def race_to_send(phones: list[Phone], message_id: str) -> int:
    """Every phone got the offer and claims it; the winner reports sent, then delivered.
    Returns the index of the phone that sent it."""
    for phone in phones:
        assert (await phone.next("offer", message_id=message_id))["message_id"] == message_id
    answers = await asyncio.gather(*(phone.claim(message_id) for phone in phones))
    winners = [i for i, answer in enumerate(answers) if answer["type"] == "assign"]
    assert len(winners) == 1, answers  # exactly one phone sends it
    winner = phones[winners[0]]
    await winner.report(message_id, "sent")
    await winner.report(message_id, "delivered")
    return winners[0]


def deliver_due_callbacks() -> None:
    """The worker's IPN step, run until nothing is due."""
    for _ in range(100):
        if not delivery.deliver_one_due_event():
            return
    raise AssertionError("the IPN outbox never emptied")


def assert_envelope(response, status_code: str = "2") -> dict[str, Any]:
    body = response.json()
    assert response.status_code == 200, body
    assert body["response"] == "200" and body["status_code"] == status_code  # strings, as GenioApi sent them
    return body


# --- Send and IPN -------------------------------------------------------------------------------------


async def test_the_geniosms_send_samples_queue_messages_and_the_ipn_form_reaches_their_receiver(
    world, phones, receiver
):
    set_ipn = await sync(world.client.put)(
        "/api/v1/ipn",
        f"url={receiver.url}&enabled=true&format=geniosms&events=message.sent,message.delivered",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {world.api_key}",
    )
    assert set_ipn.status_code == 200, set_ipn.json()
    receiver.secret = set_ipn.json()["secret"]

    # sendSms.php / Main.java (GET) and sendSms.sh / GenioApi.cs (form POST)
    sent_get = assert_envelope(
        await sync(world.client.get)(
            "/tools/api.pl",
            {"api": world.api_key, "to": "3331234567", "msg": "Il tuo codice è 123456", "custom": "order-42"},
            HTTP_USER_AGENT=GENIOSMS_UA,
        )
    )
    first_sender = await race_to_send(phones, sent_get["message_id"])
    sent_post = assert_envelope(
        await sync(world.client.post)(
            "/tools/api.pl",
            {"api": world.api_key, "to": "+39 333 7654321", "msg": "Ciao 👋", "custom": "order-43"},
            HTTP_USER_AGENT=GENIOSMS_UA,
        )
    )
    second_sender = await race_to_send(phones, sent_post["message_id"])
    for body in (sent_get, sent_post):
        # one record per phone of the list that got the offer
        assert sorted(r["device_name"] for r in body["records"]) == ["Galaxy", "Pixel"]

    await sync(deliver_due_callbacks)()
    assert set(receiver.content_types) == {"application/x-www-form-urlencoded"}
    numbers = [d.phone_number for d in world.devices]
    expected = []
    for answer, sender, to, text, custom in (
        (sent_get, first_sender, "+393331234567", "Il tuo codice è 123456", "order-42"),
        (sent_post, second_sender, "+393337654321", "Ciao 👋", "order-43"),
    ):
        for ipn_type in ("SENT", "DELIVERY"):
            expected.append((answer["message_id"], ipn_type, custom, PIN, numbers[sender], to, text, "RESULT_OK", "-1"))
    got = [
        (
            f["id_smsout"],
            f["ipn_type"],
            f["custom"],
            f["pin"],
            f["from"],
            f["to"],
            f["msg"],
            f["status"],
            f["status_code"],
        )
        for f in receiver.forms
    ]
    assert sorted(got) == sorted(expected)
    for form in receiver.forms:
        assert set(form) == {
            "status", "status_code", "id_smsout", "request_code", "pin", "custom", "ipn_type", "from", "to", "msg"
        }  # fmt: skip
        assert len(form["request_code"]) == 8 and form["request_code"].isdigit()
    statuses = await sync(lambda: sorted(Message.objects.values_list("status", flat=True)))()
    assert statuses == ["delivered", "delivered"]


# --- Subscribers and broadcast --------------------------------------------------------------------------


async def test_ok_and_del_from_two_phones_change_the_subscription_once_each(world, phones):
    await sync(subscriptions.update_reply_settings)(
        phone_list=world.phone_list, confirm_subscriptions=True, subscribe_reply="Benvenuto!", unsubscribe_reply="Ciao!"
    )
    at = "2026-11-25T10:00:00Z"
    first = [await phone.incoming("3331110001", " ok ", at) for phone in phones]
    assert first[0] == first[1]  # both phones got the one stored SMS back
    rows = await sync(lambda: list(Subscriber.objects.values_list("number", "source", "unsubscribed_at")))()
    assert rows == [(ANNA, "sms", None)]
    second = [await phone.incoming("+393331110001", "DEL", "2026-11-25T10:05:00Z") for phone in phones]
    assert second[0] == second[1]
    left = await sync(lambda: Subscriber.objects.get(number=ANNA).unsubscribed_at)()
    assert left is not None
    assert await sync(Subscriber.objects.count)() == 1
    # One change each, so one confirmation each, offered to the list's phones and sent once.
    replies = await sync(lambda: list(Message.objects.order_by("id").values_list("public_id", "to", "text")))()
    assert [(to, text) for _, to, text in replies] == [(ANNA, "Benvenuto!"), (ANNA, "Ciao!")]
    for message_id, _, _ in replies:
        await race_to_send(phones, message_id)


async def test_a_broadcast_reaches_every_subscriber_once(world, phones):
    at = "2026-11-25T11:00:00Z"
    for phone in phones:  # Anna joins by SMS; both phones report her OK
        await phone.incoming(ANNA, "OK", at)
    added = await sync(world.client.post)(
        f"/api/v1/lists/{world.phone_list.token}/subscribers",
        {"numbers": f"{BRUNO},{CARLA},{ANNA}"},
        HTTP_AUTHORIZATION=f"Bearer {world.api_key}",
    )
    assert added.json()["added"] == [BRUNO, CARLA] and added.json()["already"] == [ANNA]
    body = assert_envelope(
        await sync(world.client.post)(
            f"/api/v1/lists/{world.phone_list.token}/broadcast",
            {"msg": "Saldi da domani!"},
            HTTP_AUTHORIZATION=f"Bearer {world.api_key}",
        )
    )
    assert body["recipients"] == 3
    batch = await sync(lambda: dict(Message.objects.filter(batch_id=body["batch_id"]).values_list("public_id", "to")))()
    for message_id in batch:
        await race_to_send(phones, message_id)
    delivered = await sync(
        lambda: sorted(Message.objects.filter(status="delivered", text="Saldi da domani!").values_list("to", flat=True))
    )()
    assert delivered == [ANNA, BRUNO, CARLA]


# --- The migration guide's example, against a real server ----------------------------------------------


def doc_example(name: str) -> str:
    text = (settings.BASE_DIR / "docs" / "migrating-from-geniosms.md").read_text()
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)\n```", text, re.S)
    assert found, name
    return found.group(1) + "\n"


@pytest.mark.slow
def test_the_guides_sendsms_script_queues_a_message_on_a_real_server(world, live_server_url, tmp_path):  # noqa: F811
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = tmp_path / "sendSms.sh"
    script.write_text(doc_example("geniosms-send.sh").replace("https://phonefleet.example", live_server_url))
    result = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, timeout=60, env={**os.environ, "API_KEY": world.api_key}
    )
    body = json.loads(result.stdout)
    assert (body["response"], body["status_code"]) == ("200", "2"), body
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.to, message.text, message.ref, message.phone_list_id) == (
        "+393331234567",
        "Hello from Phonefleet",
        "order-42",
        world.phone_list.pk,
    )


@pytest.mark.slow
def test_the_guides_corrected_sendsms_php_proxy_forwards_a_browser_call(world, live_server_url, tmp_path):  # noqa: F811
    """GenioSms's sendSms.php fails on PHP 8 as published; the guide's corrected one is run
    by PHP's own server and called as a browser calls it, with an unencoded `+`."""
    if shutil.which("php") is None:
        pytest.skip("php is not installed")
    proxy = tmp_path / "sendSms.php"
    proxy.write_text(doc_example("geniosms-send.php").replace("https://phonefleet.example", live_server_url))
    port = free_port()
    env = {**os.environ, "PHONEFLEET_API_KEY": world.api_key}
    php = subprocess.Popen(
        ["php", "-S", f"127.0.0.1:{port}", str(proxy)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/sendSms.php?to=+41791234567&msg=Ciao%20%C3%A8%20tutto%20ok&custom=order-9"
        body = wait_for(lambda: _get_json(url), timeout=20, what="the PHP proxy to answer")
    finally:
        stop_process(php)
    assert (body["response"], body["status_code"]) == ("200", "2"), body
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.to, message.text, message.ref) == ("+41791234567", "Ciao è tutto ok", "order-9")


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        return json.loads(httpx.get(url, timeout=10).text)
    except (httpx.TransportError, ValueError):
        return None  # not listening yet
