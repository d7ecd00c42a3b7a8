"""GET/PUT /api/v1/ipn, the test event, the delivery log and replays, scoped to the key's account."""

import json

import pytest
import standardwebhooks

from ipn import delivery
from ipn import services as ipn_services
from ipn.models import IpnEndpoint, IpnEvent
from messaging.services import callbacks
from tests.ipn.conftest import make_message


@pytest.fixture
def api(client, alice_key):
    _key, secret = alice_key
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def call(method, path, data=None):
        if method == "get":
            return client.get(path, data or {}, **auth)
        return getattr(client, method)(path, json.dumps(data or {}), content_type="application/json", **auth)

    return call


def ok(response):
    body = response.json()
    assert response.status_code == 200, body
    assert (body["response"], body["status_code"]) == ("200", "2")
    return body


def test_get_creates_the_settings_with_a_secret_and_callbacks_off(api, alice):
    body = ok(api("get", "/api/v1/ipn"))
    assert (body["url"], body["enabled"], body["events"], body["format"]) == ("", False, [], "standard")
    assert body["secret"].startswith("whsec_")
    assert body["secret"] == IpnEndpoint.objects.get(account=alice).secret


def test_put_changes_the_settings(api, private_ok, receiver):
    body = ok(
        api(
            "put",
            "/api/v1/ipn",
            {"url": receiver.url, "enabled": True, "events": ["message.sent", "sms.received"], "format": "geniosms"},
        )
    )
    assert (body["url"], body["enabled"], body["format"], body["active"]) == (receiver.url, True, "geniosms", True)
    assert body["events"] == ["message.sent", "sms.received"]
    assert ok(api("put", "/api/v1/ipn", {"enabled": False}))["url"] == receiver.url  # the rest is kept


def test_put_accepts_a_form_with_comma_separated_events(client, alice_key, private_ok, receiver):
    _key, secret = alice_key
    response = client.put(
        "/api/v1/ipn",
        f"url={receiver.url}&enabled=true&events=message.sent,message.failed",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert ok(response)["events"] == ["message.sent", "message.failed"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"url": "ftp://8.8.8.8/"}, "http"),
        ({"url": "http://169.254.169.254/"}, "link-local"),
        ({"events": ["message.bounced"]}, "events"),
        ({"format": "xml"}, "format"),
        ({"enabled": True}, "URL"),
    ],
)
def test_put_refuses_bad_settings_with_param_error(api, data, fragment):
    response = api("put", "/api/v1/ipn", data)
    body = response.json()
    assert response.status_code == 400 and body["status_code"] == "5"
    assert fragment in body["error"]


def test_a_wrong_key_gets_code_3(client):
    response = client.get("/api/v1/ipn", HTTP_AUTHORIZATION="Bearer pf_live_nope")
    assert response.status_code == 401 and response.json()["status_code"] == "3"


def test_the_test_button_sends_a_signed_test_event_and_shows_the_answer(api, endpoint, receiver):
    body = ok(api("post", "/api/v1/ipn/test"))
    assert body["attempt"]["status_code"] == 200 and body["attempt"]["outcome"] == "success"
    assert body["attempt"]["response_body"] == "ok" and body["attempt"]["is_test"] is True
    got = receiver.wait_for(1)[0]
    assert got.verified and got.headers["webhook-id"] == body["webhook_id"]
    assert json.loads(got.body)["type"] == "test"


def test_the_test_button_shows_a_refused_address(api, alice, settings):
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    ipn_services.update_endpoint(account=alice, url="http://127.0.0.1:9/ipn")
    settings.IPN_ALLOW_PRIVATE_NETWORKS = False
    attempt = ok(api("post", "/api/v1/ipn/test"))["attempt"]
    assert attempt["outcome"] == "permanent" and attempt["error"].startswith("refused:")


def test_the_log_lists_events_with_their_attempts(api, alice, alice_list, endpoint, receiver):
    event = callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
    assert event is not None
    delivery.deliver_one_due_event()
    events = ok(api("get", "/api/v1/ipn/events"))["events"]
    assert [e["webhook_id"] for e in events] == [event.webhook_id]
    assert events[0]["status"] == "delivered" and events[0]["type"] == "message.sent"
    assert events[0]["body"] == event.body
    assert [a["status_code"] for a in events[0]["attempts"]] == [200]
    assert ok(api("get", "/api/v1/ipn/events", {"status": "failed"}))["events"] == []


def test_a_replay_through_the_api_keeps_the_webhook_id(api, alice, alice_list, endpoint, receiver):
    event = callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
    assert event is not None
    delivery.deliver_one_due_event()
    body = ok(api("post", f"/api/v1/ipn/events/{event.webhook_id}/replay"))
    assert body["webhook_id"] == event.webhook_id and body["attempt"]["is_replay"] is True
    assert [r.headers["webhook-id"] for r in receiver.wait_for(2)] == [event.webhook_id] * 2


def test_another_accounts_event_is_not_found(client, bob_key, alice, alice_list, endpoint):
    event = callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
    assert event is not None
    _key, secret = bob_key
    response = client.post(f"/api/v1/ipn/events/{event.webhook_id}/replay", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 404 and response.json()["status_code"] == "6"
    listed = client.get("/api/v1/ipn/events", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["events"]
    assert listed == []


def test_rotating_through_the_api_shows_only_the_new_secret(api, alice, endpoint):
    old = endpoint.secret
    body = ok(api("post", "/api/v1/ipn/secret/rotate"))
    assert body["secret"] != old and old not in json.dumps(body)
    assert IpnEndpoint.objects.get(account=alice).previous_secret == old


def test_replay_failed_since_through_the_api(api, alice, alice_list, endpoint, receiver):
    receiver.default.status = 410
    event = callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
    assert event is not None
    delivery.deliver_one_due_event()
    ok(api("put", "/api/v1/ipn", {"enabled": True}))
    receiver.default.status = 200
    body = ok(api("post", "/api/v1/ipn/events/replay-failed", {"since": "2000-01-01T00:00:00Z"}))
    assert body["queued"] == 1
    delivery.deliver_one_due_event()
    assert IpnEvent.objects.get(pk=event.pk).status == IpnEvent.Status.DELIVERED
    second = receiver.wait_for(2)[1]
    standardwebhooks.Webhook(receiver.secret).verify(second.body, second.headers)
