"""Hostile input gets a clear 4xx (or a refused frame), never a 500 (issue 17, item 2).

Each case here answered 500 with a traceback before (on PostgreSQL: NUL and date ranges only
fail there), several without authentication. They are refused in one place per entry point:
the path's NUL by `InputErrorMiddleware` (every HTTP route), bodies by the JSON parser
(`accounts/parsers.py`, `accounts/lib/safejson.py`), what gets past a view's checks by the
API's exception handler, SMSGate's and the middleware (`accounts.errors.input_error`), phone
frames by `devices/consumer_base.py`. tests/test_route_fuzz.py looks for the ones not listed.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import get_resolver
from django.utils import timezone
from rest_framework import parsers as drf_parsers
from rest_framework.views import APIView

from config.asgi import application
from devices.models import Device
from devices.smsgate import services as smsgate
from devices.smsgate import wire
from messaging.models import InboundSms, Message
from tests import factories
from tests.panel.conftest import signed_in

DEEP_JSON = "[" * 3000 + "]" * 3000  # 6 KB
YEAR_ONE = "0001-01-01T00:00:00+23:59"  # readable, but before the year 1 in UTC
SMSGATE_UA = "me.capcom.smsgateway/1.68.0"


def is_envelope(response, status: int = 400) -> bool:
    body = response.json()
    return body["response"] == str(status) and body["status_code"] == "5" and body["error"]


@pytest.fixture
def anonymous():
    return Client(raise_request_exception=False)


@pytest.fixture
def api(alice_key):
    """A client sending Alice's key (a 500 is an answer here, not an exception)."""
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {alice_key[1]}")


@pytest.fixture
def panel(alice):
    client = signed_in(alice)
    client.raise_request_exception = False
    return client


@pytest.fixture
def smsgate_phone(alice_list, anonymous):
    """(device, device token) of an SMSGate app registered to Alice's list."""
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    answer = anonymous.post(
        "/api/mobile/v1/device",
        {"name": "Pixel"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_USER_AGENT=SMSGATE_UA,
    )
    assert answer.status_code == 201
    return Device.objects.get(public_id=answer.json()["id"]), answer.json()["token"]


# --- NUL in an id of the path ------------------------------------------------------------

API_NUL_PATHS = [
    ("get", "/api/v1/messages/%00"),
    ("get", "/api/v1/messages/msg_%00"),
    ("post", "/api/v1/messages/%00/cancel"),
    ("post", "/api/v1/ipn/events/%00/replay"),
    ("get", "/api/v1/verify/%00"),
    ("get", "/api/v1/lists/%00/subscribers"),
    ("get", "/api/v1/lists/lst_%00/subscribers.csv"),
    ("post", "/api/v1/lists/%00/broadcast"),
]
PANEL_NUL_PATHS = [
    ("get", "/lists/%00/"),
    ("post", "/lists/%00/"),
    ("post", "/lists/%00/pin/"),
    ("get", "/lists/%00/subscribers.csv"),
    ("post", "/lists/%00/mobile-tokens/"),
    ("post", "/lists/%00/subscribers/add/"),
    ("post", "/lists/%00/broadcast/"),
    ("post", "/phones/%00/rename/"),
    ("post", "/phones/%00/disable/"),
    ("post", "/phones/%00/remove/"),
    ("get", "/messages/%00/"),
    ("get", "/live/messages/%00/"),
    ("post", "/messages/%00/cancel/"),
    ("get", "/ipn/events/%00/"),
    ("post", "/ipn/events/%00/replay/"),
]


@pytest.mark.parametrize(("method", "path"), API_NUL_PATHS)
def test_a_nul_in_an_api_path_is_a_400_in_the_envelope(api, method, path):
    answer = getattr(api, method)(path)
    assert answer.status_code == 400
    assert is_envelope(answer)


def test_a_nul_in_an_api_path_is_refused_before_the_key_is_read(anonymous):
    answer = anonymous.get("/api/v1/messages/%00")
    assert answer.status_code == 400
    assert is_envelope(answer)


def test_a_nul_in_an_smsgate_webhook_path_is_a_400_without_authentication(anonymous):
    answer = anonymous.post("/api/mobile/v1/hooks/%00", "{}", content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["message"]


@pytest.mark.parametrize(("method", "path"), PANEL_NUL_PATHS)
def test_a_nul_in_a_panel_path_is_a_400(panel, method, path):
    answer = getattr(panel, method)(path)
    assert answer.status_code == 400
    assert b"NUL" in answer.content


def test_a_nul_in_the_virtual_phones_pin_is_a_4xx(panel):
    # PostgreSQL cannot compare text with NUL: 400 from the guard; SQLite finds no such PIN.
    assert panel.post("/phone/join/", {"pin": "12\x0034"}).status_code in (400, 403)


# --- JSON nested deeply, or with text PostgreSQL and UTF-8 cannot carry --------------------

DEEP_JSON_ROUTES = [
    ("post", "/api/device/v1/enroll"),
    ("post", "/api/v1/send"),
    ("post", "/api/v1/send/bulk"),
    ("put", "/api/v1/ipn"),
    ("post", "/api/v1/lists/{list}/subscribers"),
    ("post", "/api/v1/lists/{list}/broadcast"),
    ("post", "/api/v1/verify"),
]


@pytest.mark.parametrize(("method", "path"), DEEP_JSON_ROUTES)
def test_deeply_nested_json_is_a_400_in_the_envelope(api, alice_list, method, path):
    answer = getattr(api, method)(path.format(list=alice_list.token), DEEP_JSON, content_type="application/json")
    assert answer.status_code == 400
    assert is_envelope(answer)
    assert "nest" in answer.json()["error"]


@pytest.mark.parametrize("method", ["post", "patch"])
def test_deeply_nested_json_to_the_smsgate_device_route_is_a_400(anonymous, smsgate_phone, method):
    answer = getattr(anonymous, method)(
        "/api/mobile/v1/device",
        DEEP_JSON,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {smsgate_phone[1]}",
    )
    assert answer.status_code == 400
    assert "nest" in answer.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"recipients": ["\ud800"], "msg": "Hi"},
        {"recipients": [{"to": "+393331234567", "msg": "Hi \udfff"}]},
        {"recipients": [{"to": "+393331234567", "ref": "\x00"}], "msg": "Hi"},
    ],
)
def test_a_lone_surrogate_or_nul_in_a_bulk_row_is_a_400(api, body):
    answer = api.post("/api/v1/send/bulk", json.dumps(body), content_type="application/json")
    assert answer.status_code == 400
    assert is_envelope(answer)
    assert Message.objects.count() == 0


