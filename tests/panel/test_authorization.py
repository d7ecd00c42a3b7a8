"""Bob signs in and tries every page and action with Alice's ids: each is not found,
nothing of Alice's changes, and nothing of hers appears in what Bob sees."""

from __future__ import annotations

from django.urls import reverse

from accounts.models import ApiKey
from devices.models import Device, EnrolmentToken, PhoneList
from ipn.models import IpnAttempt
from messaging.models import Message, VerificationPolicy


def alices_pages(world) -> list[str]:
    return [
        reverse("key", args=[world["key"].pk]),
        reverse("developers-code", args=["send"]) + f"?key={world['key'].pk}",
        reverse("list", args=[world["list"].token]),
        reverse("list-subscribers-csv", args=[world["list"].token]),
        reverse("phones-live") + f"?list={world['list'].token}",
        reverse("phone-caps", args=[world["device"].public_id]),
        reverse("message", args=[world["message"].public_id]),
        reverse("message-live", args=[world["message"].public_id]),
        reverse("ipn-event", args=[world["event"].webhook_id]),
    ]


def alices_actions(world) -> list[tuple[str, dict]]:
    return [
        (reverse("key", args=[world["key"].pk]), {"name": "pwned", "ip_mode": "any"}),
        (reverse("key-revoke", args=[world["key"].pk]), {}),
        (
            reverse("list", args=[world["list"].token]),
            {"name": "pwned", "default_country": "IT", "lease_seconds": 60, "default_ttl_seconds": 3600},
        ),
        (reverse("list-pin", args=[world["list"].token]), {}),
        (reverse("list-mobile-token", args=[world["list"].token]), {}),
        (reverse("phone-rename", args=[world["device"].public_id]), {"name": "pwned"}),
        (reverse("phone-disable", args=[world["device"].public_id]), {}),
        (reverse("phone-remove", args=[world["device"].public_id]), {}),
        (reverse("phone-caps", args=[world["device"].public_id]), {"hour": "1"}),
        (reverse("message-cancel", args=[world["message"].public_id]), {}),
        (reverse("ipn-replay", args=[world["event"].webhook_id]), {}),
        (
            reverse("verification-policy", args=[world["key"].pk]),
            {f"key{world['key'].pk}-{name}": "1" for name in ("per_hour", "number_per_hour")}
            | {f"key{world['key'].pk}-number_interval_seconds": "0"},
        ),
    ]


def test_bob_cannot_open_any_of_alices_objects(alice_world, bob_client):
    for url in alices_pages(alice_world):
        response = bob_client.get(url)
        assert response.status_code == 404, url
        assert b"Alice" not in response.content, url


def test_bob_cannot_change_any_of_alices_objects(alice_world, bob_client):
    pin = alice_world["list"].pin
    for url, data in alices_actions(alice_world):
        assert bob_client.post(url, data).status_code == 404, url
    key = ApiKey.objects.get(pk=alice_world["key"].pk)
    assert key.name != "pwned" and key.revoked_at is None
    phone_list = PhoneList.objects.get(pk=alice_world["list"].pk)
    assert phone_list.name != "pwned" and phone_list.pin == pin
    device = Device.objects.get(pk=alice_world["device"].pk)
    assert device.name != "pwned" and device.is_enabled and device.removed_at is None
    assert device.rate_limit_per_hour is None
    assert Message.objects.get(pk=alice_world["message"].pk).status == Message.Status.QUEUED
    assert IpnAttempt.objects.filter(event=alice_world["event"]).count() == 1
    assert not EnrolmentToken.objects.filter(phone_list=alice_world["list"]).exists()
    assert not VerificationPolicy.objects.exists()


def test_bobs_own_pages_show_nothing_of_alices(alice_world, bob_client):
    secrets = [
        alice_world["list"].token,
        alice_world["list"].pin,
        alice_world["device"].public_id,
        alice_world["message"].public_id,
        alice_world["event"].webhook_id,
        alice_world["key"].prefix,
        "Alice",
    ]
    for name in [
        "dashboard",
        "dashboard-live",
        "keys",
        "developers",
        "api-guide",
        "credit",
        "lists",
        "phones",
        "phones-live",
        "messages",
        "messages-live",
        "inbox",
        "verifications",
        "ipn",
        "virtual-phone",
        "credit-live",
    ]:
        html = bob_client.get(reverse(name)).content.decode()
        for secret in secrets:
            assert secret not in html, (name, secret)
    html = bob_client.get(reverse("messages") + f"?q={alice_world['message'].public_id}").content.decode()
    assert f'id="row-{alice_world["message"].public_id}"' not in html and "No messages match." in html


def test_the_virtual_phone_cannot_join_alices_list_with_her_pin(alice_world, bob_client):
    answer = bob_client.post(reverse("virtual-phone-join"), {"pin": alice_world["list"].pin})
    assert answer.status_code == 403
    assert Device.objects.filter(phone_list=alice_world["list"]).count() == 1


def test_a_staff_user_without_an_account_is_sent_to_the_admin(db, client, django_user_model):
    staff = django_user_model.objects.create_user(username="operator", password="x", is_staff=True)
    client.force_login(staff)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response.url == reverse("admin:index")
