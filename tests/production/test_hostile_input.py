"""Hostile input against live servers: limits shared by every process (Redis/PostgreSQL),
oversized and NUL-laden bodies, and hypothesis-fuzzed phone frames and SMSGate bodies."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import ApiKey
from messaging.models import Message
from tests import factories
from tests.production.conftest import api, enrol, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def assert_envelope(status: int, body: dict, http: int, code: int) -> None:
    assert (status, body.get("response"), body.get("status_code")) == (http, str(http), str(code)), body


def test_the_per_key_rate_limit_holds_across_two_server_processes(stack):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=5)
    servers = [stack.daphne("daphne-1"), stack.daphne("daphne-2")]
    # The limit is a fixed one-minute window: start well inside one.
    wait_for(lambda: time.time() % 60 < 45, timeout=20, what="the start of a minute window", every=0.5)
    answers = [api("GET", f"{servers[n % 2].url}/api/v1/balance", secret=secret) for n in range(12)]
    assert [status for status, _, _ in answers].count(200) == 5  # one counter for both processes
    for status, body, headers in answers[5:]:
        assert_envelope(status, body, 429, 5)
        assert 1 <= int(headers["Retry-After"]) <= 60


def test_wrong_pins_spread_over_two_processes_are_locked_out_with_429_and_retry_after(stack):
    account = factories.make_account()
    phone_list = factories.make_list(account=account, pin="424242")
    servers = [stack.daphne("daphne-1"), stack.daphne("daphne-2")]
    answers = [
        api("POST", f"{servers[n % 2].url}/api/device/v1/enroll", body={"pin": "000000", "name": "guess"})
        for n in range(14)
    ]
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {403, 429} and statuses.count(403) == 10
    locked = [headers for status, _, headers in answers if status == 429]
    assert locked and all(int(h["Retry-After"]) >= 1 for h in locked)
    # Even the right PIN waits out the lockout, on either process.
    status, _, _ = api("POST", f"{servers[0].url}/api/device/v1/enroll", body={"pin": phone_list.pin, "name": "x"})
    assert status == 429


def test_the_sign_in_lockout_holds_across_two_server_processes(stack):
    factories.make_account(email="victim@example.com", password="right password 1")
    servers = [stack.daphne("daphne-1"), stack.daphne("daphne-2")]

    def sign_in(server, password: str) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        page = opener.open(f"{server.url}/login/", timeout=10).read().decode()
        token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        form = urllib.parse.urlencode(
            {"username": "victim@example.com", "password": password, "csrfmiddlewaretoken": token}
        )
        request = urllib.request.Request(f"{server.url}/login/", data=form.encode(), headers={"Referer": server.url})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener.add_handler(NoRedirect())
        try:
            answer = opener.open(request, timeout=10)
            return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    for n in range(10):
        status, _ = sign_in(servers[n % 2], "wrong password")
        assert status < 500
    for server in servers:
        status, page = sign_in(server, "right password 1")
        assert status == 200 and "Too many sign-in attempts" in page  # not signed in (no 302)


def test_an_oversized_body_is_refused_with_the_envelope_by_both_servers(stack):
    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    daphne = stack.daphne("daphne", MAX_BODY_BYTES="20000")
    gunicorn = stack.gunicorn("gunicorn", MAX_BODY_BYTES="20000")
    for server in (daphne, gunicorn):
        status, body, _ = api(
            "POST", f"{server.url}/api/v1/send", secret=secret, body={"to": "+393331234567", "msg": "x" * 50_000}
        )
        assert 400 <= status < 500 and body.get("response") == str(status), body
        assert body.get("status_code") == "5"
    assert not Message.objects.exists()


def test_nul_characters_in_parameters_are_a_400_not_a_database_error(client, alice_key, postgres_only):
    _key, secret = alice_key
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    single = client.post(
        "/api/v1/send",
        {"to": "+393331234567", "msg": "hi", "device_id": "dev_\x00"},
        content_type="application/json",
        **auth,
    )
    bulk = client.post(
        "/api/v1/send/bulk",
        {"msg": "hi", "recipients": [{"to": "+39333\x001234567"}]},
        content_type="application/json",
        **auth,
    )
    for response in (single, bulk):
        assert response.status_code == 400
        assert response.json()["status_code"] == "5"
    assert not Message.objects.exists()


# --- Phone WebSocket frames -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
frame_types = st.sampled_from(["claim", "report", "state", "incoming", "ping", "pong", "offer", "", "x" * 50])
frames = st.one_of(
    # Well-typed frames with random fields (the handlers' checks).
    st.builds(
        lambda t, extra: json.dumps({**extra, "type": t}),
        frame_types,
        st.dictionaries(
            st.sampled_from(
                ["message_id", "status", "error", "at", "available", "battery", "signal", "from", "msg", "sim"]
            ),
            json_values,
            max_size=5,
        ),
    ),
    # Any JSON at all, and text that is not JSON.
    st.builds(json.dumps, json_values),
    st.text(max_size=200),
)


def test_random_phone_frames_get_error_frames_and_never_break_the_server(stack, postgres_only):
    from websockets.sync.client import connect

    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account)
    server = stack.daphne("daphne")
    token = enrol(server.url, phone_list.pin, "fuzzed phone")
    url = server.url.replace("http://", "ws://") + "/ws/device/"
    seen_types: set[str] = set()

    @FUZZ
    @given(batch=st.lists(frames, min_size=1, max_size=8))
    def session(batch: list[str]) -> None:
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            for raw in batch:
                ws.send(raw)
                ws.send(json.dumps({"type": "ping"}))
                # Every frame gets its answer before the ping's pong; the connection stays up
                # (fewer than the 10 bad frames after which it is closed with 4400).
                while True:
                    answer = json.loads(ws.recv(timeout=10))
                    seen_types.add(answer["type"])
                    assert answer["type"] in {"error", "ack", "taken", "assign", "offer", "pong"}, answer
                    if answer["type"] == "error":
                        assert isinstance(answer["error"], str) and answer["error"]
                        assert "could not handle" not in answer["error"], (raw, answer)  # no crash inside
                    if answer["type"] == "pong":
                        break

    session()
    assert "error" in seen_types
    assert server.alive()
    assert "Traceback" not in server.tail(100_000), server.tail()


def test_ten_bad_frames_close_the_connection_with_the_documented_code(stack):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account)
    server = stack.daphne("daphne")
    token = enrol(server.url, phone_list.pin, "noisy phone")
    with connect(
        server.url.replace("http://", "ws://") + "/ws/device/", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.recv(timeout=10)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(20):
                ws.send("not json")
                assert json.loads(ws.recv(timeout=10))["type"] == "error"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


# --- SMSGate (Android app) endpoints ------------------------------------------------------------

SMSGATE = [
    ("POST", "device"),
    ("PATCH", "device"),
    ("GET", "message"),
    ("PATCH", "message"),
    ("PATCH", "messages"),
    ("GET", "settings"),
    ("GET", "webhooks"),
    ("POST", "webhooks"),
    ("GET", "user/code"),
    ("POST", "hooks/dev_x"),
]


def test_random_smsgate_bodies_never_get_a_5xx(stack):
    account = factories.make_account(credit=10)
    factories.make_list(account=account)
    server = stack.daphne("daphne")
    seen: set[int] = set()

    @FUZZ
    @given(
        endpoint=st.sampled_from(SMSGATE),
        body=st.one_of(st.builds(json.dumps, json_values), st.text(max_size=100)),
        auth=st.sampled_from(["", "Bearer nonsense", "Basic Zm9vOmJhcg==", "Code 123456", "Bearer \u00ff"]),
    )
    def call(endpoint: tuple[str, str], body: str, auth: str) -> None:
        method, path = endpoint
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        request = urllib.request.Request(
            f"{server.url}/api/mobile/v1/{path}",
            data=body.encode() if method != "GET" else None,
            method=method,
            headers={k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        seen.add(status)
        assert status < 500, (method, path, body, auth, status)

    call()
    assert seen and max(seen) < 500
    assert server.alive()


def test_frames_with_nul_or_lone_surrogates_are_bad_frames_not_server_errors(stack):
    from websockets.sync.client import connect

    account = factories.make_account(credit=10)
    phone_list = factories.make_list(account=account)
    server = stack.daphne("daphne")
    token = enrol(server.url, phone_list.pin, "odd phone")
    with connect(
        server.url.replace("http://", "ws://") + "/ws/device/", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.recv(timeout=10)
        for frame in (
            '{"type":"claim","message_id":"\\u0000"}',
            '{"type":"claim","message_id":"\\ud800"}',
            '{"type":"incoming","from":"\\ud800","msg":"x"}',
            '{"type":"report","message_id":"msg_1","status":"failed","error":"\\u0000"}',
        ):
            ws.send(frame)
            answer = json.loads(ws.recv(timeout=10))
            assert answer["type"] == "error" and "NUL or unpaired surrogate" in answer["error"], (frame, answer)
    assert "Traceback" not in server.tail(100_000), server.tail()