@pytest.mark.parametrize("body", [{"number": "+39333\ud800"}, {"number": "+393331234567", "name": "\udc00"}])
def test_a_lone_surrogate_in_a_subscriber_is_a_400(api, alice_list, body):
    answer = api.post(
        f"/api/v1/lists/{alice_list.token}/subscribers", json.dumps(body), content_type="application/json"
    )
    assert answer.status_code == 400
    assert is_envelope(answer)


def test_an_emoji_escaped_as_a_surrogate_pair_is_still_accepted(api):
    body = '{"to": "+393331234567", "msg": "Hi \\ud83d\\ude00"}'
    answer = api.post("/api/v1/send", body, content_type="application/json")
    assert answer.status_code == 200
    assert Message.objects.get().text == "Hi \U0001f600"


# --- CSV uploads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"+393331234567,Hi\x00there\n", "NUL"),
        (b'+393331234567,"' + b"a" * 140_000 + b'"\n', "field larger"),
    ],
)
def test_a_bulk_csv_with_nul_or_a_field_over_128_kb_is_a_400(api, content, problem):
    answer = api.post("/api/v1/send/bulk", {"file": SimpleUploadedFile("rows.csv", content), "msg": "Hi"})
    assert answer.status_code == 400
    assert is_envelope(answer)
    assert problem in answer.json()["error"]


# --- SMSGate: signatures, versions, dates ----------------------------------------------------


@pytest.mark.parametrize("stamp", ["²", "١٧٠٠٠٠٠٠٠٠", "1" * 5000])
def test_an_x_timestamp_of_other_digits_or_5000_of_them_is_a_bad_signature(anonymous, smsgate_phone, stamp):
    device, _token = smsgate_phone
    body = b'{"event": "system:ping", "payload": {}}'
    answer = anonymous.post(
        f"/api/mobile/v1/hooks/{device.public_id}",
        body,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=wire.webhook_signature(device.webhook_signing_key, body, stamp),
    )
    assert answer.status_code == 401


