"""Deactivating an account stops its API keys, phones and panel sessions at once."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from accounts import errors
from accounts import services as account_services
from accounts.models import Account
from config.asgi import application
from devices import services as device_services
from messaging.services import accept, dispatch
from tests import factories

PASSWORD = "correct horse battery"


def call(secret: str) -> int:
    return Client().get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


def test_a_deactivated_accounts_keys_stop_at_once_though_they_were_cached(alice, alice_key):
    _key, secret = alice_key
    assert call(secret) == 200  # the key is now cached
    device_services.deactivate_account(account=alice)
    assert call(secret) == 401
    device_services.reactivate_account(account=alice)
    assert call(secret) == 200


def test_a_deactivated_account_sends_nothing_even_through_a_stale_cached_key(alice, alice_key):
    key = account_services.authenticate_api_key(secret=alice_key[1])
    Account.objects.filter(pk=alice.pk).update(is_active=False)  # behind the cache's back
    with pytest.raises(errors.InvalidApiKey, match="deactivated"):
        accept.accept_message(key=key, list_token=None, device_id=None, to="+393331234567", text="hi")


def test_the_operator_deactivates_an_account_from_the_admin(alice, alice_key, admin_client):
    answer = admin_client.post(
        reverse("admin:accounts_account_changelist"), {"action": "deactivate", "_selected_action": [alice.pk]}
    )
    assert answer.status_code == 302
    alice.refresh_from_db()
    assert not alice.is_active
    assert call(alice_key[1]) == 401


def test_a_deactivated_accounts_panel_sessions_end_and_it_cannot_sign_in(alice):
    client = Client()
    assert client.post(reverse("login"), {"username": "alice@example.com", "password": PASSWORD}).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200
    device_services.deactivate_account(account=alice)
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("login"))
    answer = client.post(reverse("login"), {"username": "alice@example.com", "password": PASSWORD})
    assert answer.status_code == 200 and "deactivated" in answer.content.decode()


def test_a_deactivated_accounts_phones_claim_nothing_and_cannot_connect(alice_list):
    device, token = factories.make_enrolled_device(phone_list=alice_list)
    message = factories.make_message(phone_list=alice_list)
    device_services.deactivate_account(account=alice_list.account)
    assert dispatch.claim_message(device=device, message_id=message.public_id) is None
    assert device_services.authenticate_device(token=token) is None


@pytest.mark.django_db(transaction=True)
async def test_a_deactivated_accounts_phone_connection_is_closed_at_once(alice_list):
    _device, token = await database_sync_to_async(factories.make_enrolled_device)(phone_list=alice_list)
    ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    await database_sync_to_async(device_services.deactivate_account)(account=alice_list.account)
    assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": device_services.CLOSE_DISABLED}
    await ws.disconnect()
