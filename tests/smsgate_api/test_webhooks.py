"""`GET/POST /webhooks`, `DELETE /webhooks/{id}` and `webhooks.signing_key` in `/settings`:
what each caller sees and may change, and SMSGate's answers."""

from __future__ import annotations

import pytest

from ipn.models import IpnEndpoint, SmsGateWebhook
from tests import factories
from tests.smsgate_api.conftest import BASE

HOOK = "https://receiver.example.com/sms"


def post(client, **body):
    return client.post(f"{BASE}/webhooks", body, content_type="application/json")


def test_a_login_registers_lists_and_deletes_its_webhooks(as_login, alice_list):
    created = post(as_login, url=HOOK, event="sms:received", id="in-1")
    assert created.status_code == 201, created.json()
    assert created.json() == {"id": "in-1", "url": HOOK, "event": "sms:received"}
    generated = post(as_login, url=HOOK, event="sms:sent").json()
    assert generated["id"].startswith("wh_")
    listed = as_login.get(f"{BASE}/webhooks").json()
    assert [hook["id"] for hook in listed] == ["in-1", generated["id"]]
    assert set(SmsGateWebhook.objects.values_list("phone_list", flat=True)) == {alice_list.pk}

    assert as_login.delete(f"{BASE}/webhooks/in-1").status_code == 204
    assert as_login.delete(f"{BASE}/webhooks/in-1").json() == {"message": "Unknown webhook."}
    assert [hook["id"] for hook in as_login.get(f"/api{BASE}/webhooks").json()] == [generated["id"]]


def test_unsupported_events_and_bad_fields_get_400_with_the_reason(as_login):
    refused = post(as_login, url=HOOK, event="system:ping")
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("`system:ping` is not supported: ")
    assert post(as_login, url=HOOK, event="sms:nope").json()["message"].startswith("Unknown event `sms:nope`")
    assert post(as_login, url="ftp://x.example.com/", event="sms:sent").status_code == 400
    assert post(as_login, url="http://10.0.0.7/hook", event="sms:sent").status_code == 400
    assert post(as_login, event="sms:sent").json()["message"].startswith("url:")
    assert post(as_login, url=HOOK, event="sms:sent", deviceId="dev_nope").json() == {"message": "Unknown `deviceId`."}
    assert not SmsGateWebhook.objects.exists()


def test_a_webhook_for_one_phone_names_it(as_login, alice_list):
    phone, _token = factories.make_enrolled_device(phone_list=alice_list)
    created = post(as_login, url=HOOK, event="sms:delivered", deviceId=phone.public_id).json()
    assert created["deviceId"] == phone.public_id
    assert as_login.get(f"{BASE}/webhooks").json()[0]["deviceId"] == phone.public_id


def test_a_login_sees_only_its_list_and_a_key_the_whole_account(client, as_login, alice, alice_key, alice_list):
    other_list = factories.make_list(account=alice, name="Other")
    other_phone, _token = factories.make_enrolled_device(phone_list=other_list)
    # A login may not aim a webhook at another list's phone.
    assert post(as_login, url=HOOK, event="sms:sent", deviceId=other_phone.public_id).status_code == 400
    post(as_login, url=HOOK, event="sms:sent", id="listed")

    as_key = client.__class__(HTTP_AUTHORIZATION=f"Bearer {alice_key[1]}")
    assert post(as_key, url=HOOK, event="sms:received", id="everywhere").status_code == 201
    assert sorted(hook["id"] for hook in as_key.get(f"{BASE}/webhooks").json()) == ["everywhere", "listed"]
    assert [hook["id"] for hook in as_login.get(f"{BASE}/webhooks").json()] == ["listed"]
    assert SmsGateWebhook.objects.get(public_id="everywhere").phone_list_id is None
    # The login cannot remove (or take over the id of) the account-wide one.
    assert as_login.delete(f"{BASE}/webhooks/everywhere").status_code == 404
    assert post(as_login, url=HOOK, event="sms:sent", id="everywhere").status_code == 409


def test_another_account_sees_nothing(as_login, bob_key):
    post(as_login, url=HOOK, event="sms:sent", id="mine")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {bob_key[1]}"}
    assert as_login.get(f"{BASE}/webhooks", **headers).json() == []
    assert as_login.delete(f"{BASE}/webhooks/mine", **headers).status_code == 404


def test_settings_show_the_signing_key_and_take_the_one_receivers_use(as_login, alice):
    shown = as_login.get(f"{BASE}/settings").json()["webhooks"]["signing_key"]
    assert len(shown) >= 16 and shown == IpnEndpoint.objects.get(account=alice).smsgate_signing_key
    changed = as_login.patch(f"{BASE}/settings", {"webhooks": {"signing_key": "Ab3dE6gH"}}, "application/json")
    assert changed.status_code == 200 and changed.json()["webhooks"] == {"signing_key": "Ab3dE6gH"}
    refused = as_login.patch(f"{BASE}/settings", {"webhooks": {"retry_count": 3}}, "application/json")
    assert refused.status_code == 400 and "retry_count" in refused.json()["message"]
    # A refused `messages` section in the same request leaves the key as it was.
    body = {"webhooks": {"signing_key": "other"}, "messages": {"limit_period": "Weekly", "limit_value": 5}}
    assert as_login.patch(f"{BASE}/settings", body, "application/json").status_code == 400
    assert as_login.get(f"{BASE}/settings").json()["webhooks"]["signing_key"] == "Ab3dE6gH"


def test_a_token_needs_the_webhook_scopes(as_login):
    issued = as_login.post(f"{BASE}/auth/token", {"scopes": ["webhooks:list"]}, "application/json").json()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issued['accessToken']}"}
    assert as_login.get(f"{BASE}/webhooks", **headers).status_code == 200
    assert (
        as_login.post(f"{BASE}/webhooks", {"url": HOOK, "event": "sms:sent"}, "application/json", **headers).status_code
        == 403
    )


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://[::1", "event": "sms:sent"},
        {"url": "http://x\x00y.example.com/", "event": "sms:sent"},
        {"url": "https://" + "a" * 990 + ".com/", "event": "sms:sent"},
        {"url": HOOK, "event": "sms:sent\x00"},
        {"url": HOOK, "event": "sms:sent", "id": "a\x00b"},
        {"url": HOOK, "event": "sms:sent", "deviceId": "dev_\x00"},
        {"url": HOOK, "event": "sms:sent", "id": "é" * 10},
        {"url": 7, "event": ["sms:sent"]},
        ["not", "an", "object"],
    ],
)
def test_hostile_registrations_get_a_4xx(as_login, body):
    answer = as_login.post(f"{BASE}/webhooks", body, content_type="application/json")
    assert 400 <= answer.status_code < 500, answer.content
    assert not SmsGateWebhook.objects.exists()


def test_hostile_ids_in_the_path_get_a_4xx(as_login):
    assert as_login.delete(f"{BASE}/webhooks/%00").status_code == 400  # no path may hold a NUL
    for webhook_id in ("a" * 300, "%F0%9F%92%A9"):
        assert as_login.delete(f"{BASE}/webhooks/{webhook_id}").status_code == 404
