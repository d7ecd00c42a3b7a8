"""Private tokens, Basic sign-in and one-time codes for SMSGate phones (`POST /device`, `GET /user/code`)."""

from __future__ import annotations

import base64
import dataclasses
import json
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from devices import services as device_services
from devices.models import Device, EnrolmentToken
from devices.smsgate import services as smsgate

URL = "/api/mobile/v1"
UA = "me.capcom.smsgateway/1.68.0"


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def sign_up(client, authorization: str, name: str = "Xiaomi/venus", ip: str = "127.0.0.1"):
    return client.post(
        f"{URL}/device",
        data=json.dumps({"name": name}),
        content_type="application/json",
        HTTP_AUTHORIZATION=authorization,
        HTTP_USER_AGENT=UA,
        REMOTE_ADDR=ip,
    )


@pytest.fixture
def private_token(alice_list) -> str:
    return smsgate.create_enrolment_token(phone_list=alice_list)[1]


def test_it_stores_private_tokens_only_as_digests(alice_list):
    row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    assert secret.startswith("pf_mobile_") and secret.startswith(row.prefix)
    assert secret not in row.digest and len(row.prefix) < len(secret)


def test_createaccount_prints_a_private_token_that_enrols_a_phone(db, client):
    out = StringIO()
    call_command("createaccount", "--email", "dave@example.com", "--json", stdout=out)
    data = json.loads(out.getvalue())
    answer = sign_up(client, f"Bearer {data['mobile_token']}")
    assert answer.status_code == 201
    assert Device.objects.get(public_id=answer.json()["id"]).phone_list.token == data["list"]


def test_the_panel_lists_private_tokens_but_not_login_credentials(client, alice_list):
    older, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    sign_up(client, f"Bearer {secret}")  # also creates a login for the list
    newer, _secret = smsgate.create_enrolment_token(phone_list=alice_list)
    assert smsgate.list_private_tokens(phone_list=alice_list) == [newer, older]
    assert EnrolmentToken.objects.filter(phone_list=alice_list).count() == 3


def test_a_revoked_private_token_is_refused_but_its_phones_keep_working(client, alice_list):
    row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    token = sign_up(client, f"Bearer {secret}").json()["token"]
    smsgate.revoke_enrolment_token(token=row)
    assert sign_up(client, f"Bearer {secret}").status_code == 401
    patched = client.patch(
        f"{URL}/device", data="{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert patched.status_code == 204


def test_basic_sign_in_adds_another_phone_to_the_same_list_without_a_password(client, private_token, alice_list):
    first = sign_up(client, f"Bearer {private_token}").json()
    answer = sign_up(client, basic(first["login"], first["password"]), name="Google/oriole")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "token", "login"} and body["login"] == first["login"]
    assert Device.objects.get(public_id=body["id"]).phone_list == alice_list
    assert sign_up(client, basic(first["login"], "wrong-password")).status_code == 401


def test_a_one_time_code_enrols_exactly_one_phone_within_a_minute(client, private_token, alice_list):
    first = sign_up(client, f"Bearer {private_token}").json()
    login = basic(first["login"], first["password"])
    with time_machine.travel("2026-03-01T10:00:00Z", tick=False) as clock:
        answer = client.get(f"{URL}/user/code", HTTP_AUTHORIZATION=login)
        assert answer.status_code == 200
        assert answer.json()["validUntil"] == "2026-03-01T10:01:00.000+00:00"
        joined = sign_up(client, f"Code {answer.json()['code']}")
        assert joined.status_code == 201
        assert Device.objects.get(public_id=joined.json()["id"]).phone_list == alice_list
        assert sign_up(client, f"Code {answer.json()['code']}").status_code == 401

        late = client.get(f"{URL}/user/code", HTTP_AUTHORIZATION=login).json()["code"]
        clock.shift(61)
        assert sign_up(client, f"Code {late}").status_code == 401


def test_user_code_needs_the_right_login(client, private_token):
    first = sign_up(client, f"Bearer {private_token}").json()
    assert client.get(f"{URL}/user/code", HTTP_AUTHORIZATION=basic(first["login"], "nope")).status_code == 401
    assert client.get(f"{URL}/user/code").status_code == 401


def test_repeated_wrong_logins_from_one_address_are_locked_out(client, private_token):
    first = sign_up(client, f"Bearer {private_token}").json()
    statuses = [sign_up(client, basic(first["login"], f"wrong{i}")).status_code for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    # Even the right password waits out the lockout.
    assert sign_up(client, basic(first["login"], first["password"])).status_code == 429


def test_wrong_logins_and_codes_count_per_ipv6_64_like_pins(client, private_token):
    first = sign_up(client, f"Bearer {private_token}").json()
    for n in range(smsgate.SIGN_IN_THROTTLE.max_failures):
        assert sign_up(client, basic(first["login"], "wrong"), ip=f"2001:db8:1:2::{n + 1:x}").status_code == 401
    right = basic(first["login"], first["password"])
    assert sign_up(client, right, ip="2001:db8:1:2:ffff::1").status_code == 429
    assert sign_up(client, right, ip="2001:db8:1:3::1").status_code == 201
    for n in range(smsgate.SIGN_IN_THROTTLE.max_failures):
        assert sign_up(client, "Code 000000", ip=f"2001:db8:9:9::{n + 1:x}").status_code == 401
    assert sign_up(client, "Code 000001", ip="2001:db8:9:9::ffff").status_code == 429


def test_wrong_logins_and_codes_from_everywhere_are_capped_together(client, private_token, monkeypatch):
    first = sign_up(client, f"Bearer {private_token}").json()
    policy = smsgate.SIGN_IN_GLOBAL_THROTTLE
    monkeypatch.setattr(smsgate, "SIGN_IN_GLOBAL_THROTTLE", dataclasses.replace(policy, max_failures=4))
    for n in range(2):
        assert sign_up(client, basic(first["login"], "wrong"), ip=f"198.51.100.{n}").status_code == 401
        assert sign_up(client, "Code 000000", ip=f"203.0.113.{n}").status_code == 401
    answer = sign_up(client, basic(first["login"], first["password"]), ip="192.0.2.77")
    assert answer.status_code == 429 and int(answer["Retry-After"]) > 0


def test_a_deactivated_accounts_credentials_enrol_nothing(client, private_token, alice):
    first = sign_up(client, f"Bearer {private_token}").json()
    device_services.deactivate_account(account=alice)
    assert sign_up(client, basic(first["login"], first["password"]), ip="192.0.2.1").status_code == 401
    assert sign_up(client, f"Bearer {private_token}", ip="192.0.2.2").status_code == 401


def test_device_routes_refuse_websocket_phone_tokens(client, alice_list):
    _device, ws_token = device_services.create_device(phone_list=alice_list, name="Agent")
    for path in ("/message", "/settings", "/webhooks"):
        assert client.get(f"{URL}{path}", HTTP_AUTHORIZATION=f"Bearer {ws_token}").status_code == 401


def test_sign_up_without_credentials_answers_401(client, alice_list):
    assert sign_up(client, "").status_code == 401
    assert sign_up(client, "Bearer").status_code == 401
    assert not Device.objects.exists()
    assert EnrolmentToken.objects.count() == 0
