"""The panel's guard rails and words: a list's country is a real one, enabling a phone says
it must reconnect, the IPN page tells one story about its state, tests an unsaved URL
without losing it and explains a refused LAN address, the codes stay in the API guide,
and every page has its icon."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts import errors
from devices import services as device_services
from devices.models import Device, PhoneList
from ipn import delivery
from ipn import services as ipn_services
from ipn.models import IpnAttempt, IpnEndpoint
from tests import factories
from tests.ipn.conftest import receiver  # noqa: F401 - fixture
from tests.panel.test_pages import page_urls


@pytest.mark.parametrize("code", ["ZZ", "XX", "I", "ITA", "12"])
def test_a_list_refuses_a_country_no_number_can_be_read_in(alice, alice_client, code):
    response = alice_client.post(reverse("lists"), {"name": "Shop", "default_country": code})
    assert response.context["form"].errors["default_country"] == [
        f"“{code}” is not a country code: use two letters such as IT, DE or US."
    ]
    assert not PhoneList.objects.filter(name="Shop").exists()


def test_a_lists_settings_refuse_an_unknown_country_and_keep_the_old_one(alice_world, alice_client):
    phone_list = alice_world["list"]
    response = alice_client.post(
        reverse("list", args=[phone_list.token]),
        {"name": "X", "default_country": "ZZ", "lease_seconds": 60, "default_ttl_seconds": 3600},
    )
    assert "default_country" in response.context["form"].errors
    phone_list.refresh_from_db()
    assert (phone_list.default_country, phone_list.name) == ("IT", "Alice's phones")


def test_the_service_checks_the_country_for_every_caller(alice, alice_list):
    with pytest.raises(errors.InvalidParameter):
        device_services.create_list(account=alice, name="API", default_country="ZZ")
    with pytest.raises(errors.InvalidParameter):
        device_services.update_list_settings(phone_list=alice_list, default_country="ZZ")
    assert device_services.update_list_settings(phone_list=alice_list, default_country="gb").default_country == "GB"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (Device.Kind.WEBSOCKET, "start it again on the phone"),
        (Device.Kind.BROWSER, "reload its virtual phone page"),
        (Device.Kind.SMSGATE, "signs up again as a new phone"),
    ],
)
def test_enabling_a_phone_says_it_must_reconnect(alice_list, alice_client, kind, words):
    device, _token = factories.make_enrolled_device(phone_list=alice_list, kind=kind)
    toggle = reverse("phone-disable", args=[device.public_id])
    alice_client.post(toggle)
    page = alice_client.post(toggle, {"next": reverse("phones")}, follow=True).content.decode()
    assert "It must reconnect" in page and words in page
    assert Device.objects.get(pk=device.pk).is_enabled


def ipn_page(client) -> str:
    return client.get(reverse("ipn")).content.decode()


def test_an_endpoint_switched_off_for_failing_shows_off_everywhere(alice, alice_client):
    ipn_services.update_endpoint(account=alice, url="https://alice.example/ipn", enabled=True)
    IpnEndpoint.objects.filter(account=alice).update(
        disabled_at=timezone.now(), disabled_reason=delivery.DISABLED_FAILING, failing_since=timezone.now()
    )
    html = ipn_page(alice_client)
    assert 'id="ipn-disabled"' in html and "every attempt failed for 5 days" in html
    assert '<span class="badge disabled">off</span>' in html
    # The box is unticked, as the banner says: ticking it and saving switches callbacks back on.
    box = re.search(r'<input type="checkbox" name="enabled"[^>]*>', html)
    assert box and "checked" not in box.group(0)
    alice_client.post(reverse("ipn"), {"url": "https://alice.example/ipn", "enabled": "on", "format": "standard"})
    endpoint = IpnEndpoint.objects.get(account=alice)
    assert endpoint.enabled and endpoint.disabled_at is None
    assert '<span class="badge active">on</span>' in ipn_page(alice_client)


def test_a_failing_endpoint_says_when_it_will_be_switched_off(alice, alice_client):
    ipn_services.update_endpoint(account=alice, url="https://alice.example/ipn", enabled=True)
    IpnEndpoint.objects.filter(account=alice).update(failing_since=timezone.now() - timedelta(days=1))
    html = ipn_page(alice_client)
    assert '<span class="badge retry">failing</span>' in html
    assert "after 5 days of failures callbacks are switched off" in html
    assert 'id="ipn-disabled"' not in html


def test_a_test_event_goes_to_the_typed_url_and_leaves_the_saved_one(alice, alice_client, receiver):  # noqa: F811
    ipn_services.update_endpoint(account=alice, url="https://saved.example/ipn", enabled=False)
    typed = {"url": receiver.url, "format": "standard", "enabled": "on"}
    with override_settings(IPN_ALLOW_PRIVATE_NETWORKS=True):
        answer = alice_client.post(reverse("ipn-test"), typed, HTTP_X_REQUESTED_WITH="fetch").json()
        assert answer["ok"] and answer["message"].startswith("Your receiver answered HTTP 200")
        # Without the page's script the page comes back with the form as it was typed.
        html = alice_client.post(reverse("ipn-test"), typed).content.decode()
    assert f'value="{receiver.url}"' in html
    assert len(receiver.requests) == 2
    endpoint = IpnEndpoint.objects.get(account=alice)
    assert (endpoint.url, endpoint.enabled) == ("https://saved.example/ipn", False)


def test_a_refused_lan_address_explains_the_setting_that_allows_it(alice, alice_client):
    html = alice_client.post(
        reverse("ipn"), {"url": "http://192.168.1.20/ipn", "enabled": "on", "format": "standard"}
    ).content.decode()
    assert "192.168.1.20 is private" in html and "IPN_ALLOW_PRIVATE_NETWORKS=true" in html
    answer = alice_client.post(
        reverse("ipn-test"), {"url": "http://127.0.0.1:9/ipn", "format": "standard"}, HTTP_X_REQUESTED_WITH="fetch"
    ).json()
    assert not answer["ok"] and "IPN_ALLOW_PRIVATE_NETWORKS=true" in answer["message"]


def test_a_saved_lan_address_refused_at_send_time_explains_it_in_the_log(alice):
    with override_settings(IPN_ALLOW_PRIVATE_NETWORKS=True):  # saved while it was allowed
        ipn_services.update_endpoint(account=alice, url="http://localhost:9/ipn", enabled=False)
    attempt = ipn_services.send_test_event(account=alice)
    assert attempt.outcome == IpnAttempt.Outcome.PERMANENT
    assert "is loopback" in attempt.error and "IPN_ALLOW_PRIVATE_NETWORKS=true" in attempt.error


def test_codes_stay_in_the_api_guide(alice_world, alice_client):
    for url in page_urls(alice_world):
        if url == reverse("api-guide"):
            continue
        html = alice_client.get(url).content.decode()
        assert "over_ip" not in html and "status code 2" not in html.lower(), url
    assert "ok_over_ip" in alice_client.get(reverse("api-guide")).content.decode()


def test_the_code_dialog_of_an_existing_key_says_its_secret_was_shown_once(alice_world, alice_client):
    url = reverse("developers-code", args=["send"]) + f"?key={alice_world['key'].pk}"
    html = alice_client.get(url).content.decode()
    assert 'id="key-secret-note"' in html
    assert "shown only once, when the key was created" in html and "YOUR_API_KEY" in html


def test_every_page_names_its_icon_and_the_icon_is_served(alice_world, alice_client, client):
    for url in [reverse("login"), *page_urls(alice_world)]:
        response = alice_client.get(url)
        if response["Content-Type"].startswith("text/html") and b"<html" in response.content:
            assert b'rel="icon" href="/static/favicon.svg"' in response.content, url
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer.url == "/static/favicon.svg"
