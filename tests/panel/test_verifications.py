"""The Verifications page: every key's verifications and checks with their outcome, and
each key's limits against SMS pumping; the list's verification text."""

from __future__ import annotations

from django.urls import reverse

from messaging.models import VerificationPolicy
from tests import factories
from tests.messaging.verifying import check, code_sent, start


def test_the_page_shows_each_verification_with_its_checks_per_key(alice_world, alice_client, client):
    first_key = alice_world["key"]
    _key, secret = factories.make_api_key(account=alice_world["account"], default_list=alice_world["list"], name="OTP")
    started = start(client, secret)
    check(client, secret, verification_id=started["verification_id"], code="0000000")
    check(client, secret, verification_id=started["verification_id"], code=code_sent(started["verification_id"]))
    html = alice_client.get(reverse("verifications")).content.decode()
    assert started["verification_id"] in html and "OTP" in html
    assert '<span class="badge denied"' in html and '<span class="badge approved"' in html
    assert "1 approved" in html  # the key's last 24 hours
    other = alice_client.get(reverse("verifications") + f"?key={first_key.pk}").content.decode()
    assert started["verification_id"] not in other  # filtered to the other key


def post_limits(client, key, countries):
    """The key's limits form on the page, as a browser posts it."""
    values = {"countries": countries, "per_hour": "40", "number_interval_seconds": "60", "number_per_hour": "3"}
    return client.post(
        reverse("verification-policy", args=[key.pk]), {f"key{key.pk}-{name}": v for name, v in values.items()}
    )


def test_a_keys_limits_are_saved_from_the_page(alice_world, alice_client):
    key = alice_world["key"]
    response = post_limits(alice_client, key, "it, ch;fr")
    assert response.status_code == 302
    policy = VerificationPolicy.objects.get(api_key=key)
    assert (policy.countries, policy.per_hour, policy.number_interval_seconds, policy.number_per_hour) == (
        ["CH", "FR", "IT"],
        40,
        60,
        3,
    )
    assert 'value="CH, FR, IT"' in alice_client.get(reverse("verifications")).content.decode()


def test_bad_limits_are_refused_with_a_sentence(alice_world, alice_client):
    response = post_limits(alice_client, alice_world["key"], "Italy")
    assert response.status_code == 200 and "two-letter codes" in response.content.decode()
    assert not VerificationPolicy.objects.exists()


def test_the_lists_verification_text_is_saved_and_must_hold_the_code(alice_world, alice_client):
    phone_list = alice_world["list"]
    base = {"name": "Main", "default_country": "IT", "lease_seconds": 60, "default_ttl_seconds": 3600}
    alice_client.post(reverse("list", args=[phone_list.token]), {**base, "verify_template": "Codice: {code}"})
    phone_list.refresh_from_db()
    assert phone_list.verify_template == "Codice: {code}"
    refused = alice_client.post(reverse("list", args=[phone_list.token]), {**base, "verify_template": "Codice"})
    assert "must contain {code}" in refused.content.decode()
    phone_list.refresh_from_db()
    assert phone_list.verify_template == "Codice: {code}"
