"""The panel's sign-in middlewares (session, CSRF, user, messages) run on the panel's paths
and not on the public API's, which authenticate every call by key."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.parametrize("path", ["/api/v1/send", "/tools/api.pl"])
def test_the_public_api_opens_no_session_messages_or_csrf_cookie(client, alice_key, path):
    _key, secret = alice_key
    client.cookies["sessionid"] = "someone-elses-session"
    answer = client.post(path, {"api_key": secret, "to": "+393331234567", "msg": "hi"})
    assert answer.json()["status_code"] == "2"
    request = answer.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "_messages")
    assert "CSRF_COOKIE" not in request.META
    assert "csrftoken" not in answer.cookies
    assert answer["X-Frame-Options"] == "DENY"  # the other middlewares still run


def test_a_panel_page_still_gets_its_session_user_and_csrf_cookie(client, db):
    answer = client.get("/login/")
    assert answer.status_code == 200
    request = answer.wsgi_request
    assert hasattr(request, "session")
    assert not request.user.is_authenticated
    assert "csrftoken" in answer.cookies


def test_a_panel_post_without_its_csrf_token_is_still_refused(db):
    answer = Client(enforce_csrf_checks=True).post("/login/", {"username": "a@example.com", "password": "x"})
    assert answer.status_code == 403


def test_a_signed_in_user_still_reaches_the_panel(client, alice):
    client.force_login(alice.users.get())
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.wsgi_request.user.is_authenticated
