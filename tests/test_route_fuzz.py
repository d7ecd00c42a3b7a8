"""Every route, fuzzed: no answer is a 5xx, and every public API answer is in the envelope
(issue 17, item 2; SPEC.md "Send API").

- Every operation of the OpenAPI schema (`/api/schema/`, read at run time, so routes added to
  it are fuzzed without touching this file): requests schemathesis draws from the schema (and
  against it), then with hostile values in their path, query, headers and body, Alice's real
  ids sometimes put back, or the body replaced by JSON nested past every limit.
- The routes outside the schema: every panel page (signed in, GET and POST), the SMSGate
  app's `/api/mobile/v1` routes and its signed webhooks, and the phones' WebSocket frames.

Requests go through Django's test client, in process (WSGI, the same handler gunicorn runs;
frames through the ASGI app). Bounded and derandomised, so every run sends the same few
hundred requests in seconds; `FUZZ_EXAMPLES=200 FUZZ_SEED=random pytest
tests/test_route_fuzz.py` looks further. Callbacks never leave the process: the IPN
client and its resolver are stubbed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.core.result import Err

from accounts.models import Account, ApiKey
from config.asgi import application
from devices import services as device_services
from devices.models import Device
from devices.smsgate import services as smsgate
from devices.smsgate import wire
from ipn.lib import safehttp
from messaging.models import Message
from messaging.services import subscriptions
from tests import factories
from tests.panel.conftest import signed_in

pytestmark = [pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SETTINGS = settings(
    deadline=None,
    derandomize=os.environ.get("FUZZ_SEED", "") != "random",
    database=None,
    suppress_health_check=list(HealthCheck),
    # No shrinking: a failure is reported as found (each request is small enough to read),
    # and a broken build does not spend minutes minimising it.
    phases=[Phase.explicit, Phase.generate],
)
# The public API's answers carry the envelope (SPEC.md); /tools/api.pl's always with HTTP 200.
ENVELOPE_PREFIXES = ("/api/v1/", "/tools/api.pl")
SMSGATE_UA = "me.capcom.smsgateway/1.68.0"


def fuzz_each(
    items: list[Any], strategy: Callable[[Any], Any], check: Callable[[Any, Any], None], examples: int = EXAMPLES
) -> None:
    """Runs `check(item, example)` on `examples` examples of `strategy(item)` for every item,
    and fails with the first failing example of each."""
    failures: list[str] = []
    for item in items:

        @settings(SETTINGS, max_examples=examples)
        @given(example=strategy(item))
        def run(example: Any) -> None:
            check(item, example)

        try:
            run()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


# --- What the routes run against --------------------------------------------------------------


@pytest.fixture
def world(alice, alice_list, alice_key, monkeypatch, settings) -> dict[str, Any]:
    """Alice with one of everything the routes name by id, a key no fuzz run exhausts, and
    callbacks that never leave the process."""
    settings.IPN_ALLOW_PRIVATE_NETWORKS = False
    original_check = safehttp.check_url

    def check_url(url: str, *, allow_private: bool, resolver: Any = None) -> None:
        original_check(url, allow_private=allow_private, resolver=lambda host, port: ["93.184.216.34"])

    def post(*args: Any, **kwargs: Any) -> Any:
        raise safehttp.ConnectionFailed("fuzz: callbacks do not leave the test")

    monkeypatch.setattr(safehttp, "check_url", check_url)
    monkeypatch.setattr(safehttp, "post", post)
    key, secret = alice_key
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=1_000_000)
    Account.objects.filter(pk=alice.pk).update(balance=1_000_000)
    device, device_token = factories.make_enrolled_device(phone_list=alice_list)
    message = factories.make_message(phone_list=alice_list)
    assigned = factories.make_message(phone_list=alice_list, status=Message.Status.ASSIGNED, device=device)
    subscriber = "+393330000001"
    subscriptions.subscribe(phone_list=alice_list, number=subscriber, source="api")
    return {
        "secret": secret,
        "ids": {
            "token": alice_list.token,
            "message_id": message.public_id,
            "number": subscriber,
            "device_id": device.public_id,
            "public_id": device.public_id,
            "webhook_id": "evt_unknown",
            "verification_id": "ver_unknown",
            "pk": str(key.pk),
        },
        "list": alice_list,
        "account": alice,
        "device": device,
        "device_token": device_token,
        "assigned": assigned,
    }


def json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def is_envelope(status: int, body: Any, path: str) -> bool:
    if not isinstance(body, dict) or body.get("status_code") not in {str(code) for code in range(1, 10)}:
        return False
    if path.startswith("/tools/api.pl"):  # the outcome is in the body, the status always 200
        return status == 200 and str(body.get("response", "")).isdigit()
    return body.get("response") == str(status)


def check_answer(where: str, path: str, response: Any) -> None:
    """No 5xx; under the public API, every error and every JSON answer in the envelope."""
    assert response.status_code < 500, f"{where}: {response.status_code} {response.content[:300]!r}"
    content_type = response.get("Content-Type", "")
    if path.startswith(ENVELOPE_PREFIXES) and (
        response.status_code >= 400 or content_type.startswith("application/json")
    ):
        body = json_or_none(response.content)
        assert is_envelope(response.status_code, body, path), (
            f"{where}: {response.status_code} {response.content[:300]!r}"
        )


# --- Hostile values, the ones that broke the server before and the ones hypothesis finds ---------

CLASSICS = [
    "\x00",
    "msg_\x00",
    "%00",
    "\ud800",
    "a\udfffb",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "2026-02-30T10:00:00Z",
    "9" * 5000,
    "-1",
    "4294967297",
    "9223372036854775808",
    "1e400",
    "NaN",
    "²",
    "١٢٣",
    "",
    " ",
    "+",
    " 393331234567",
    "null",
    "true",
    "[]",
    "{}",
    "a" * 300,
    "../../etc/passwd",
    "<b>",
    "'\"",
]
HOSTILE_TEXT = st.one_of(st.sampled_from(CLASSICS), st.text(max_size=12), st.text(st.characters(), max_size=6))
HOSTILE_SCALAR = st.one_of(
    HOSTILE_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 70000, 0, -1]),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
HOSTILE_VALUE = st.recursive(
    HOSTILE_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)),
    max_leaves=6,
)
# JSON no client should send: nested past the parsers' limit, and past Python's recursion limit.
DEEP_BODIES = st.sampled_from(
    ["[" * n + "]" * n for n in (33, 1500, 3000)] + ['{"a":' * n + "1" + "}" * n for n in (33, 3000)]
)


def mutated(draw: Callable[[Any], Any], values: dict[str, Any], names: list[str] | None = None) -> dict[str, Any]:
    """`values` with some of its entries (and maybe one of `names`) replaced by hostile ones."""
    result = dict(values)
    for name in list(result) + draw(st.lists(st.sampled_from(names or ["x"]), max_size=1)):
        if draw(st.integers(0, 3)) == 0:
            result[name] = draw(HOSTILE_VALUE)
    return result


def as_header(value: Any) -> str:
    """A header as a server hands it over: bytes read as latin-1."""
    return str(value).encode("utf-8", "surrogatepass").decode("latin-1").replace("\r", "").replace("\n", "")


def as_query(values: dict[str, Any]) -> str:
    pairs = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            text = json.dumps(item) if isinstance(item, dict) else str(item)
            pairs.append(f"{quote(str(name), safe='')}={quote(text.encode('utf-8', 'surrogatepass'), safe='')}")
    return "&".join(pairs)


def send(
    client: Client,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    body: Any = NOT_SET,
    media_type: str | None = None,
    headers: dict[str, Any] | None = None,
) -> Any:
    """One request through Django's test client, its body encoded as `media_type` says
    ("raw": the text itself, as JSON)."""
    extra = {"HTTP_" + name.upper().replace("-", "_"): as_header(value) for name, value in (headers or {}).items()}
    url = path + ("?" + as_query(query) if query else "")
    call = getattr(client, method.lower())
    if body is NOT_SET or method.upper() in ("GET", "HEAD", "OPTIONS"):
        return call(url, **extra)
    if media_type == "raw" or isinstance(body, bytes):
        return call(url, body, content_type="application/json" if media_type == "raw" else media_type, **extra)
    if media_type and "multipart" in media_type and isinstance(body, dict):
        fields = {str(k): as_field(v) for k, v in body.items()}
        return call(url, fields, **extra)
    if media_type and "form" in media_type and isinstance(body, dict):
        return call(url, as_query(body), content_type="application/x-www-form-urlencoded", **extra)
    return call(url, json.dumps(body, default=repr), content_type="application/json", **extra)


def as_field(value: Any) -> bytes:
    """A multipart field's bytes (a file's as generated, anything else as text or JSON)."""
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "surrogatepass")


def in_path(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# --- The OpenAPI schema --------------------------------------------------------------------------


def schema_operations() -> list[Any]:
    """Every operation of the schema the server serves; a part schemathesis cannot read fails."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


