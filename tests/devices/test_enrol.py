"""POST /api/device/v1/enroll: joining a list with its PIN, and PIN guessing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client

from accounts.lib import tokens
from accounts.models import LoginThrottle
from devices import services
from devices.models import Device

URL = "/api/device/v1/enroll"
CURRENT_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMIT = services.ENROL_ADDRESS_POLICY.max_failures


def enrol(client: Client, pin: str, *, ip: str = "198.51.100.7", **extra: object):
    return client.post(URL, {"pin": pin, "name": "Pixel 7", **extra}, REMOTE_ADDR=ip)


@pytest.fixture
def wrong_pin(alice_list) -> str:
    return "0" * 7 if alice_list.pin != "0" * 7 else "1" * 7


def test_it_enrols_a_phone_with_the_list_pin(client, alice_list):
    answer = enrol(client, alice_list.pin, model="Pixel 7a", sims=[{"slot": 1}])
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"device_id", "device_token", "list", "ws_url"}
    assert body["list"] == alice_list.token and body["ws_url"] == "/ws/device/"
    device = Device.objects.get(public_id=body["device_id"])
    assert (device.name, device.model, device.phone_list_id, device.account_id) == (
        "Pixel 7",
        "Pixel 7a",
        alice_list.pk,
        alice_list.account_id,
    )
    assert tokens.has_valid_checksum(body["device_token"], "pfd")
    assert body["device_token"] not in device.token_digest
    assert services.authenticate_device(token=body["device_token"]) == device


def test_it_accepts_json_and_keeps_leading_zeros(client, alice):
    phone_list = services.create_list(account=alice, name="Zeros", pin="00012345")
    answer = client.post(URL, {"pin": "00012345", "name": "A"}, content_type="application/json")
    assert answer.status_code == 200 and answer.json()["list"] == phone_list.token
    assert enrol(client, "12345").status_code == 403


def test_it_refuses_a_wrong_pin_with_403(client, alice_list, wrong_pin):
    answer = enrol(client, wrong_pin)
    assert answer.status_code == 403
    assert answer.json() == {"error": "Wrong PIN."}
    assert not Device.objects.exists()


def test_it_refuses_a_missing_pin_with_400(client, alice_list):
    answer = client.post(URL, {"name": "x"})
    assert answer.status_code == 400 and "pin" in answer.json()["error"]


def test_it_locks_an_address_out_after_repeated_wrong_pins(client, alice_list, wrong_pin):
    with time_machine.travel(CURRENT_TIME, tick=False):
        assert [enrol(client, wrong_pin).status_code for _ in range(LIMIT)] == [403] * LIMIT
        locked = enrol(client, wrong_pin)
        assert locked.status_code == 429
        assert int(locked["Retry-After"]) >= 15 * 60
        # Even the right PIN is refused while locked out.
        assert enrol(client, alice_list.pin).status_code == 429
        # Another address is not affected.
        assert enrol(client, alice_list.pin, ip="203.0.113.9").status_code == 200


def test_rotating_x_forwarded_for_does_not_reset_the_count(client, alice_list, wrong_pin):
    with time_machine.travel(CURRENT_TIME, tick=False):
        for n in range(LIMIT):
            client.post(URL, {"pin": wrong_pin}, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        answer = client.post(
            URL, {"pin": alice_list.pin}, REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="192.0.2.200"
        )
    assert answer.status_code == 429


def test_ipv6_addresses_of_one_subscriber_share_a_count(client, alice_list, wrong_pin):
    with time_machine.travel(CURRENT_TIME, tick=False):
        for n in range(LIMIT):
            enrol(client, wrong_pin, ip=f"2001:db8:1:2::{n + 1:x}")
        assert enrol(client, alice_list.pin, ip="2001:db8:1:2::ffff").status_code == 429
        assert enrol(client, alice_list.pin, ip="2001:db8:1:3::1").status_code == 200


def test_lockouts_grow_while_the_guessing_goes_on(client, alice_list, wrong_pin):
    waits = []
    now = CURRENT_TIME
    for _round in range(3):
        with time_machine.travel(now, tick=False):
            for _ in range(LIMIT):
                enrol(client, wrong_pin)
            answer = enrol(client, wrong_pin)
            assert answer.status_code == 429
            waits.append(int(answer["Retry-After"]))
        now += timedelta(seconds=waits[-1] + 1)
    assert waits[0] < waits[1] < waits[2]
    with time_machine.travel(now, tick=False):
        assert enrol(client, alice_list.pin).status_code == 200


def test_a_right_pin_does_not_use_up_the_allowance(client, alice_list, wrong_pin):
    with time_machine.travel(CURRENT_TIME, tick=False):
        for _ in range(LIMIT - 1):
            enrol(client, wrong_pin)
        for _ in range(3):
            assert enrol(client, alice_list.pin).status_code == 200
        assert enrol(client, wrong_pin).status_code == 403


def test_wrong_pins_from_everywhere_are_capped_together(client, alice_list, wrong_pin):
    global_limit = services.ENROL_GLOBAL_POLICY.max_failures
    with time_machine.travel(CURRENT_TIME, tick=False):
        for n in range(global_limit):
            assert enrol(client, wrong_pin, ip=f"198.51.{n // 200}.{n % 200}").status_code == 403
        answer = enrol(client, alice_list.pin, ip="203.0.113.50")
    assert answer.status_code == 429 and int(answer["Retry-After"]) > 0


def test_a_regenerated_pin_stops_new_enrolments_but_keeps_enrolled_phones(client, alice_list):
    old_pin = alice_list.pin
    token = enrol(client, old_pin).json()["device_token"]
    new_pin = services.regenerate_pin(phone_list=alice_list)
    assert new_pin != old_pin and len(new_pin) >= 6
    assert enrol(client, old_pin).status_code == 403
    assert enrol(client, new_pin).status_code == 200
    assert services.authenticate_device(token=token) is not None


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_wrong_pins_from_one_address_evaluate_at_most_the_limit(postgres_only, alice_list, wrong_pin):
    def attempt(_n: int) -> int:
        try:
            return enrol(Client(), wrong_pin).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=40) as pool:
        codes = list(pool.map(attempt, range(200)))
    assert codes.count(403) <= LIMIT
    assert codes.count(403) + codes.count(429) == 200
    assert LoginThrottle.objects.get(scope="enrol:ip:198.51.100.7").failures <= LIMIT