def test_an_app_version_of_5000_digits_is_no_version(anonymous, alice_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    answer = anonymous.post(
        "/api/mobile/v1/device",
        {"name": "Pixel"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_USER_AGENT="me.capcom.smsgateway/" + "9" * 5000,
    )
    assert answer.status_code == 201
    assert Device.objects.get(public_id=answer.json()["id"]).app_version == ""


def test_an_smsgate_sms_received_before_the_year_one_in_utc_is_stored_as_received_now(anonymous, smsgate_phone):
    device, _token = smsgate_phone
    payload = {"messageId": "m1", "sender": "+393330000001", "message": "Hi", "receivedAt": YEAR_ONE}
    body = json.dumps({"id": "e1", "event": "sms:received", "payload": payload}).encode()
    stamp = str(int(time.time()))
    answer = anonymous.post(
        f"/api/mobile/v1/hooks/{device.public_id}",
        body,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=wire.webhook_signature(device.webhook_signing_key, body, stamp),
    )
    assert answer.status_code == 200
    assert InboundSms.objects.get().received_at > timezone.now() - timedelta(minutes=1)


# --- Real bugs stay 500s ------------------------------------------------------------------


@pytest.mark.parametrize("bug", [KeyError("a bug"), ValueError("a bug"), TypeError("a bug")])
def test_a_bug_is_still_a_500_and_logged(api, panel, monkeypatch, caplog, bug):
    from messaging import selectors

    def broken(**kwargs):
        raise bug

    monkeypatch.setattr(selectors, "get_message_for_account", broken)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        answer = api.get("/api/v1/messages/msg_x")
        assert panel.get("/messages/msg_x/").status_code == 500
    assert answer.status_code == 500
    assert answer.json()["response"] == "500"  # in the envelope all the same
    assert len([record for record in caplog.records if record.levelno >= logging.ERROR]) == 2


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/lists/lst_x/subscribers/", "/api/v1/messages/a/b"])
def test_an_unknown_api_path_answers_404_in_the_envelope(api, path):
    answer = api.get(path)
    assert answer.status_code == 404
    assert answer.json() == {"response": "404", "status_code": "6", "error": "No such operation or object."}


def test_a_request_django_refuses_to_read_answers_400_in_the_envelope(api):
    answer = api.get("/api/v1/messages?" + "&".join(f"f{n}=1" for n in range(1001)))  # DATA_UPLOAD_MAX_NUMBER_FIELDS
    assert answer.status_code == 400
    assert is_envelope(answer)


def test_an_unknown_smsgate_path_answers_404_in_its_shape(anonymous):
    answer = anonymous.get("/api/mobile/v1/nothing")
    assert answer.status_code == 404
    assert answer.json()["message"]


def test_every_api_view_parses_json_with_the_guarded_parser():
    """A view listing DRF's own JSONParser would bring the RecursionError back."""
    views = []

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns)
            else:
                view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
                if isinstance(view_class, type) and issubclass(view_class, APIView):
                    views.append(view_class)

    walk(get_resolver().url_patterns)
    assert len(views) > 20
    for view in views:
        for parser in view().get_parsers():
            assert type(parser) is not drf_parsers.JSONParser, view


# --- Phone frames and WebSocket paths ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_upgrade_to_an_unknown_path_is_refused_cleanly():
    for path in ["/ws/nowhere/", "/", "/ws/device/extra", "/ws/%00/"]:
        ws = WebsocketCommunicator(application, path)
        connected, _ = await ws.connect()
        assert not connected
        await ws.wait()


@pytest.fixture
def phone(alice_list):
    return factories.make_enrolled_device(phone_list=alice_list, name="Pixel 7")


async def open_phone(token: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    return ws


@pytest.mark.django_db(transaction=True)
async def test_a_40_kb_nested_frame_is_a_bad_frame_and_the_phone_stays(phone):
    ws = await open_phone(phone[1])
    await ws.send_to(text_data="[" * 20_000 + "]" * 20_000)
    refused = await ws.receive_json_from(timeout=5)
    assert refused["type"] == "error"
    assert "nest" in refused["error"]
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("at", [YEAR_ONE, "2026-02-30T10:00:00Z", "9999-12-31T23:59:59-23:59"])
async def test_a_report_dated_out_of_range_is_a_bad_frame(phone, at, caplog):
    ws = await open_phone(phone[1])
    with caplog.at_level(logging.ERROR):
        await ws.send_json_to({"type": "report", "message_id": "msg_x", "status": "sent", "at": at})
        refused = await ws.receive_json_from(timeout=5)
    assert refused["type"] == "error"
    assert "ISO 8601" in refused["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await ws.disconnect()


def test_smsgate_dates_are_read_in_utc():
    assert wire.parse_datetime(YEAR_ONE) is None
    for value in ["2024-05-13T16:49:17.357+07:00", "2024-05-13T09:49:17.357Z", "2024-05-13T09:49:17.357"]:
        parsed = wire.parse_datetime(value)
        assert parsed is not None
        assert parsed.isoformat() == "2024-05-13T09:49:17.357000+00:00"
