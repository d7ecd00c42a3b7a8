"""Every state-changing panel action refuses a POST without the CSRF token."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey


def test_every_action_refuses_a_post_without_a_csrf_token(alice_world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice_world["account"].users.get())
    actions = [
        reverse("keys"),
        reverse("key", args=[alice_world["key"].pk]),
        reverse("key-revoke", args=[alice_world["key"].pk]),
        reverse("lists"),
        reverse("list", args=[alice_world["list"].token]),
        reverse("list-pin", args=[alice_world["list"].token]),
        reverse("list-mobile-token", args=[alice_world["list"].token]),
        reverse("phone-rename", args=[alice_world["device"].public_id]),
        reverse("phone-disable", args=[alice_world["device"].public_id]),
        reverse("phone-remove", args=[alice_world["device"].public_id]),
        reverse("phone-caps", args=[alice_world["device"].public_id]),
        reverse("message-cancel", args=[alice_world["message"].public_id]),
        reverse("ipn"),
        reverse("ipn-rotate"),
        reverse("ipn-test"),
        reverse("ipn-replay", args=[alice_world["event"].webhook_id]),
        reverse("virtual-phone-join"),
        reverse("virtual-phone-leave"),
        reverse("virtual-phone-test"),
        reverse("send-preview"),
        reverse("dashboard"),
        reverse("messages"),
        reverse("logout"),
    ]
    for url in actions:
        assert client.post(url, {"name": "x"}).status_code == 403, url
    assert ApiKey.objects.get(pk=alice_world["key"].pk).revoked_at is None


def test_the_sign_in_form_needs_its_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "alice@example.com", "password": "correct horse battery"})
    assert response.status_code == 403


def test_a_post_with_the_token_is_accepted(alice_world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice_world["account"].users.get())
    client.get(reverse("keys"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("key-revoke", args=[alice_world["key"].pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=alice_world["key"].pk).revoked_at is not None