@st.composite
def api_requests(draw: Callable[[Any], Any], operation: Any, ids: dict[str, str]) -> dict[str, Any]:
    mode = draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    case = draw(operation.as_strategy(generation_mode=mode))
    params = {
        name: draw(st.sampled_from([value, ids.get(name, value)])) for name, value in case.path_parameters.items()
    }
    params = mutated(draw, params)
    query = mutated(draw, dict(case.query or {}), [param.name for param in operation.query])
    body, media_type = case.body, case.media_type
    if isinstance(body, dict):
        body = mutated(draw, body, ["to", "msg", "list", "recipients", "number", "name", "url", "events", "send_at"])
    if case.method.upper() in ("POST", "PUT", "PATCH") and draw(st.integers(0, 7)) == 0:
        body, media_type = draw(DEEP_BODIES), "raw"
    path = case.path
    for name, value in params.items():
        path = path.replace("{" + name + "}", in_path(value))
    headers = {"Idempotency-Key": draw(HOSTILE_TEXT)} if draw(st.integers(0, 4)) == 0 else {}
    return {
        "method": case.method,
        "path": path,
        "query": query,
        "body": body,
        "media_type": media_type,
        "headers": headers,
    }


def test_every_schema_operation_answers_below_500_in_the_envelope(world):
    client = Client(raise_request_exception=False)
    auth = {"Authorization": f"Bearer {world['secret']}"}
    operations = schema_operations()
    assert len(operations) >= 25

    def check(operation: Any, request: dict[str, Any]) -> None:
        response = send(client, **{**request, "headers": {**auth, **request["headers"]}})
        where = f"{request['method']} {request['path']} {request['query']} {str(request['body'])[:200]}"
        check_answer(where, request["path"], response)

    # About 300 requests however many operations the schema grows to (at least 3 each).
    examples = max(3, min(EXAMPLES, 300 // len(operations)))
    fuzz_each(operations, lambda operation: api_requests(operation, world["ids"]), check, examples)


# --- The panel -------------------------------------------------------------------------------------

NOT_PANEL = ("admin/", "api/", "tools/", "3rdparty/", "logout/")
FORM_FIELDS = [
    "name",
    "pin",
    "to",
    "msg",
    "ref",
    "target",
    "list",
    "number",
    "numbers",
    "url",
    "enabled",
    "events",
    "format",
    "q",
    "status",
    "page",
    "key",
    "device_id",
    "ids",
    "next",
    "email",
    "password",
    "allowed_ips",
    "cors_origins",
    "ip_mode",
    "default_country",
    "rate_limit_per_minute",
    "rate_limit_per_hour",
    "rate_limit_per_day",
    "minute",
    "hour",
    "day",
    "lease_seconds",
    "default_ttl_seconds",
    "verify_template",
    "date_from",
    "date_to",
    "countries",
    "per_hour",
    "number_interval_seconds",
    "number_per_hour",
    "subscribe_reply",
    "unsubscribe_reply",
    "confirm_subscriptions",
]
CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def panel_routes() -> list[str]:
    """Every page's route (`lists/<str:token>/`), walked from the URLconf."""
    routes: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and not route.startswith(NOT_PANEL):
                routes.append(route)

    walk(get_resolver().url_patterns, "")
    return routes


@st.composite
def panel_requests(draw: Callable[[Any], Any], route: str, ids: dict[str, str]) -> dict[str, Any]:
    def value(match: re.Match[str]) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        if converter == "int":
            return str(draw(st.one_of(st.just(ids["pk"]), st.integers(0, 2**70))))
        known = [ids[name]] if name in ids else []
        return in_path(draw(st.one_of(st.sampled_from([*known, "x"]), HOSTILE_TEXT.filter(bool))))

    path = "/" + CONVERTER.sub(value, route)
    method = draw(st.sampled_from(["GET", "POST"]))
    fields = draw(st.dictionaries(st.sampled_from(FORM_FIELDS), HOSTILE_VALUE, max_size=4))
    if method == "GET":
        return {"method": method, "path": path, "query": fields}
    return {"method": method, "path": path, "body": fields, "media_type": "application/x-www-form-urlencoded"}


def test_every_panel_page_answers_below_500(world):
    client = signed_in(world["account"])
    client.raise_request_exception = False
    routes = panel_routes()
    assert len(routes) >= 40

    def check(route: str, request: dict[str, Any]) -> None:
        response = send(client, **request)
        if route == "health/ready" and response.status_code == 503:
            return  # no worker runs here: "not ready" is the right answer
        assert response.status_code < 500, f"{request}: {response.status_code} {response.content[:300]!r}"

    # Many routes, most of them a page that reads one id: fewer examples each.
    fuzz_each(routes, lambda route: panel_requests(route, world["ids"]), check, examples=max(3, EXAMPLES // 3))


# --- The SMSGate app's routes ------------------------------------------------------------------------

MOBILE_ROUTES = [
    ("GET", "device"),
    ("POST", "device"),
    ("PATCH", "device"),
    ("GET", "message"),
    ("PATCH", "message"),
    ("GET", "messages"),
    ("PATCH", "messages"),
    ("GET", "settings"),
    ("GET", "webhooks"),
    ("GET", "user/code"),
    ("PATCH", "user/password"),
]
APP_FIELDS = [
    "id",
    "state",
    "states",
    "recipients",
    "simCards",
    "name",
    "currentPassword",
    "newPassword",
    "phoneNumber",
    "error",
    "simNumber",
    "Sent",
    "Delivered",
    "Failed",
]
APP_BODY = st.recursive(
    HOSTILE_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(APP_FIELDS), inner, max_size=4)
    ),
    max_leaves=10,
)
WEBHOOK_EVENTS = ["sms:received", "sms:sent", "sms:delivered", "sms:failed", "system:ping", "sms:data-received"]
WEBHOOK_FIELDS = [
    "messageId",
    "sender",
    "phoneNumber",
    "message",
    "simNumber",
    "reason",
    "health",
    "checks",
    "battery:level",
    "observedValue",
    "receivedAt",
    "sentAt",
    "deliveredAt",
    "failedAt",
]


@st.composite
def mobile_requests(draw: Callable[[Any], Any], route: tuple[str, str], world: dict[str, Any]) -> dict[str, Any]:
    method, path = route
    credential = draw(st.sampled_from(["device", "private", "basic", "code", "hostile"]))
    authorization = {
        "device": f"Bearer {world['smsgate_token']}",
        "private": f"Bearer {world['private_token']}",
        "basic": "Basic " + base64.b64encode(str(draw(HOSTILE_TEXT)).encode("utf-8", "surrogatepass")).decode(),
        "code": f"Code {draw(HOSTILE_TEXT)}",
        "hostile": draw(HOSTILE_TEXT),
    }[credential]
    user_agent = draw(st.sampled_from([SMSGATE_UA, "me.capcom.smsgateway/" + "9" * 5000, "x"]))
    body = draw(st.one_of(APP_BODY, DEEP_BODIES)) if method != "GET" else NOT_SET
    return {
        "method": method,
        "path": f"/api/mobile/v1/{path}",
        "query": draw(st.dictionaries(st.sampled_from(["order", "deviceId", "x"]), HOSTILE_TEXT, max_size=2)),
        "body": body,
        "media_type": "raw" if isinstance(body, str) else "application/json",
        "headers": {"Authorization": authorization, "User-Agent": user_agent},
    }


@st.composite
def webhooks(draw: Callable[[Any], Any], device: Device, message_id: str) -> dict[str, Any]:
    payload = draw(st.dictionaries(st.sampled_from(WEBHOOK_FIELDS), HOSTILE_VALUE, max_size=5))
    if draw(st.booleans()):
        payload["messageId"] = message_id
    event = draw(st.one_of(st.sampled_from(WEBHOOK_EVENTS), HOSTILE_TEXT))
    document: Any = {"id": uuid.uuid4().hex, "event": event, "payload": payload}
    body = draw(st.one_of(st.just(json.dumps(document)), DEEP_BODIES)).encode("utf-8", "surrogatepass")
    stamp = as_header(draw(st.one_of(st.just(str(int(time.time()))), HOSTILE_TEXT)))
    signature = wire.webhook_signature(device.webhook_signing_key, body, stamp)
    public_id = draw(st.sampled_from([device.public_id, device.public_id + "\x00"]))
    return {
        "method": "POST",
        "path": f"/api/mobile/v1/hooks/{in_path(public_id)}",
        "body": body,
        "media_type": "raw",
        "headers": {"X-Timestamp": stamp, "X-Signature": signature},
    }


@pytest.fixture
def smsgate_world(world) -> dict[str, Any]:
    _row, private_token = smsgate.create_enrolment_token(phone_list=world["list"])
    device, token = device_services.create_device(phone_list=world["list"], name="Pixel", kind=Device.Kind.SMSGATE)
    assigned = factories.make_message(phone_list=world["list"], status=Message.Status.ASSIGNED, device=device)
    return {**world, "private_token": private_token, "smsgate_token": token, "smsgate": device, "job": assigned}


def test_every_smsgate_route_answers_below_500(smsgate_world):
    client = Client(raise_request_exception=False)

    def check(route: Any, request: dict[str, Any]) -> None:
        response = send(client, **request)
        assert response.status_code < 500, f"{request}: {response.status_code} {response.content[:300]!r}"
        if response.status_code >= 400:
            assert isinstance(json_or_none(response.content), dict), f"{request}: {response.content[:300]!r}"

    fuzz_each(MOBILE_ROUTES, lambda route: mobile_requests(route, smsgate_world), check)
    device = Device.objects.get(pk=smsgate_world["smsgate"].pk)
    fuzz_each(["hooks"], lambda _: webhooks(device, smsgate_world["job"].public_id), check)


# --- The phones' WebSocket frames ----------------------------------------------------------------------

FRAME_TYPES = ["ping", "pong", "claim", "report", "state", "incoming", "hello", ""]
FRAME_FIELDS = ["message_id", "status", "error", "at", "available", "battery", "signal", "from", "msg", "sim", "id"]


@st.composite
def frames(draw: Callable[[Any], Any], message_id: str) -> str | bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.one_of(DEEP_BODIES, st.just("[" * 20_000 + "]" * 20_000), HOSTILE_TEXT))
    if kind == 1:
        return draw(st.one_of(st.binary(max_size=8), HOSTILE_TEXT))
    frame = draw(st.dictionaries(st.sampled_from(FRAME_FIELDS), HOSTILE_VALUE, max_size=4))
    frame["type"] = draw(st.one_of(st.sampled_from(FRAME_TYPES), HOSTILE_VALUE))
    if draw(st.booleans()):
        frame["message_id"] = message_id
    return json.dumps(frame)


async def exchange(token: str, sent: list[str | bytes]) -> None:
    """Sends the frames on one connection, then a ping: the pong (or a close for too many
    bad frames, 4400) must come back; anything the app raised is raised here."""
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await ws.connect()
    assert connected
    try:
        for frame in sent:
            frame = frame or " "  # the communicator cannot send an empty frame
            await ws.send_to(**({"bytes_data": frame} if isinstance(frame, bytes) else {"text_data": frame}))
        await ws.send_json_to({"type": "ping"})
        while True:
            output = await ws.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                assert output.get("code") == device_services.CLOSE_BAD_FRAMES, f"{sent!r}: closed {output!r}"
                return
            if json.loads(output.get("text", "{}")).get("type") == "pong":
                return
    finally:
        await ws.disconnect()


def test_phone_frames_never_close_the_connection_with_an_error(world):
    def check(_: Any, sent: list[str | bytes]) -> None:
        async_to_sync(exchange)(world["device_token"], sent)

    strategy = st.lists(frames(world["assigned"].public_id), min_size=1, max_size=6)
    fuzz_each(["frames"], lambda _: strategy, check)
