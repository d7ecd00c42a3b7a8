"""Callers of SMSGate's client API: Alice's list login (Basic) and her API key (Bearer)."""

from __future__ import annotations

import base64

import pytest

from devices.smsgate import services as smsgate_devices

BASE = "/3rdparty/v1"


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@pytest.fixture
def alice_login(alice_list) -> tuple[str, str]:
    """The login and password an SMSGate phone's sign-up returned for Alice's list."""
    credential, _secret = smsgate_devices.create_enrolment_token(phone_list=alice_list)
    registration = smsgate_devices.register_device(credential=credential, name="Pixel 8")
    assert registration.password is not None
    return registration.login, registration.password


@pytest.fixture
def as_login(client, alice_login):
    """Django's test client with Alice's list login (Basic)."""
    client.defaults["HTTP_AUTHORIZATION"] = basic(*alice_login)
    return client


@pytest.fixture
def as_key(client, alice_key):
    """Django's test client with Alice's API key (Bearer)."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {alice_key[1]}"
    return client
