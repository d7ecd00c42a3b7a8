"""Access tokens (`POST /auth/token`, refresh, revoke): scoped, revocable, never outliving
the login or key they were issued to, and an API key's rules still apply."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts import services as account_services
from devices.models import Device
from devices.smsgate import services as smsgate_devices
from messaging.lib import jwt
from tests import factories
from tests.smsgate_api.conftest import BASE

pytestmark = pytest.mark.django_db


def issue(client, scopes, ttl=None, **extra):
    body = {"scopes": scopes} | ({"ttl": ttl} if ttl else {})
    return client.post(f"{BASE}/auth/token", data=json.dumps(body), content_type="application/json", **extra)


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_token_works_within_its_scopes_only(as_login, client):
    answer = issue(as_login, ["messages:list", "devices:list"])
    assert answer.status_code == 201
    body = answer.json()
    assert body["tokenType"] == "Bearer"
    assert set(body) == {"id", "tokenType", "accessToken", "refreshToken", "expiresAt"}
    token = body["accessToken"]
    assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 200
    assert client.get(f"{BASE}/devices", **bearer(token)).status_code == 200
    refused = client.get(f"{BASE}/settings", **bearer(token))
    assert refused.status_code == 403
    assert "settings:read" in refused.json()["message"]


def test_a_token_expires_after_its_ttl(as_key, client):
    token = issue(as_key, ["all:any"], ttl=60).json()["accessToken"]
    assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 401


def test_a_revoked_token_stops_at_once(as_key, client):
    body = issue(as_key, ["all:any"]).json()
    assert as_key.delete(f"{BASE}/auth/token/{body['id']}").status_code == 204
    assert client.get(f"{BASE}/messages", **bearer(body["accessToken"])).status_code == 401
    assert client.post(f"{BASE}/auth/token/refresh", **bearer(body["refreshToken"])).status_code == 401
    assert as_key.delete(f"{BASE}/auth/token/unknown-id").status_code == 404


def test_refresh_gives_a_new_pair_once(as_key, client):
    body = issue(as_key, ["messages:list"]).json()
    refreshed = client.post(f"{BASE}/auth/token/refresh", **bearer(body["refreshToken"]))
    assert refreshed.status_code == 201
    fresh = refreshed.json()
    assert client.get(f"{BASE}/messages", **bearer(fresh["accessToken"])).status_code == 200
    assert client.get(f"{BASE}/messages", **bearer(body["accessToken"])).status_code == 401  # the old pair is gone
    assert client.post(f"{BASE}/auth/token/refresh", **bearer(body["refreshToken"])).status_code == 401
    # A refresh token opens nothing else, an access token does not refresh.
    assert client.get(f"{BASE}/messages", **bearer(fresh["refreshToken"])).status_code == 401
    assert client.post(f"{BASE}/auth/token/refresh", **bearer(fresh["accessToken"])).status_code == 401


def test_a_token_dies_with_its_key_and_keeps_its_rules(client, alice, alice_list):
    key, secret = factories.make_api_key(account=alice, default_list=alice_list)
    token = issue(client, ["all:any"], **bearer(secret)).json()["accessToken"]
    account_services.update_api_key(key=key, allowed_ips=["10.9.9.9/32"])
    assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 403
    account_services.revoke_api_key(key=key)
    assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 401


def test_a_token_dies_with_its_logins_password(as_login, client, alice_login, alice_list):
    token = issue(as_login, ["all:any"]).json()["accessToken"]
    phone = Device.objects.get(phone_list=alice_list)
    smsgate_devices.change_password(device=phone, current=alice_login[1], new="another-long-password", ip="127.0.0.1")
    assert client.get(f"{BASE}/messages", **bearer(token)).status_code == 401


def test_a_token_cannot_widen_its_scopes(as_login, client):
    narrow = issue(as_login, ["tokens:manage"]).json()["accessToken"]
    assert issue(client, ["messages:send"], **bearer(narrow)).status_code == 400
    assert issue(client, ["tokens:manage"], **bearer(narrow)).status_code == 201


@pytest.mark.parametrize("scopes", [[], ["nope"], "all:any", [1]])
def test_bad_scopes_get_400(as_key, scopes):
    answer = issue(as_key, scopes)
    assert answer.status_code == 400
    assert set(answer.json()) == {"message"}


def test_a_forged_or_foreign_token_is_refused(client, as_key):
    body = issue(as_key, ["all:any"]).json()
    header, payload, signature = body["accessToken"].split(".")
    other = jwt.encode({"jti": body["id"], "exp": 4102444800}, key=b"another key")
    for forged in (f"{header}.{payload}.{signature[:-2]}xx", other, "a.b.c", "x" * 5000, "é.é.é"):
        assert client.get(f"{BASE}/messages", **bearer(forged)).status_code == 401


def test_jwt_round_trip_and_expiry():
    token = jwt.encode({"exp": 100, "a": 1}, key=b"k")
    assert jwt.decode(token, key=b"k", now=99)["a"] == 1
    for now, key in ((100, b"k"), (99, b"other")):
        with pytest.raises(jwt.InvalidJwt):
            jwt.decode(token, key=key, now=now)
