"""Signing in and out, password reset, and the sign-in throttle."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.forms import LOGIN_POLICY_IP, RESET_LIMIT_PER_ADDRESS, RESET_LIMIT_PER_EMAIL
from accounts.models import User

PASSWORD = "correct horse battery"


def sign_in(client, password, email="alice@example.com", ip="198.51.100.7"):
    return client.post(reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_it_signs_in_and_out(alice, client):
    assert sign_in(client, PASSWORD).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("dashboard")).status_code == 302


def test_a_wrong_password_is_refused(alice, client):
    response = sign_in(client, "wrong")
    assert response.status_code == 200
    assert client.get(reverse("dashboard")).status_code == 302


def test_after_too_many_wrong_passwords_even_the_right_one_is_refused(alice, client):
    for _ in range(LOGIN_POLICY_IP.max_failures):
        sign_in(client, "wrong")
    response = sign_in(client, PASSWORD)
    assert response.status_code == 200
    assert "Too many sign-in attempts" in response.content.decode()
    assert client.get(reverse("dashboard")).status_code == 302


def test_the_lockout_ends(alice, client):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(LOGIN_POLICY_IP.max_failures + 1):
            sign_in(client, "wrong")
    with time_machine.travel(start + LOGIN_POLICY_IP.window * 2, tick=False):
        assert sign_in(client, PASSWORD).status_code == 302


def test_another_address_is_not_locked_out_by_the_first(bob, client):
    for _ in range(LOGIN_POLICY_IP.max_failures):
        sign_in(client, "wrong", email="nobody@example.com", ip="198.51.100.7")
    assert sign_in(client, PASSWORD, email="bob@example.com", ip="198.51.100.8").status_code == 302


def test_a_right_password_does_not_use_up_attempts(alice, client):
    for _ in range(LOGIN_POLICY_IP.max_failures + 2):
        assert sign_in(client, PASSWORD).status_code == 302
        client.post(reverse("logout"))


def test_password_reset_sends_a_link_that_sets_a_new_password(alice, client):
    client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/password-reset/" in line).strip()
    path = link[link.index("/password-reset/") :]
    form = client.get(path, follow=True)
    response = client.post(
        form.redirect_chain[-1][0], {"new_password1": "a new long pass 42", "new_password2": "a new long pass 42"}
    )
    assert response.status_code == 302
    assert sign_in(client, "a new long pass 42").status_code == 302


def test_a_lockout_ends_when_it_says_it_ends(alice, client):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(LOGIN_POLICY_IP.max_failures):
            sign_in(client, "wrong")
        page = sign_in(client, PASSWORD).content.decode()
    said = re.search(r"Try again in (\d+) minutes", page)
    assert said is not None
    minutes = int(said.group(1))
    assert minutes == LOGIN_POLICY_IP.first_lockout.total_seconds() // 60
    with time_machine.travel(start + timedelta(minutes=minutes, seconds=1), tick=False):
        assert sign_in(client, PASSWORD).status_code == 302
        client.post(reverse("logout"))
        # A fresh count: one more wrong password is just wrong, not a new lockout.
        assert "Too many" not in sign_in(client, "wrong").content.decode()
        assert sign_in(client, PASSWORD).status_code == 302


def test_the_admin_sign_in_is_throttled_like_the_panels(db, client):
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    url = reverse("admin:login")
    for _ in range(LOGIN_POLICY_IP.max_failures):
        assert (
            client.post(url, {"username": "root", "password": "wrong"}, REMOTE_ADDR="198.51.100.7").status_code == 200
        )
    refused = client.post(url, {"username": "root", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7")
    assert refused.status_code == 200 and "Too many sign-in attempts" in refused.content.decode()
    assert client.post(url, {"username": "root", "password": PASSWORD}, REMOTE_ADDR="198.51.100.8").status_code == 302


def test_password_reset_is_rate_limited_per_address_and_per_email(alice, client):
    def reset(email, ip):
        return client.post(reverse("password_reset"), {"email": email}, REMOTE_ADDR=ip)

    for n in range(RESET_LIMIT_PER_ADDRESS):
        assert reset(f"someone{n}@example.com", "198.51.100.7").status_code == 302
    refused = reset("alice@example.com", "198.51.100.7")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many reset requests" in refused.content.decode()
    for n in range(RESET_LIMIT_PER_EMAIL):
        assert reset("alice@example.com", f"203.0.113.{n}").status_code == 302
    assert reset("alice@example.com", "203.0.113.99").status_code == 429
    assert len(mail.outbox) == RESET_LIMIT_PER_EMAIL


def test_the_reset_form_applies_djangos_password_validators(alice, client):
    client.post(reverse("password_reset"), {"email": "alice@example.com"})
    link = next(line for line in mail.outbox[0].body.splitlines() if "/password-reset/" in line).strip()
    form = client.get(link[link.index("/password-reset/") :], follow=True)
    answer = client.post(form.redirect_chain[-1][0], {"new_password1": "short", "new_password2": "short"})
    assert answer.status_code == 200 and "too short" in answer.content.decode()
    assert sign_in(client, "short").status_code == 200  # not changed
    assert sign_in(client, PASSWORD).status_code == 302


def test_reset_links_are_built_on_site_url_when_it_is_set(alice, client, settings):
    settings.SITE_URL = "https://sms.example.com"
    client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert "https://sms.example.com/password-reset/" in mail.outbox[0].body
    assert "testserver" not in mail.outbox[0].body
