"""Every panel page answers its owner, sends strangers to sign in, and shows the right things."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, LedgerEntry
from devices import services as device_services
from devices.models import Device, PhoneList
from messaging.models import Message, MessageEvent
from tests import factories


def page_urls(world) -> list[str]:
    """Every GET page of the panel, with Alice's ids where a page needs one."""
    return [
        reverse("dashboard"),
        reverse("dashboard-live"),
        reverse("keys"),
        reverse("key", args=[world["key"].pk]),
        reverse("developers"),
        reverse("developers-code", args=["send"]),
        reverse("developers-code", args=["ipn_receiver"]) + f"?key={world['key'].pk}",
        reverse("api-guide"),
        reverse("credit"),
        reverse("credit-live"),
        reverse("lists"),
        reverse("list", args=[world["list"].token]),
        reverse("phones"),
        reverse("phones-live") + f"?list={world['list'].token}",
        reverse("phone-caps", args=[world["device"].public_id]),
        reverse("virtual-phone"),
        reverse("virtual-phone-status") + f"?device_id={world['device'].public_id}",
        reverse("virtual-phone-offers") + f"?ids={world['message'].public_id}",
        reverse("messages"),
        reverse("messages-live"),
        reverse("message", args=[world["message"].public_id]),
        reverse("message-live", args=[world["message"].public_id]),
        reverse("inbox"),
        reverse("ipn"),
        reverse("ipn-event", args=[world["event"].webhook_id]),
    ]


def test_every_page_answers_its_owner(alice_world, alice_client):
    for url in page_urls(alice_world):
        response = alice_client.get(url)
        assert response.status_code == 200, url


