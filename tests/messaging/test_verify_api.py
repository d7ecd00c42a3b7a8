"""Verify: POST /api/v1/verify, POST /api/v1/verify/check, GET /api/v1/verify/<id>
(docs/api.md "Verify"): codes, checks, expiry, restarts and the limits against pumping."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine

from accounts import errors
from accounts.models import Account, ApiKey, LedgerEntry
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Message, Verification, VerificationCheck, VerificationPolicy
from messaging.services import dispatch, verify
from tests import factories
from tests.messaging.verifying import ITALIAN, check, code_sent, masked_text, phone_of, start

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def secret(alice_key):
    return alice_key[1]


def wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


# --- Start -----------------------------------------------------------------------------


def test_it_sends_a_code_through_the_normal_send_path_and_stores_it_masked(client, secret, alice, alice_list):
    body = start(client, secret, ref="signup-7")
    assert (body["response"], body["status_code"]) == ("200", "2")
    assert body["verification_id"].startswith("ver_") and body["message_id"].startswith("msg_")
    assert (body["status"], body["to"], body["length"], body["ref"]) == ("pending", ITALIAN, 6, "signup-7")
    assert (body["parts"], body["cost"]) == (1, 1)
    message = Message.objects.get(public_id=body["message_id"])
    assert message.text == "Your code is ******"
    assert message.sealed_text and "Your code" not in message.sealed_text
    assert (message.status, message.to, message.phone_list_id, message.ref) == (
        "queued",
        ITALIAN,
        alice_list.pk,
        "signup-7",
    )
    assert Account.objects.get(pk=alice.pk).balance == 99
    assert LedgerEntry.objects.get(message=message, kind="debit").reason == "Verification"
    code = code_sent(body["verification_id"])
    assert len(code) == 6
    verification = Verification.objects.get(public_id=body["verification_id"])
    assert code not in verification.code_digest and len(verification.code_digest) == 64


def test_the_phone_gets_the_real_text_and_its_offer_only_the_masked_one(client, secret, alice_list):
    body = start(client, secret, template="Shop: {code} is your code. Not you? Ignore {code}.", length=8)
    offered = dispatch.open_messages_for_device(device=phone_of(alice_list))
    assert [m.text for m in offered] == ["Shop: ******** is your code. Not you? Ignore ********."]
    code = code_sent(body["verification_id"])
    assert len(code) == 8
    held = dispatch.claim_next_messages(device=phone_of(alice_list))  # an SMSGate phone re-fetching its work
    assert held[0].text == f"Shop: {code} is your code. Not you? Ignore {code}."


def test_the_lists_template_is_the_default(client, secret, alice_list):
    alice_list.verify_template = "Il tuo codice è {code}"
    alice_list.save(update_fields=["verify_template"])
    body = start(client, secret, length=4)
    assert masked_text(body["verification_id"]) == "Il tuo codice è ****"


@pytest.mark.parametrize(
    ("params", "status_code", "fragment"),
    [
        ({"to": ""}, "7", "`to`"),
        ({"list": "lst_nope", "length": 99}, "6", "list"),
        ({"length": 3}, "5", "length"),
        ({"length": 11}, "5", "length"),
        ({"ttl": 59}, "5", "ttl"),
        ({"ttl": 1801}, "5", "ttl"),
        ({"template": "Your code"}, "5", "{code}"),
        ({"to": "banana"}, "5", "phone number"),
        ({"ref": "x" * 256}, "5", "ref"),
    ],
)
def test_bad_starts_are_refused_with_a_sentence_and_send_nothing(client, secret, params, status_code, fragment):
    body = start(client, secret, **params)
    assert body["status_code"] == status_code and fragment in body["error"], body
    assert not Verification.objects.exists() and not Message.objects.exists()


def test_a_start_without_credit_answers_9_and_keeps_the_pending_code(client, secret, alice):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        first = start(client, secret)
        code = code_sent(first["verification_id"])
        Account.objects.filter(pk=alice.pk).update(balance=0)
        traveller.shift(dt.timedelta(seconds=31))
        refused = start(client, secret)
        assert (refused["response"], refused["status_code"]) == ("402", "9")
        assert Verification.objects.get().status == "pending"
        assert check(client, secret, verification_id=first["verification_id"], code=code)["status"] == "approved"


# --- Check -------------------------------------------------------------------------------


def test_the_right_code_is_approved_once(client, secret):
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    answer = check(client, secret, verification_id=body["verification_id"], code=code)
    assert (answer["response"], answer["status_code"], answer["status"]) == ("200", "2", "approved")
    assert (answer["verification_status"], answer["attempts"], answer["attempts_left"]) == ("approved", 0, 0)
    again = check(client, secret, verification_id=body["verification_id"], code=code)
    assert again["status"] == "expired"
    verification = Verification.objects.get()
    assert verification.status == "approved" and verification.approved_at is not None
    assert list(verification.checks.values_list("outcome", flat=True)) == ["approved", "expired"]
    assert Message.objects.get().sealed_text == ""  # the sealed text goes when it is decided


def test_a_check_by_number_finds_the_keys_newest_verification(client, secret):
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    answer = check(client, secret, to="333 123 4567", code=code)  # national, in the key's list's country
    assert (answer["status"], answer["verification_id"]) == ("approved", body["verification_id"])


def test_five_wrong_codes_lock_it_and_then_even_the_right_one_is_refused(client, secret):
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    answers = [check(client, secret, verification_id=body["verification_id"], code=wrong(code)) for _ in range(5)]
    assert [a["status"] for a in answers] == ["denied"] * 4 + ["too_many_attempts"]
    assert [a["attempts_left"] for a in answers] == [4, 3, 2, 1, 0]
    assert answers[-1]["verification_status"] == "locked"
    last = check(client, secret, verification_id=body["verification_id"], code=code)
    assert (last["status"], last["attempts"]) == ("too_many_attempts", 5)
    assert Verification.objects.get().status == "locked"
    assert VerificationCheck.objects.filter(outcome="approved").count() == 0


def test_a_code_that_is_not_even_digits_is_a_wrong_code(client, secret):
    body = start(client, secret)
    answer = check(client, secret, verification_id=body["verification_id"], code="abcdef")
    assert (answer["status"], answer["attempts"]) == ("denied", 1)


@pytest.mark.parametrize(
    ("params", "http", "status_code"),
    [({"code": "123456"}, "400", "7"), ({"verification_id": "ver_nope", "code": "1"}, "404", "6"), ({}, "400", "7")],
)
def test_bad_checks_are_refused_in_the_envelope(client, secret, params, http, status_code):
    body = check(client, secret, **params)
    assert (body["response"], body["status_code"]) == (http, status_code) and body["error"]


def test_a_check_without_a_code_is_refused_and_not_counted(client, secret):
    body = start(client, secret)
    answer = check(client, secret, verification_id=body["verification_id"], code=" ")
    assert (answer["response"], answer["status_code"]) == ("400", "5") and "code" in answer["error"]
    assert Verification.objects.get().attempts == 0


def test_another_accounts_verification_is_not_found(client, secret, bob_key):
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    for answer in (
        check(client, bob_key[1], verification_id=body["verification_id"], code=code),
        client.get(f"/api/v1/verify/{body['verification_id']}", HTTP_AUTHORIZATION=f"Bearer {bob_key[1]}").json(),
    ):
        assert (answer["response"], answer["status_code"]) == ("404", "6")
    assert Verification.objects.get().status == "pending"


# --- Expiry (frozen clock) ---------------------------------------------------------------


def test_a_code_checked_after_its_ttl_is_expired(client, secret):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        body = start(client, secret, ttl=60)
        code = code_sent(body["verification_id"])
        traveller.shift(dt.timedelta(seconds=59))
        assert Verification.objects.get().expires_at == CURRENT_TIME + dt.timedelta(seconds=60)
        traveller.shift(dt.timedelta(seconds=1))
        answer = check(client, secret, verification_id=body["verification_id"], code=code)
    assert (answer["status"], answer["verification_status"]) == ("expired", "expired")
    assert Verification.objects.get().ended_at == CURRENT_TIME + dt.timedelta(seconds=60)


def test_the_worker_ends_an_unchecked_verification_and_calls_back_once(client, secret, alice):
    IpnEndpoint.objects.create(account=alice, url="https://alice.example/ipn", enabled=True, secret="whsec_eA==")
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        body = start(client, secret, ttl=120, ref="login-1")
        traveller.shift(dt.timedelta(seconds=119))
        assert verify.expire_one_overdue_verification() is False
        traveller.shift(dt.timedelta(seconds=1))
        assert verify.expire_one_overdue_verification() is True
        assert verify.expire_one_overdue_verification() is False
    assert Verification.objects.get().status == "expired"
    event = IpnEvent.objects.get(type="verify.expired")
    data = json.loads(event.body)["data"]
    assert data["verification_id"] == body["verification_id"] and data["status"] == "expired"
    assert (data["ref"], data["message_id"], data["approved_at"]) == ("login-1", body["message_id"], None)


# --- Restart -----------------------------------------------------------------------------


def test_starting_again_replaces_the_pending_code_and_cancels_its_unsent_sms(client, secret, alice):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        first = start(client, secret)
        old_code = verify.text_for_phone(
            message_id=first["message_id"], sealed_text=Message.objects.get(public_id=first["message_id"]).sealed_text
        )[-6:]
        traveller.shift(dt.timedelta(seconds=30))
        second = start(client, secret)
        assert second["status_code"] == "2", second
        new_code = code_sent(second["verification_id"])
        old = check(client, secret, verification_id=first["verification_id"], code=old_code)
        assert (old["status"], old["verification_status"]) == ("expired", "replaced")
        assert check(client, secret, to=ITALIAN, code=new_code)["status"] == "approved"
    old_message = Message.objects.get(public_id=first["message_id"])
    assert (old_message.status, old_message.sealed_text) == ("cancelled", "")
    assert Account.objects.get(pk=alice.pk).balance == 99  # the cancelled one was refunded


def test_a_replaced_code_that_a_phone_already_sent_stays_sent_but_dead(client, secret):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        first = start(client, secret)
        old_code = code_sent(first["verification_id"])
        traveller.shift(dt.timedelta(seconds=31))
        start(client, secret)
        assert check(client, secret, verification_id=first["verification_id"], code=old_code)["status"] == "expired"
    assert Message.objects.get(public_id=first["message_id"]).status == "assigned"


# --- Limits against SMS pumping --------------------------------------------------------


def test_a_number_gets_one_code_per_30_seconds_and_five_per_hour(client, secret):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        assert start(client, secret)["status_code"] == "2"
        traveller.shift(dt.timedelta(seconds=20))
        response = client.post("/api/v1/verify", {"to": ITALIAN}, HTTP_AUTHORIZATION=f"Bearer {secret}")
        body = response.json()
        assert (body["response"], body["status_code"]) == ("429", "5") and "30 seconds" in body["error"]
        assert response["Retry-After"] == "10"
        for _ in range(4):
            traveller.shift(dt.timedelta(seconds=30))
            assert start(client, secret)["status_code"] == "2"
        traveller.shift(dt.timedelta(seconds=30))
        sixth = client.post("/api/v1/verify", {"to": ITALIAN}, HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert (sixth.status_code, sixth.json()["status_code"]) == (429, "5")
        assert "5 codes in the last hour" in sixth.json()["error"]
        assert sixth["Retry-After"] == str(3600 - 170)  # the first of the five (at 0 s) leaves the hour
        assert start(client, secret, to="+393337654321")["status_code"] == "2"  # another number is fine
    assert Verification.objects.filter(to=ITALIAN).count() == 5


def test_the_key_ceiling_counts_every_number(client, secret, alice_key):
    VerificationPolicy.objects.create(api_key=alice_key[0], per_hour=2)
    with time_machine.travel(CURRENT_TIME, tick=False):
        assert start(client, secret, to="+393330000001")["status_code"] == "2"
        assert start(client, secret, to="+393330000002")["status_code"] == "2"
        third = start(client, secret, to="+393330000003")
    assert (third["response"], third["status_code"]) == ("429", "5") and "2 verifications an hour" in third["error"]


def test_a_policy_sets_the_number_limits_per_key(client, secret, alice_key):
    VerificationPolicy.objects.create(api_key=alice_key[0], number_interval_seconds=0, number_per_hour=2)
    with time_machine.travel(CURRENT_TIME, tick=False):
        assert [start(client, secret)["status_code"] for _ in range(3)] == ["2", "2", "5"]


def test_codes_go_only_to_the_lists_country_unless_the_key_allows_more(client, secret, alice_key):
    refused = start(client, secret, to="+14155552671")
    assert (refused["response"], refused["status_code"]) == ("400", "5")
    assert "only to numbers of IT" in refused["error"] and "US" in refused["error"]
    verify.set_verification_policy(
        api_key=alice_key[0], countries=["it", "us"], per_hour=100, number_interval_seconds=30, number_per_hour=5
    )
    assert start(client, secret, to="+14155552671")["status_code"] == "2"
    assert start(client, secret, to="+447911123456")["status_code"] == "5"  # not listed


@pytest.mark.parametrize("country", ["Italy", "XX", "I"])
def test_a_policy_refuses_countries_that_are_not_codes(alice_key, country):
    with pytest.raises(errors.InvalidParameter):
        verify.set_verification_policy(
            api_key=alice_key[0], countries=[country], per_hour=100, number_interval_seconds=30, number_per_hour=5
        )


def test_limits_are_per_key(client, secret, alice, alice_list):
    _other, other_secret = factories.make_api_key(account=alice, default_list=alice_list, name="Other")
    assert start(client, secret)["status_code"] == "2"
    assert start(client, other_secret)["status_code"] == "2"
    assert ApiKey.objects.filter(account=alice).count() == 2
    assert Verification.objects.filter(status="pending").count() == 2


# --- Read --------------------------------------------------------------------------------


def test_a_verification_shows_its_status_attempts_checks_and_its_sms_delivery(client, secret, alice_list):
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    phone = phone_of(alice_list)
    dispatch.report_message(device=phone, message_id=body["message_id"], status="delivered")
    check(client, secret, verification_id=body["verification_id"], code=wrong(code))
    check(client, secret, verification_id=body["verification_id"], code=code)
    response = client.get(f"/api/v1/verify/{body['verification_id']}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    shown = response.json()
    assert (shown["response"], shown["status_code"], shown["status"]) == ("200", "2", "approved")
    assert (shown["attempts"], shown["attempts_left"], shown["length"]) == (1, 0, 6)
    assert [c["status"] for c in shown["checks"]] == ["denied", "approved"]
    sms = shown["message"]
    assert (sms["message_id"], sms["status"], sms["device_id"]) == (body["message_id"], "delivered", phone.public_id)
    assert sms["sent_at"] and sms["delivered_at"]


# --- Callbacks --------------------------------------------------------------------------


def test_an_approval_is_called_back_in_the_standard_format(client, secret, alice):
    IpnEndpoint.objects.create(account=alice, url="https://alice.example/ipn", enabled=True, secret="whsec_eA==")
    body = start(client, secret, ref="login-9")
    code = code_sent(body["verification_id"])
    check(client, secret, verification_id=body["verification_id"], code=code)
    event = IpnEvent.objects.get(type="verify.approved")
    assert code not in event.body
    data = json.loads(event.body)["data"]
    assert (data["verification_id"], data["status"], data["ref"]) == (body["verification_id"], "approved", "login-9")
    assert data["approved_at"] and event.message_id == Message.objects.get(public_id=body["message_id"]).pk


def test_the_geniosms_format_gets_the_sms_reports_with_the_code_masked_but_no_verify_events(
    client, secret, alice, alice_list
):
    IpnEndpoint.objects.create(
        account=alice, url="https://alice.example/ipn", enabled=True, secret="whsec_eA==", format="geniosms"
    )
    body = start(client, secret)
    code = code_sent(body["verification_id"])
    dispatch.report_message(device=phone_of(alice_list), message_id=body["message_id"], status="sent")
    check(client, secret, verification_id=body["verification_id"], code=code)
    assert list(IpnEvent.objects.values_list("type", flat=True)) == ["message.sent"]
    sent = IpnEvent.objects.get().body
    assert "msg=Your+code+is+%2A%2A%2A%2A%2A%2A" in sent and code not in sent


def test_verify_events_can_be_chosen_like_the_others(client, secret, alice):
    IpnEndpoint.objects.create(
        account=alice, url="https://alice.example/ipn", enabled=True, secret="whsec_eA==", events=["verify.expired"]
    )
    body = start(client, secret)
    check(client, secret, verification_id=body["verification_id"], code=code_sent(body["verification_id"]))
    assert not IpnEvent.objects.exists()
