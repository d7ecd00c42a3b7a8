"""Numbers too large for their column are refused, never wrapped (issue 17, item 3).

PostgreSQL stored an SMSGate `simNumber` of 70000 as 4464 and a list's per-minute limit of
4294967297 as 1. This walks every integer a caller can give: each integer input of the
API (read from the OpenAPI schema, so a new one fails here until it is listed), of the
panel's forms (every IntegerField of our apps' forms) and of the SMSGate app's webhooks,
and sends each one a value past int4 and int8 (and past int2 for the SIM number): the
answer is 400 (or the form's error), and nothing is stored. (The phones' WebSocket frames
check every number against a range of their own: devices/consumers.py, `_int`.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django import forms
from drf_spectacular.generators import SchemaGenerator

from accounts import columns
from accounts.models import ApiKey
from devices.models import Device, PhoneList
from messaging.models import InboundSms, Message
from tests import factories

# Past int4 (wrapped to 1) and past int8; an SMSGate SIM number also past int2 (wrapped to 4464).
TOO_LARGE = [4294967297, 2**63 + 1]
SIM_TOO_LARGE = [70000, *TOO_LARGE]
NUMBER = "+393331234567"


# --- The API: every integer input of the schema --------------------------------------------

# (operation id, parameter) -> (method, path, where the parameter goes, the other parameters)
SEND = {"to": NUMBER, "msg": "Hi"}
SMSGATE_SEND = {"phoneNumbers": [NUMBER], "textMessage": {"text": "Hi"}}
API_INPUTS: dict[tuple[str, str], tuple[str, str, str, dict[str, Any]]] = {
    ("send", "sim"): ("post", "/api/v1/send", "body", SEND),
    ("send", "ttl"): ("post", "/api/v1/send", "body", SEND),
    ("send_get", "sim"): ("get", "/api/v1/send", "query", SEND),
    ("send_get", "ttl"): ("get", "/api/v1/send", "query", SEND),
    ("geniosms_send", "sim"): ("post", "/tools/api.pl", "body", SEND),
    ("geniosms_send", "ttl"): ("post", "/tools/api.pl", "body", SEND),
    ("geniosms_send_get", "sim"): ("get", "/tools/api.pl", "query", SEND),
    ("geniosms_send_get", "ttl"): ("get", "/tools/api.pl", "query", SEND),
    ("send_bulk", "sim"): ("post", "/api/v1/send/bulk", "body", {"recipients": [NUMBER], "msg": "Hi"}),
    ("send_bulk", "ttl"): ("post", "/api/v1/send/bulk", "body", {"recipients": [NUMBER], "msg": "Hi"}),
    ("verify_start", "length"): ("post", "/api/v1/verify", "body", {"to": NUMBER}),
    ("verify_start", "ttl"): ("post", "/api/v1/verify", "body", {"to": NUMBER}),
    ("message_list", "limit"): ("get", "/api/v1/messages", "query", {}),
    ("inbox", "limit"): ("get", "/api/v1/inbox", "query", {}),
    ("ipn_events", "limit"): ("get", "/api/v1/ipn/events", "query", {}),
    ("subscriber_list", "limit"): ("get", "/api/v1/lists/{list}/subscribers", "query", {}),
    # The SMSGate client API (errors in SMSGate's shape, not the envelope).
    ("smsgate_send_message", "simNumber"): ("post", "/3rdparty/v1/messages", "body", SMSGATE_SEND),
    ("smsgate_send_message", "priority"): ("post", "/3rdparty/v1/messages", "body", SMSGATE_SEND),
    ("smsgate_send_message", "ttl"): ("post", "/3rdparty/v1/messages", "body", SMSGATE_SEND),
    ("smsgate_list_messages", "limit"): ("get", "/3rdparty/v1/messages", "query", {}),
    ("smsgate_list_messages", "offset"): ("get", "/3rdparty/v1/messages", "query", {}),
    ("smsgate_list_inbox", "limit"): ("get", "/3rdparty/v1/inbox", "query", {}),
    ("smsgate_list_inbox", "offset"): ("get", "/3rdparty/v1/inbox", "query", {}),
    ("smsgate_issue_token", "ttl"): ("post", "/3rdparty/v1/auth/token", "body", {"scopes": ["messages:send"]}),
}
# Accepted and ignored (never stored, never looked up): only no 5xx is asked of them.
IGNORED = {("smsgate_send_message", "deviceActiveWithin"): ("post", "/3rdparty/v1/messages", "query", SMSGATE_SEND)}


def schema_integer_inputs() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = set()
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("schema", {}).get("type") == "integer":
                    found.add((operation["operationId"], parameter["name"]))
            for content in operation.get("requestBody", {}).get("content", {}).values():
                body = content["schema"]
                body = components[body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
                for name, field in body.get("properties", {}).items():
                    if field.get("type") == "integer":
                        found.add((operation["operationId"], name))
    return found


def test_every_integer_input_of_the_api_is_walked_here():
    # A new one: bound it (its column's range at most, accounts/columns.py) and list it above.
    walked = set(API_INPUTS) | set(IGNORED)
    assert schema_integer_inputs() == walked, "an integer input of the API is not walked here"


@pytest.mark.parametrize("value", TOO_LARGE)
def test_the_api_refuses_every_integer_too_large_with_400(client, alice_key, alice_list, value):
    _key, secret = alice_key

    def call(method: str, path: str, where: str, params: dict[str, Any], name: str) -> Any:
        url, auth = path.format(list=alice_list.token), {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
        if where == "query" and method == "post":  # a query parameter of a JSON POST
            return client.post(f"{url}?{name}={value}", json.dumps(params), content_type="application/json", **auth)
        if where == "query":
            return client.get(url, {**params, name: value}, **auth)
        return client.post(url, json.dumps({**params, name: value}), content_type="application/json", **auth)

    for (operation, name), (method, path, where, params) in API_INPUTS.items():
        response = call(method, path, where, params, name)
        body = response.json()
        # /tools/api.pl answers every envelope with HTTP 200 (docs/api.md); `response` says 400.
        assert (response.status_code if path != "/tools/api.pl" else int(body["response"])) == 400, (operation, name)
        if path.startswith("/3rdparty/"):
            assert body["message"], (operation, name, body)  # SMSGate's error shape
        else:
            assert body["status_code"] == "5", (operation, name, body)
    assert not Message.objects.exists()
    for (operation, name), (method, path, where, params) in IGNORED.items():
        assert call(method, path, where, params, name).status_code < 500, (operation, name)


# --- The panel: every IntegerField of our forms ---------------------------------------------


def panel_forms() -> set[tuple[str, str]]:
    """(form class, field) for every IntegerField of a form defined in our apps."""
    # The modules that define them (the URLconf has imported them already).
    import accounts.forms  # noqa: F401
    import devices.views  # noqa: F401
    import messaging.views  # noqa: F401

    found = set()
    pending: list[type] = [forms.BaseForm]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in ("accounts", "devices", "messaging", "ipn", "monitoring"):
            for name, field in getattr(cls, "base_fields", {}).items():
                if isinstance(field, forms.IntegerField):
                    found.add((cls.__name__, name))
    return found


def post_list_create(client, world, name, value):
    return client.post("/lists/", {"name": "Big", "default_country": "IT", name: value})


def post_list_settings(client, world, name, value):
    data = {"name": "Main", "default_country": "IT", "lease_seconds": 120, "default_ttl_seconds": 3600}
    return client.post(f"/lists/{world['list'].token}/", {**data, name: value})


def post_phone_caps(client, world, name, value):
    return client.post(f"/phones/{world['device'].public_id}/caps/", {name: value})


def post_key(client, world, name, value):
    return client.post(f"/keys/{world['key'].pk}/", {"name": "Shop", "ip_mode": "any", name: value})


def post_policy(client, world, name, value):
    key = world["key"]
    data = {"countries": "IT", "per_hour": 10, "number_interval_seconds": 30, "number_per_hour": 5, name: value}
    return client.post(f"/verifications/limits/{key.pk}/", {f"key{key.pk}-{k}": v for k, v in data.items()})


PANEL_INPUTS: dict[tuple[str, str], Callable[..., Any]] = {
    ("ListForm", "rate_limit_per_minute"): post_list_create,
    ("ListSettingsForm", "rate_limit_per_minute"): post_list_settings,
    ("ListSettingsForm", "rate_limit_per_hour"): post_list_settings,
    ("ListSettingsForm", "rate_limit_per_day"): post_list_settings,
    ("PhoneCapsForm", "minute"): post_phone_caps,
    ("PhoneCapsForm", "hour"): post_phone_caps,
    ("PhoneCapsForm", "day"): post_phone_caps,
    ("ListSettingsForm", "lease_seconds"): post_list_settings,
    ("ListSettingsForm", "default_ttl_seconds"): post_list_settings,
    ("ApiKeyForm", "rate_limit_per_minute"): post_key,
    ("VerificationPolicyForm", "per_hour"): post_policy,
    ("VerificationPolicyForm", "number_interval_seconds"): post_policy,
    ("VerificationPolicyForm", "number_per_hour"): post_policy,
}


def test_every_integer_field_of_the_panel_is_walked_here():
    # A new one: make it with columns.form_field (or bound it by hand) and list it above.
    assert panel_forms() == set(PANEL_INPUTS), "an IntegerField of a panel form is not walked here"


@pytest.fixture
def world(alice, alice_list, alice_key):
    return {"list": alice_list, "key": alice_key[0], "device": factories.make_device(phone_list=alice_list)}


@pytest.fixture
def alice_client(alice):
    from tests.panel.conftest import signed_in

    return signed_in(alice)


def stored_settings() -> tuple[Any, ...]:
    lists = tuple(
        PhoneList.objects.order_by("pk").values_list(
            "rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day", "lease_seconds", "default_ttl_seconds"
        )
    )
    phones = tuple(
        Device.objects.order_by("pk").values_list("rate_limit_per_minute", "rate_limit_per_hour", "rate_limit_per_day")
    )
    return lists, phones, tuple(ApiKey.objects.order_by("pk").values_list("rate_limit_per_minute", flat=True))


@pytest.mark.parametrize("value", TOO_LARGE)
def test_the_panel_answers_every_integer_too_large_with_its_form_error(world, alice_client, value):
    before = stored_settings()
    for (form, name), post in PANEL_INPUTS.items():
        response = post(alice_client, world, name, value)
        assert response.status_code == 200, (form, name)  # the form again, not a redirect
        assert "less than or equal to" in response.content.decode(), (form, name)
    assert stored_settings() == before


def test_a_form_field_from_a_column_takes_the_column_range():
    field = columns.form_field(PhoneList, "rate_limit_per_minute", min_value=1)
    assert (field.min_value, field.max_value) == (1, 2**31 - 1)
    assert columns.integer_range(InboundSms, "sim") == (0, 32767)


# --- SMSGate: the integers of the app's webhooks ----------------------------------------------


def test_an_smsgate_sim_number_too_large_is_refused_not_wrapped(client, alice_list):
    device = factories.make_device(phone_list=alice_list)
    Device.objects.filter(pk=device.pk).update(kind=Device.Kind.SMSGATE, webhook_signing_key="k" * 32)
    received = {"message": "Hi", "sender": NUMBER, "receivedAt": "2024-05-13T16:49:17.357+07:00"}
    for value in SIM_TOO_LARGE:
        body = json.dumps({"id": f"evt-{value}", "event": "sms:received", "payload": {**received, "simNumber": value}})
        stamp = str(int(time.time()))
        signature = hmac.new(b"k" * 32, body.encode() + stamp.encode(), hashlib.sha256).hexdigest()
        response = client.post(
            f"/api/mobile/v1/hooks/{device.public_id}",
            body,
            content_type="application/json",
            HTTP_X_TIMESTAMP=stamp,
            HTTP_X_SIGNATURE=signature,
        )
        assert response.status_code == 400, value
        assert "simNumber" in response.json()["message"]
    assert not InboundSms.objects.exists()