def test_anonymous_visitors_are_sent_to_sign_in(alice_world, client):
    for url in page_urls(alice_world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/login/"), url


def test_the_dashboard_shows_credit_phones_online_and_todays_messages(alice_world, alice_client):
    response = alice_client.get(reverse("dashboard-live"))
    html = response.content.decode()
    assert 'id="stat-credit">99<' in html  # 100 minus the queued message's cost
    assert 'id="stat-online">1<' in html
    assert 'id="today-queued">1<' in html


def test_creating_a_key_shows_its_secret_once_and_stores_only_a_digest(alice, alice_list, alice_client):
    created = alice_client.post(
        reverse("keys"),
        {
            "name": "OTP service",
            "ip_mode": "only",
            "allowed_ips": "203.0.113.7\n2001:db8::/48",
            "default_list": alice_list.pk,
        },
    )
    key = ApiKey.objects.get(account=alice, name="OTP service")
    assert created.status_code == 302 and created.url == reverse("key-created", args=[key.pk])
    assert key.digest not in str(alice_client.session.items())
    response = alice_client.get(created.url)
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert key.allowed_ips == ["203.0.113.7/32", "2001:db8::/48"]
    assert secret.startswith("pf_live_") and secret not in key.digest
    # The examples on that page carry the new key and the list.
    assert secret in response.content.decode() and alice_list.token in response.content.decode()
    # Shown once: reloading the page shows it no more and makes no other key.
    again = alice_client.get(created.url).content.decode()
    assert secret not in again and 'id="secret-gone"' in again
    assert secret not in str(alice_client.session.items())
    assert ApiKey.objects.filter(account=alice).count() == 1
    assert secret not in alice_client.get(reverse("keys")).content.decode()


def test_another_account_cannot_open_a_keys_created_page(alice_world, bob_client):
    assert bob_client.get(reverse("key-created", args=[alice_world["key"].pk])).status_code == 404


def test_an_ip_rule_that_is_not_an_address_is_refused(alice, alice_client):
    response = alice_client.post(reverse("keys"), {"name": "Bad", "ip_mode": "only", "allowed_ips": "300.1.1.1"})
    assert response.status_code == 200
    assert response.context["form"].errors["allowed_ips"]
    assert not ApiKey.objects.filter(account=alice, name="Bad").exists()


def test_editing_a_key_changes_its_ip_rule_origins_and_rate(alice_world, alice_client):
    key = alice_world["key"]
    response = alice_client.post(
        reverse("key", args=[key.pk]),
        {"name": "Shop", "ip_mode": "any", "cors_origins": "https://shop.example", "rate_limit_per_minute": 30},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.allowed_ips, key.cors_origins, key.rate_limit_per_minute, key.default_list) == (
        "Shop",
        [],
        ["https://shop.example"],
        30,
        None,
    )


def test_revoking_a_key_takes_effect(alice_world, alice_client):
    key = alice_world["key"]
    alice_client.post(reverse("key-revoke", args=[key.pk]))
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_new_list_shows_its_pin_a_qr_code_and_a_link_that_fills_the_pin(alice, alice_client):
    response = alice_client.post(reverse("lists"), {"name": "Shop phones", "default_country": "it"}, follow=True)
    phone_list = PhoneList.objects.get(account=alice, name="Shop phones")
    html = response.content.decode()
    assert phone_list.pin in html and phone_list.token in html
    assert "<svg" in html
    assert f"/phone/?pin={phone_list.pin}" in html
    assert phone_list.default_country == "IT"


def test_regenerating_the_pin_changes_it(alice_world, alice_client):
    phone_list = alice_world["list"]
    old = phone_list.pin
    alice_client.post(reverse("list-pin", args=[phone_list.token]))
    phone_list.refresh_from_db()
    assert phone_list.pin != old and len(phone_list.pin) >= 6


def test_list_settings_are_saved(alice_world, alice_client):
    phone_list = alice_world["list"]
    alice_client.post(
        reverse("list", args=[phone_list.token]),
        {
            "name": "Renamed",
            "default_country": "DE",
            "rate_limit_per_minute": 5,
            "rate_limit_per_hour": 100,
            "rate_limit_per_day": "",
            "lease_seconds": 60,
            "default_ttl_seconds": 3600,
        },
    )
    phone_list.refresh_from_db()
    assert (phone_list.name, phone_list.default_country, phone_list.rate_limit_per_minute) == ("Renamed", "DE", 5)
    assert (phone_list.rate_limit_per_hour, phone_list.rate_limit_per_day) == (100, None)
    assert (phone_list.lease_seconds, phone_list.default_ttl_seconds) == (60, 3600)


def test_a_phones_caps_page_shows_its_use_and_sets_its_own_caps(alice_world, alice_client):
    device, phone_list = alice_world["device"], alice_world["list"]
    phone_list.rate_limit_per_day = 500
    phone_list.save(update_fields=["rate_limit_per_day"])
    message = factories.make_message(phone_list=phone_list, status="sent", device=device)
    MessageEvent.objects.create(message=message, status="assigned", device=device)
    url = reverse("phone-caps", args=[device.public_id])
    page = alice_client.get(url).content.decode()
    assert "500" in page and "the list" in page  # the day cap, and whose it is
    answer = alice_client.post(url, {"minute": "", "hour": "0", "day": "20"})
    assert answer.status_code == 200 and "greater than or equal to 1" in answer.content.decode()
    assert alice_client.post(url, {"minute": "", "hour": "30", "day": "20"}).status_code == 302
    device.refresh_from_db()
    assert (device.rate_limit_per_minute, device.rate_limit_per_hour, device.rate_limit_per_day) == (None, 30, 20)
    assert "at its cap" not in alice_client.get(url).content.decode()
    assert "30/h 20/day" in alice_client.get(reverse("phones")).content.decode()


def test_phones_can_be_renamed_disabled_and_removed(alice_world, alice_client):
    device = alice_world["device"]
    alice_client.post(reverse("phone-rename", args=[device.public_id]), {"name": "Counter phone"})
    alice_client.post(reverse("phone-disable", args=[device.public_id]))
    device.refresh_from_db()
    assert (device.name, device.is_enabled) == ("Counter phone", False)
    alice_client.post(reverse("phone-remove", args=[device.public_id]))
    device.refresh_from_db()
    assert device.removed_at is not None
    assert device.public_id not in alice_client.get(reverse("phones-live")).content.decode()


def test_the_phones_table_shows_live_state(alice_world, alice_client):
    html = alice_client.get(reverse("phones-live")).content.decode()
    assert "Alice&#x27;s Pixel" in html and 'data-online="true"' in html


def test_the_phones_table_shows_a_phone_paused_after_a_failed_send(alice_world, alice_client):
    device = alice_world["device"]
    html = alice_client.get(reverse("phones-live")).content.decode()
    assert "paused until" not in html
    with time_machine.travel(datetime(2026, 12, 3, 18, 0, tzinfo=UTC), tick=False):
        device_services.pause_after_failed_send(device=device, now=timezone.now())
        html = alice_client.get(reverse("phones-live")).content.decode()
    assert "paused until 18:00:30" in html


def test_cancelling_a_queued_message_refunds_it(alice_world, alice_client):
    message = alice_world["message"]
    alice_client.post(reverse("message-cancel", args=[message.public_id]))
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert LedgerEntry.objects.filter(message=message, kind=LedgerEntry.Kind.REFUND).count() == 1


def test_the_message_log_filters_by_status(alice_world, alice_client):
    message = alice_world["message"]
    assert message.public_id in alice_client.get(reverse("messages") + "?status=queued").content.decode()
    assert message.public_id not in alice_client.get(reverse("messages") + "?status=sent").content.decode()


def test_the_message_page_shows_the_timeline_and_the_phone(alice_world, alice_client):
    message = alice_world["message"]
    device = alice_world["device"]
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT, device=device)
    message.events.create(status=Message.Status.SENT, device=device)
    html = alice_client.get(reverse("message-live", args=[message.public_id])).content.decode()
    assert "Sent" in html and device.public_id in html


