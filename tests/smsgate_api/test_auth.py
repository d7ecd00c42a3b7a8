"""Who may call SMSGate's client API: a list's SMSGate login (Basic), a Phonefleet API key
(Bearer) with every rule of the key, and nobody else; errors in SMSGate's shape."""

from __future__ import annotations

import pytest

from accounts import services as account_services
from devices.smsgate import services as smsgate_devices
from tests import factories
from tests.smsgate_api.conftest import BASE, basic

pytestmark = pytest.mark.django_db


def test_it_lets_a_list_login_in_with_basic(as_login):
    answer = as_login.get(f"{BASE}/devices")
    assert answer.status_code == 200
    assert [device["name"] for device in answer.json()] == ["Pixel 8"]


def test_it_lets_an_api_key_in_with_bearer(as_key, alice_login):
    answer = as_key.get(f"{BASE}/messages")
    assert answer.status_code == 200
    assert answer.json() == []
    assert answer["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic " + "!!!",
        basic("NOPE", "wrong-password"),
        "Bearer pf_live_wrong",
        "Bearer not-a-token",
        "Token abc",
    ],
)
def test_it_refuses_anyone_else_with_401_in_smsgate_shape(client, alice_login, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    answer = client.get(f"{BASE}/messages", **headers)
    assert answer.status_code == 401
    assert set(answer.json()) == {"message"}
    assert answer["WWW-Authenticate"].startswith("Basic")


def test_a_wrong_password_for_a_real_login_is_refused(client, alice_login):
    answer = client.get(f"{BASE}/devices", HTTP_AUTHORIZATION=basic(alice_login[0], "not-the-password"))
    assert answer.status_code == 401


def test_a_revoked_login_is_refused(as_login, alice_list):
    for credential in alice_list.enrolment_tokens.filter(prefix__startswith="login:"):
        smsgate_devices.revoke_enrolment_token(token=credential)
    assert as_login.get(f"{BASE}/devices").status_code == 401


def test_the_keys_ip_allow_list_applies(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, allowed_ips=["10.9.9.9/32"])
    answer = client.get(f"{BASE}/messages", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert answer.status_code == 403
    assert "allow-list" in answer.json()["message"]


def test_a_revoked_key_is_refused(as_key, alice_key):
    account_services.revoke_api_key(key=alice_key[0])
    assert as_key.get(f"{BASE}/messages").status_code == 401


def test_the_keys_rate_limit_applies(as_key, alice_key):
    account_services.update_api_key(key=alice_key[0], rate_limit_per_minute=2)
    codes = [as_key.get(f"{BASE}/messages").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    last = as_key.get(f"{BASE}/messages")
    assert "Retry-After" in last
    assert set(last.json()) == {"message"}


def test_both_prefixes_answer(as_key):
    assert as_key.get("/3rdparty/v1/messages").status_code == 200
    assert as_key.get("/api/3rdparty/v1/messages").status_code == 200


def test_an_unknown_path_or_method_gets_smsgate_errors(as_key):
    missing = as_key.get(f"{BASE}/nothing/here")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not found."})
    wrong = as_key.put(f"{BASE}/messages", data="{}", content_type="application/json")
    assert wrong.status_code == 405
    assert set(wrong.json()) == {"message"}


def test_phonefleets_own_api_keeps_its_envelope(as_key):
    answer = as_key.get("/api/v1/messages/msg_unknown")
    assert answer.status_code == 404
    assert answer.json()["status_code"] == "6"


def test_health_answers_in_smsgate_shape_without_credentials(client, db):
    live = client.get(f"{BASE}/health/live")
    assert live.status_code == 200
    assert live.json()["status"] == "pass"
    ready = client.get("/api/3rdparty/v1/health").json()
    assert ready["status"] in ("pass", "warn")  # no worker runs in tests: a warning
    assert ready["checks"]["db:ping"]["status"] == "pass"
    assert client.get(f"{BASE}/health/startup").json()["checks"]["db:ping"]["status"] == "pass"


def test_a_logins_calls_are_rate_limited_as_a_keys_without_a_limit(as_login, monkeypatch):
    monkeypatch.setattr("accounts.api.DEFAULT_RATE_LIMIT_PER_MINUTE", 2)
    codes = [as_login.get(f"{BASE}/devices").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    last = as_login.get(f"{BASE}/devices")
    assert "Retry-After" in last
    assert last.json() == {"message": "This login may make 2 requests per minute."}
