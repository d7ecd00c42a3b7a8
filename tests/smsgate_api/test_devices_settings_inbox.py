"""Phones, the list's settings, the inbox (and its refresh by SMSGate phones), logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from devices.models import Device
from devices.services import device_group
from devices.smsgate import sse
from messaging.services import inbox
from tests import factories
from tests.smsgate_api.conftest import BASE

pytestmark = pytest.mark.django_db


def test_devices_lists_the_callers_phones_and_delete_removes_one(as_key, alice_list, bob_list, alice_login):
    mine = factories.make_device(phone_list=alice_list, name="Mine")
    factories.make_device(phone_list=bob_list, name="Bob's")
    names = [device["name"] for device in as_key.get(f"{BASE}/devices").json()]
    assert names == ["Pixel 8", "Mine"]
    assert {"id", "name", "createdAt", "updatedAt", "lastSeen"} <= set(as_key.get(f"{BASE}/devices").json()[1])
    assert as_key.delete(f"{BASE}/devices/{mine.public_id}").status_code == 204
    mine.refresh_from_db()
    assert mine.removed_at is not None
    assert [device["name"] for device in as_key.get(f"{BASE}/devices").json()] == ["Pixel 8"]


def test_another_accounts_phone_cannot_be_deleted(as_key, bob_list):
    bobs = factories.make_device(phone_list=bob_list)
    assert as_key.delete(f"{BASE}/devices/{bobs.public_id}").status_code == 404
    bobs.refresh_from_db()
    assert bobs.removed_at is None


def test_a_login_sees_only_its_lists_phones(as_login, alice, alice_list):
    other = factories.make_list(account=alice, name="Other")
    elsewhere = factories.make_device(phone_list=other, name="Elsewhere")
    assert [device["name"] for device in as_login.get(f"{BASE}/devices").json()] == ["Pixel 8"]
    assert as_login.delete(f"{BASE}/devices/{elsewhere.public_id}").status_code == 404


def put(client, body, method="put"):
    return getattr(client, method)(f"{BASE}/settings", data=json.dumps(body), content_type="application/json")


def test_settings_map_the_sending_limit_onto_the_list(as_login, alice_list):
    assert as_login.get(f"{BASE}/settings").json()["messages"]["limit_period"] == "Disabled"
    answer = put(as_login, {"messages": {"limit_period": "PerMinute", "limit_value": 6}}, method="patch")
    assert answer.status_code == 200
    assert answer.json()["messages"] == {"limit_period": "PerMinute", "limit_value": 6, "processing_order": "FIFO"}
    alice_list.refresh_from_db()
    assert alice_list.rate_limit_per_minute == 6
    assert put(as_login, {"messages": {"limitValue": 9}}, method="patch").json()["messages"]["limit_value"] == 9
    assert put(as_login, {}).json()["messages"]["limit_period"] == "Disabled"  # PUT replaces: no limit
    alice_list.refresh_from_db()
    assert alice_list.rate_limit_per_minute is None


def test_settings_set_the_lists_hour_and_day_caps(as_login, alice_list):
    answer = put(as_login, {"messages": {"limit_period": "PerDay", "limit_value": 500}}, method="patch")
    assert answer.json()["messages"]["limit_period"] == "PerDay"
    hour = put(as_login, {"messages": {"limit_period": "PerHour", "limit_value": 40}}, method="patch").json()
    assert hour["messages"] == {"limit_period": "PerHour", "limit_value": 40, "processing_order": "FIFO"}
    alice_list.refresh_from_db()
    assert (alice_list.rate_limit_per_minute, alice_list.rate_limit_per_hour, alice_list.rate_limit_per_day) == (
        None,
        40,
        500,
    )
    # PUT replaces: SMSGate's one limit becomes the list's only cap.
    put(as_login, {"messages": {"limit_period": "PerMinute", "limit_value": 3}})
    alice_list.refresh_from_db()
    assert (alice_list.rate_limit_per_minute, alice_list.rate_limit_per_hour, alice_list.rate_limit_per_day) == (
        3,
        None,
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"messages": {"limit_period": "Sometimes"}},
        {"messages": {"limit_value": -1}},
        {"messages": {"send_interval_min": 5}},
        {"messages": {"processing_order": "LIFO"}},
        {"gateway": {"cloud_url": "https://elsewhere.example"}},
        {"messages": "fast"},
        ["messages"],
    ],
)
def test_settings_phonefleet_cannot_honour_get_400(as_key, body):
    answer = put(as_key, body, method="patch")
    assert answer.status_code == 400
    assert set(answer.json()) == {"message"}


def test_settings_need_a_list(client, alice):
    factories.make_list(account=alice, name="One")
    factories.make_list(account=alice, name="Two")
    _key, secret = factories.make_api_key(account=alice)
    answer = client.get(f"{BASE}/settings", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert answer.status_code == 400
    assert "default list" in answer.json()["message"]


def test_inbox_lists_received_sms_newest_first(as_key, alice_list, bob_list):
    phone = factories.make_device(phone_list=alice_list)
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    inbox.record_incoming_sms(device=phone, sender="+393330000001", text="first", received_at=at)
    inbox.record_incoming_sms(
        device=phone, sender="+393330000002", text="second", received_at=at.replace(hour=10), sim=2
    )
    inbox.record_incoming_sms(
        device=factories.make_device(phone_list=bob_list), sender="+1", text="bob's", received_at=at
    )
    answer = as_key.get(f"{BASE}/inbox")
    assert answer["X-Total-Count"] == "2"
    first = answer.json()[0]
    assert (first["type"], first["sender"], first["contentPreview"], first["simNumber"]) == (
        "SMS",
        "+393330000002",
        "second",
        2,
    )
    assert first["deviceId"] == phone.public_id
    assert [m["contentPreview"] for m in as_key.get(f"{BASE}/inbox", {"to": "2026-12-01T09:30:00Z"}).json()] == [
        "first"
    ]
    assert as_key.get(f"{BASE}/inbox", {"type": "MMS"}).json() == []


def test_inbox_refresh_asks_the_smsgate_phones_to_send_their_sms_again(
    as_login, alice_list, in_memory_layer, django_capture_on_commit_callbacks
):
    phone = Device.objects.get(phone_list=alice_list, kind=Device.Kind.SMSGATE)
    channel = async_to_sync(in_memory_layer.new_channel)()
    async_to_sync(in_memory_layer.group_add)(device_group(phone.pk), channel)
    body = {"since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00+00:00", "deviceId": phone.public_id}
    for path in ("inbox/refresh", "messages/inbox/export", "inbox/export"):
        with django_capture_on_commit_callbacks(execute=True):
            answer = as_login.post(f"{BASE}/{path}", data=json.dumps(body), content_type="application/json")
        assert answer.status_code == 202
        event = async_to_sync(in_memory_layer.receive)(channel)
        assert event["type"] == sse.EXPORT_REQUESTED
        assert json.loads(event["data"]) == {
            "since": "2026-12-01T00:00:00.000+00:00",
            "until": "2026-12-02T00:00:00.000+00:00",
            "messageTypes": "SMS",
            "triggerWebhooks": True,
        }


def test_inbox_refresh_without_smsgate_phones_says_it_cannot(as_key, alice_list):
    factories.make_device(phone_list=alice_list)  # a Phonefleet agent keeps no inbox
    body = {"since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00Z"}
    answer = as_key.post(f"{BASE}/inbox/refresh", data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 400
    assert "SMSGate app" in answer.json()["message"]
    backwards = {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}
    answer = as_key.post(f"{BASE}/inbox/refresh", data=json.dumps(backwards), content_type="application/json")
    assert answer.status_code == 400


def test_logs_are_an_empty_list(as_key):
    answer = as_key.get(f"{BASE}/logs", {"from": timezone.now().isoformat()})
    assert (answer.status_code, answer.json()) == (200, [])