def test_the_inbox_and_the_ledger_show_alices_rows(alice_world, alice_client):
    assert "Alice&#x27;s inbox text" in alice_client.get(reverse("inbox")).content.decode()
    assert alice_world["message"].public_id in alice_client.get(reverse("credit")).content.decode()


def test_ipn_settings_are_saved_and_the_secret_rotates(alice_world, alice_client, settings):
    settings.IPN_ALLOW_PRIVATE_NETWORKS = True
    alice_client.get(reverse("ipn"))
    endpoint = alice_world["account"].ipn
    old_secret = endpoint.secret
    response = alice_client.post(
        reverse("ipn"),
        {"url": "http://127.0.0.1:9/ipn", "enabled": "on", "events": ["message.sent"], "format": "geniosms"},
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.enabled, endpoint.events, endpoint.format) == (
        "http://127.0.0.1:9/ipn",
        True,
        ["message.sent"],
        "geniosms",
    )
    alice_client.post(reverse("ipn-rotate"))
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret and endpoint.previous_secret == old_secret
    assert endpoint.secret in alice_client.get(reverse("ipn")).content.decode()


def test_the_virtual_phone_joins_only_the_accounts_own_lists(alice_world, alice_client, bob_list):
    answer = alice_client.post(reverse("virtual-phone-join"), {"pin": alice_world["list"].pin, "name": "Browser"})
    assert answer.status_code == 200
    device = Device.objects.get(public_id=answer.json()["device_id"])
    assert (device.kind, device.phone_list, answer.json()["ws_url"]) == (
        Device.Kind.BROWSER,
        alice_world["list"],
        "/ws/browser-device/",
    )
    refused = alice_client.post(reverse("virtual-phone-join"), {"pin": bob_list.pin})
    assert refused.status_code == 403
    assert not Device.objects.filter(phone_list=bob_list).exists()


@pytest.mark.parametrize("slug", ["send", "send_bulk", "ipn_receiver", "geniosms"])
def test_code_examples_carry_the_accounts_list_token(alice_world, alice_client, slug):
    html = alice_client.get(reverse("developers-code", args=[slug])).content.decode()
    assert html.count('data-lang-panel="') == 8
    if slug != "ipn_receiver":
        assert alice_world["list"].token in html or slug == "geniosms"
        assert "YOUR_API_KEY" in html


def test_the_developers_page_lists_every_operation_and_every_active_key(alice_world, alice_client):
    from messaging.lib import snippets

    html = alice_client.get(reverse("developers")).content.decode()
    for op in snippets.OPERATIONS:
        assert f'id="op-{op.slug}"' in html
    assert alice_world["key"].name in html and "CODE" in html


