"""What `GET /settings` tells the app, and `PATCH /user/password` (the app's change-password screen)."""

from __future__ import annotations

import json

import pytest

from devices import services as device_services
from devices.models import EnrolmentToken
from devices.smsgate import services as smsgate

URL = "/api/mobile/v1"


@pytest.fixture
def signup(alice_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    return smsgate.register_device(credential=smsgate.resolve_private_token(secret=secret), name="Pixel")


def get_settings(client, registration) -> dict:
    answer = client.get(f"{URL}/settings", HTTP_AUTHORIZATION=f"Bearer {registration.token}")
    assert answer.status_code == 200
    return answer.json()


def test_the_rate_limit_is_always_sent_and_disabled_when_the_list_has_none(client, signup, alice_list):
    """The app imports only the keys it is sent: a limit left out stays on the phone."""
    assert get_settings(client, signup)["messages"] == {"limit_period": "Disabled", "limit_value": 0}
    device_services.update_list_settings(phone_list=alice_list, rate_limit_per_minute=6)
    assert get_settings(client, signup)["messages"] == {"limit_period": "PerMinute", "limit_value": 6}
    device_services.update_list_settings(phone_list=alice_list, rate_limit_per_minute=None)
    assert get_settings(client, signup)["messages"] == {"limit_period": "Disabled", "limit_value": 0}


def change_password(client, registration, current: str, new: str, token: str | None = None) -> int:
    body = json.dumps({"currentPassword": current, "newPassword": new})
    return client.patch(
        f"{URL}/user/password",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token or registration.token}",
    ).status_code


def can_sign_in(login: str, password: str) -> bool:
    try:
        smsgate.resolve_login(login=login, password=password, ip="192.0.2.1")
    except smsgate.InvalidCredentials:
        return False
    return True


def test_a_phone_changes_its_login_password(client, signup):
    new = "correcthorsebatterystaple"
    assert signup.password is not None
    assert change_password(client, signup, signup.password, new) == 204
    assert can_sign_in(signup.login, new)
    assert not can_sign_in(signup.login, signup.password)
    # Back again, as the reference server's own test does.
    assert change_password(client, signup, new, signup.password) == 204
    assert can_sign_in(signup.login, signup.password)


def test_a_wrong_current_password_or_a_short_new_one_changes_nothing(client, signup):
    assert signup.password is not None
    digest = EnrolmentToken.objects.get(prefix=f"login:{signup.login}").digest
    assert change_password(client, signup, "not the password", "correcthorsebatterystaple") == 401
    assert change_password(client, signup, signup.password, "short") == 400
    assert change_password(client, signup, signup.password, "correcthorsebatterystaple", token="pfd_wrong") == 401
    assert EnrolmentToken.objects.get(prefix=f"login:{signup.login}").digest == digest
    assert can_sign_in(signup.login, signup.password)


def test_a_phone_cannot_change_the_password_of_another_lists_login(client, signup, bob_list):
    _row, secret = smsgate.create_enrolment_token(phone_list=bob_list)
    bob = smsgate.register_device(credential=smsgate.resolve_private_token(secret=secret), name="Bob's")
    assert bob.password is not None
    assert change_password(client, signup, bob.password, "correcthorsebatterystaple") == 401
    assert can_sign_in(bob.login, bob.password)
