"""Signing in and out, password reset, and the sign-in throttle."""

from __future__ import annotations

import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.forms import LOGIN_POLICY_IP

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