def test_the_api_guide_states_every_status_code_as_the_envelope_answers_it(alice_world, alice_client):
    from accounts import envelope, errors
    from messaging.views import STATUS_CODES

    html = alice_client.get(reverse("api-guide")).content.decode()
    primary = {
        errors.InvalidApiKey: 3,
        errors.IpNotAllowed: 4,
        errors.InvalidParameter: 5,
        errors.TargetNotFound: 6,
        errors.MissingTo: 7,
        errors.MissingMsg: 8,
        errors.InsufficientCredit: 9,
    }
    guide = {code: (name, http) for code, name, _meaning, http in STATUS_CODES}
    assert sorted(guide) == list(range(1, 10))
    for error, code in primary.items():
        assert envelope.ERROR_TABLE[error] == (code, guide[code][1]), error
    assert (envelope.OK_IP, envelope.OK_OVER_IP) == (1, 2)
    for _code, (name, _http) in guide.items():
        assert name in html
    assert "webhook-signature" in html and "hmac" in html.lower()


def test_phone_actions_return_only_to_pages_of_this_site(alice_world, alice_client):
    device = alice_world["device"]
    url = reverse("phone-rename", args=[device.public_id])
    assert alice_client.post(url, {"name": "A", "next": "https://evil.example/"}).url == reverse("phones")
    assert alice_client.post(url, {"name": "A", "next": "/\\evil.example"}).url == reverse("phones")
    assert alice_client.post(url, {"name": "A", "next": "/lists/"}).url == "/lists/"


def test_the_list_page_shows_subscribers_and_exports_them_as_csv(alice_world, alice_client, bob_client):
    from django.utils import timezone

    phone_list = alice_world["list"]
    phone_list.subscribers.create(number="+393331230000", source="sms")
    phone_list.subscribers.create(number="+393331230001", source="panel", unsubscribed_at=timezone.now())
    html = alice_client.get(reverse("list", args=[phone_list.token])).content.decode()
    assert "+393331230000" in html and "+393331230001" not in html and "Subscribers (1)" in html
    csv_answer = alice_client.get(reverse("list-subscribers-csv", args=[phone_list.token]))
    rows = csv_answer.content.decode().splitlines()
    assert rows[0] == "number,source,subscribed_at,unsubscribed_at" and len(rows) == 3
    assert rows[1].startswith("'+393331230000,sms,")  # a leading + is not a formula in spreadsheets
    assert bob_client.get(reverse("list-subscribers-csv", args=[phone_list.token])).status_code == 404


def test_a_private_token_for_android_phones_is_shown_once_and_can_be_revoked(alice_world, alice_client, bob_client):
    from devices.models import EnrolmentToken
    from devices.smsgate import services as smsgate

    phone_list = alice_world["list"]
    created = alice_client.post(reverse("list-mobile-token", args=[phone_list.token]))
    assert created.status_code == 302 and created.url == reverse("list", args=[phone_list.token]) + "#android"
    response = alice_client.get(created.url)
    secret = response.context["new_mobile_token"]
    assert secret.startswith("pf_mobile_") and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert smsgate.resolve_private_token(secret=secret).phone_list == phone_list
    # A reload shows it no more and makes no other token.
    assert secret not in alice_client.get(reverse("list", args=[phone_list.token])).content.decode()
    assert EnrolmentToken.objects.filter(phone_list=phone_list).count() == 1

    row = EnrolmentToken.objects.get(phone_list=phone_list, revoked_at__isnull=True)
    revoke = reverse("list-mobile-token-revoke", args=[phone_list.token, row.pk])
    assert bob_client.post(revoke).status_code == 404
    alice_client.post(revoke)
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_every_html_page_has_a_content_security_policy_and_no_inline_code(alice_world, alice_client, client):
    """Fragments that the pages load with fetch are checked too: inline code in them would be
    refused by the browser as well (tests/panel/test_browser.py watches a real one)."""
    import re

    from django.conf import settings

    urls = [(alice_client, url) for url in page_urls(alice_world)] + [(client, "/login/"), (client, "/admin/login/")]
    for who, url in urls:
        response = who.get(url)
        if not response["Content-Type"].startswith("text/html"):
            continue
        assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, url
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"{url}: an inline script"
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html), f"{url}: an inline style or handler"
    # The API docs page (Swagger UI's inline code) is the one left out.
    assert "Content-Security-Policy" not in client.get("/api/docs/")
