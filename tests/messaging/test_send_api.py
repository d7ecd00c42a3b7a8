"""POST/GET /api/v1/send and its GenioSms twin /tools/api.pl (docs/api.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.db import connection

from accounts.models import Account, LedgerEntry
from devices import services as device_services
from messaging.models import Message
from tests import factories

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
GOOD_NUMBER = "+393331234567"


@pytest.fixture
def send(client, alice_key):
    """POST /api/v1/send as a form with Alice's key (override anything by keyword)."""
    _key, secret = alice_key

    def _send(path="/api/v1/send", **params):
        data = {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hello"}
        data.update(params)
        return client.post(path, {k: v for k, v in data.items() if v is not None})

    return _send


def assert_envelope(response, http_status, status_code):
    body = response.json()
    assert response.status_code == http_status
    assert (body["response"], body["status_code"]) == (str(http_status), str(status_code))
    if http_status >= 400:
        assert body["error"]
    return body


# --- Success: codes 1 and 2 ---------------------------------------------------------


def receive(layer, channel, timeout=5.0):
    """The next event on the channel, or a failure instead of a hang."""

    async def _receive():
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(_receive)()


def test_it_queues_a_message_and_answers_code_2_when_the_key_allows_any_ip(send, alice):
    body = assert_envelope(send(), 200, 2)
    assert body["message_id"].startswith("msg_")
    assert body["parts"] == 1
    assert body["records"] == []
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.status, message.to, message.text, message.account_id) == ("queued", GOOD_NUMBER, "Hello", alice.pk)


def test_it_answers_code_1_when_the_callers_ip_is_on_the_allow_list(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, allowed_ips=["127.0.0.0/8"])
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"})
    assert_envelope(response, 200, 1)


def test_response_and_status_code_are_strings(send):
    body = send().json()
    assert isinstance(body["response"], str)
    assert isinstance(body["status_code"], str)


# --- Every refusal with its HTTP status ------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "", "pf_live_nonsense", "pf_live_" + "A" * 36])
def test_a_missing_or_wrong_key_is_code_3_with_http_401(send, api_key):
    assert_envelope(send(api_key=api_key), 401, 3)


def test_a_revoked_key_is_code_3(send, alice_key):
    from accounts import services

    services.revoke_api_key(key=alice_key[0])
    assert_envelope(send(), 401, 3)


def test_an_ip_outside_the_allow_list_is_code_4_with_http_403(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, allowed_ips=["203.0.113.0/24"])
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"})
    assert_envelope(response, 403, 4)
    assert not Message.objects.exists()


def test_a_forged_forwarded_for_header_does_not_pass_the_allow_list(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, allowed_ips=["203.0.113.7"])
    response = client.post(
        "/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"}, HTTP_X_FORWARDED_FOR="203.0.113.7"
    )
    assert_envelope(response, 403, 4)


@pytest.mark.parametrize(
    "params",
    [
        {"to": "hello"},
        {"to": "12"},
        {"ttl": "0"},
        {"ttl": "abc"},
        {"ttl": str(8 * 24 * 3600)},
        {"sim": "9"},
        {"sim": "first"},
        {"send_at": "tomorrow"},
        {"send_at": "2099-01-01T00:00:00Z"},
        {"ref": "r" * 256},
        {"msg": "a" * (153 * 10 + 1)},
    ],
)
def test_an_invalid_parameter_is_code_5_with_http_400(send, params, alice):
    assert_envelope(send(**params), 400, 5)
    assert not Message.objects.exists()
    assert Account.objects.get(pk=alice.pk).balance == 100


def test_ten_parts_are_accepted_and_eleven_refused(send):
    assert assert_envelope(send(msg="a" * 153 * 10), 200, 2)["parts"] == 10
    body = assert_envelope(send(msg="a" * (153 * 10 + 1)), 400, 5)
    assert "11 SMS parts" in body["error"]


def test_an_unknown_list_token_is_code_6_with_http_400(send):
    assert_envelope(send(list="lst_doesnotexist"), 400, 6)


def test_another_accounts_list_token_is_code_6(send, bob_list):
    body = assert_envelope(send(list=bob_list.token), 400, 6)
    assert bob_list.name not in body["error"]


def test_another_accounts_device_is_code_6(send, bob_list):
    bobs_phone = factories.make_device(phone_list=bob_list, online=True)
    assert_envelope(send(device_id=bobs_phone.public_id), 400, 6)


def test_a_key_without_a_default_list_needs_a_list_or_device(client, alice):
    _key, secret = factories.make_api_key(account=alice)
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"})
    assert_envelope(response, 400, 6)


@pytest.mark.parametrize("to", [None, "", "   "])
def test_a_missing_or_empty_number_is_code_7_with_http_400(send, to):
    assert_envelope(send(to=to), 400, 7)


@pytest.mark.parametrize("msg", [None, "", "  "])
def test_a_missing_or_empty_text_is_code_8_with_http_400(send, msg):
    assert_envelope(send(msg=msg), 400, 8)


def test_not_enough_credit_is_code_9_with_http_402(client, alice_list):
    poor = factories.make_account(credit=0)
    poor_list = factories.make_list(account=poor)
    _key, secret = factories.make_api_key(account=poor, default_list=poor_list)
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"})
    assert_envelope(response, 402, 9)
    assert not Message.objects.exists()


# --- Order of checks: key (3), IP (4), target (6), to (7), msg (8), params (5), credit (9) ---


def test_a_bad_key_wins_over_a_missing_number(client, db):
    response = client.post("/api/v1/send", {"api_key": "pf_live_wrong", "msg": "Hi"})
    assert_envelope(response, 401, 3)


def test_a_bad_ip_wins_over_a_missing_text(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, allowed_ips=["198.51.100.1"])
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "list": "lst_nope"})
    assert_envelope(response, 403, 4)


def test_a_bad_target_wins_over_a_missing_number(send):
    assert_envelope(send(list="lst_nope", to=None, msg=None), 400, 6)


def test_a_bad_target_wins_over_a_malformed_optional_parameter(send):
    assert_envelope(send(list="lst_nope", sim="first", ttl="abc"), 400, 6)


def test_a_missing_number_wins_over_a_missing_text(send):
    assert_envelope(send(to=None, msg=None), 400, 7)


def test_a_missing_number_wins_over_a_malformed_ttl(send):
    assert_envelope(send(to="", ttl="abc"), 400, 7)


def test_a_missing_text_wins_over_a_bad_number_and_ttl(send):
    assert_envelope(send(to="not a number", msg="", ttl="-5"), 400, 8)


def test_a_bad_parameter_wins_over_missing_credit(client, db):
    poor = factories.make_account(credit=0)
    poor_list = factories.make_list(account=poor)
    _key, secret = factories.make_api_key(account=poor, default_list=poor_list)
    response = client.post("/api/v1/send", {"api_key": secret, "to": "nope", "msg": "Hi"})
    assert_envelope(response, 400, 5)


# --- Ways to call it -------------------------------------------------------------------


def test_it_accepts_a_get_with_a_query_string(client, alice_key):
    _key, secret = alice_key
    response = client.get("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi via GET"})
    body = assert_envelope(response, 200, 2)
    assert Message.objects.get(public_id=body["message_id"]).text == "Hi via GET"


def test_it_accepts_a_json_body_with_numbers_as_numbers(client, alice_key, alice_list):
    _key, secret = alice_key
    response = client.post(
        "/api/v1/send",
        {"api_key": secret, "list": alice_list.token, "to": 393331234567, "msg": "JSON", "sim": 2, "ttl": 600},
        content_type="application/json",
    )
    body = assert_envelope(response, 200, 2)
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.to, message.sim) == (GOOD_NUMBER, 2)
    assert message.expires_at - message.send_at == dt.timedelta(seconds=600)


def test_it_accepts_the_key_as_a_bearer_header(client, alice_key):
    _key, secret = alice_key
    response = client.post("/api/v1/send", {"to": GOOD_NUMBER, "msg": "Hi"}, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert_envelope(response, 200, 2)


def test_api_and_custom_are_aliases_of_api_key_and_ref(client, alice_key):
    _key, secret = alice_key
    response = client.post("/api/v1/send", {"api": secret, "to": GOOD_NUMBER, "msg": "Hi", "custom": "order-42"})
    body = assert_envelope(response, 200, 2)
    assert Message.objects.get(public_id=body["message_id"]).ref == "order-42"


def test_a_national_number_is_read_in_the_lists_default_country(client, alice):
    uk_list = factories.make_list(account=alice, country="GB")
    _key, secret = factories.make_api_key(account=alice, default_list=uk_list)
    response = client.post("/api/v1/send", {"api_key": secret, "to": "07700 900123", "msg": "Hi"})
    body = assert_envelope(response, 200, 2)
    assert body["to"] == "+447700900123"


def test_a_pinned_device_uses_its_own_lists_country(client, alice):
    uk_list = factories.make_list(account=alice, country="GB")
    phone = factories.make_device(phone_list=uk_list)
    _key, secret = factories.make_api_key(account=alice)
    response = client.post(
        "/api/v1/send", {"api_key": secret, "device_id": phone.public_id, "to": "07700900123", "msg": "Hi"}
    )
    body = assert_envelope(response, 200, 2)
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.to, message.pinned_device_id, message.phone_list_id) == ("+447700900123", phone.pk, uk_list.pk)


def test_a_device_of_another_list_than_the_one_given_is_code_6(send, alice):
    other_list = factories.make_list(account=alice)
    phone = factories.make_device(phone_list=other_list)
    assert_envelope(send(list=factories.make_list(account=alice).token, device_id=phone.public_id), 400, 6)


# --- GenioSms drop-in: /tools/api.pl ----------------------------------------------------

GENIOSMS_UA = "GenioSmsBot/1.0 (+http://api.geniosms.net)"


def test_geniosms_get_flow_queues_a_message_and_answers_the_string_envelope(client, alice_key):
    _key, secret = alice_key
    response = client.get(
        "/tools/api.pl",
        {"api": secret, "to": "3331234567", "msg": "Ciao dal PHP", "custom": "abc"},
        HTTP_USER_AGENT=GENIOSMS_UA,
    )
    body = assert_envelope(response, 200, 2)
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.status, message.to, message.text, message.ref) == ("queued", GOOD_NUMBER, "Ciao dal PHP", "abc")


def test_geniosms_form_post_flow_queues_a_message_and_answers_the_string_envelope(client, alice_key):
    _key, secret = alice_key
    response = client.post(
        "/tools/api.pl",
        f"api={secret}&to=3331234567&msg=Ciao%20%F0%9F%91%8B&custom=xyz",
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
        HTTP_USER_AGENT=GENIOSMS_UA,
    )
    body = assert_envelope(response, 200, 2)
    message = Message.objects.get(public_id=body["message_id"])
    assert (message.text, message.ref, message.encoding, message.parts) == ("Ciao 👋", "xyz", "ucs2", 1)


def test_geniosms_refusals_answer_http_200_with_the_refusal_in_the_envelope(client, alice_key):
    """GenioSms's compiled samples never read the body of a non-2xx answer."""
    _key, secret = alice_key
    refusals = [
        ({"api": "wrong"}, "401", "3"),
        ({"api": secret, "to": ""}, "400", "7"),
        ({"api": secret, "to": "not a number"}, "400", "5"),
    ]
    for params, response_code, status_code in refusals:
        response = client.get("/tools/api.pl", {"to": "3331234567", "msg": "x", **params})
        body = response.json()
        assert response.status_code == 200
        assert (body["response"], body["status_code"]) == (response_code, status_code)
        assert body["error"]
    # /api/v1/send keeps the real statuses.
    assert_envelope(client.get("/api/v1/send", {"api": "wrong", "to": "3331234567", "msg": "x"}), 401, 3)
    assert not Message.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/send", "/tools/api.pl"])
@pytest.mark.parametrize(
    ("raw_to", "number"),
    [("+41791234567", "+41791234567"), ("+447700900123", "+447700900123"), ("+393331234567", "+393331234567")],
)
def test_an_unencoded_plus_in_a_form_body_is_read_as_international(client, alice_key, path, raw_to, number):
    _key, secret = alice_key
    # The exact body GenioSms's Java POST writes: nothing is encoded, so `+` means a space.
    body = f"to={raw_to}&msg=Ciao a tutti&api={secret}".encode()
    response = client.post(path, body, content_type="application/x-www-form-urlencoded")
    answer = assert_envelope(response, 200, 2)
    assert Message.objects.get(public_id=answer["message_id"]).to == number


# --- Records and offers -------------------------------------------------------------------


def test_records_name_every_online_phone_of_the_list(send, alice_list):
    pixel = factories.make_device(phone_list=alice_list, name="Pixel 7", online=True)
    moto = factories.make_device(phone_list=alice_list, name="Moto G", online=True)
    factories.make_device(phone_list=alice_list, name="Drawer phone", online=False)
    body = assert_envelope(send(), 200, 2)
    assert body["records"] == [
        {"device_id": pixel.public_id, "device_name": "Pixel 7", "received": True},
        {"device_id": moto.public_id, "device_name": "Moto G", "received": True},
    ]


def test_a_pinned_message_records_only_that_phone(send, alice_list):
    factories.make_device(phone_list=alice_list, name="Other", online=True)
    pinned = factories.make_device(phone_list=alice_list, name="Pinned", online=True)
    body = assert_envelope(send(device_id=pinned.public_id), 200, 2)
    assert [r["device_id"] for r in body["records"]] == [pinned.public_id]


def test_with_no_phone_online_the_message_stays_queued_with_empty_records(send, alice_list):
    factories.make_device(phone_list=alice_list, online=False)
    body = assert_envelope(send(), 200, 2)
    assert body["records"] == []
    assert Message.objects.get(public_id=body["message_id"]).status == "queued"


def test_the_offer_reaches_the_lists_offer_group_after_commit(
    send, alice_list, django_capture_on_commit_callbacks, in_memory_layer
):
    # What is sent to the group (tests/messaging/test_offers.py covers the Redis path).
    layer = in_memory_layer
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(device_services.offer_group(alice_list.pk), channel)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = send(msg="Offer me").json()
    assert len(callbacks) == 1
    event = receive(layer, channel)
    assert event["type"] == "message.offer"
    assert event["frame"] == {
        "type": "offer",
        "message_id": body["message_id"],
        "to": GOOD_NUMBER,
        "msg": "Offer me",
        "parts": 1,
        "sim": None,
    }
    assert json.loads(event["text"]) == event["frame"]  # serialised once for every phone
    assert event["list"] == alice_list.pk  # for the listener of each server process


@time_machine.travel(CURRENT_TIME, tick=False)
def test_a_scheduled_message_is_not_offered_now_and_expires_after_its_ttl(send, alice_list):
    factories.make_device(phone_list=alice_list, online=True)
    later = CURRENT_TIME + dt.timedelta(hours=2)
    body = assert_envelope(send(send_at=later.isoformat(), ttl="3600"), 200, 2)
    assert body["records"] == []
    message = Message.objects.get(public_id=body["message_id"])
    assert message.send_at == later
    assert message.expires_at == later + dt.timedelta(hours=1)


@time_machine.travel(CURRENT_TIME, tick=False)
def test_without_ttl_the_lists_default_ttl_applies(send, alice_list):
    body = send().json()
    message = Message.objects.get(public_id=body["message_id"])
    assert message.expires_at == CURRENT_TIME + dt.timedelta(seconds=alice_list.default_ttl_seconds)


# --- Credit --------------------------------------------------------------------------------


def test_credit_for_every_part_is_taken_on_accept_and_booked(send, alice):
    body = assert_envelope(send(msg="x" * 200), 200, 2)
    assert body["parts"] == 2
    assert Account.objects.get(pk=alice.pk).balance == 98
    debit = LedgerEntry.objects.get(kind="debit", message__public_id=body["message_id"])
    assert (debit.amount, debit.balance_after) == (-2, 98)


def test_the_price_per_part_multiplies_the_cost(send, alice):
    Account.objects.filter(pk=alice.pk).update(price_per_part=3)
    body = assert_envelope(send(msg="x" * 200), 200, 2)
    assert body["cost"] == 6
    assert Account.objects.get(pk=alice.pk).balance == 94


def test_a_three_part_message_with_two_credits_left_is_refused_whole(client, db):
    account = factories.make_account(credit=2)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "x" * 400})
    assert_envelope(response, 402, 9)
    assert Account.objects.get(pk=account.pk).balance == 2
    assert not Message.objects.exists()
    assert not LedgerEntry.objects.filter(kind="debit").exists()
    response = client.post("/api/v1/send", {"api_key": secret, "to": GOOD_NUMBER, "msg": "x" * 300})
    assert_envelope(response, 200, 2)
    assert Account.objects.get(pk=account.pk).balance == 0


# --- Query budget, CORS, limits -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_with_a_cached_key_and_list_stays_within_its_query_budget(send, alice_list, django_assert_num_queries):
    factories.make_device(phone_list=alice_list, online=True)
    send(to="+393330000001")  # warms the key and list caches
    if connection.vendor == "postgresql":
        # One statement takes the credit, inserts the message, books the debit and reads
        # the online phones for `records`. No BEGIN/COMMIT: it is atomic alone.
        budget = 1
    else:
        # SQLite has no data-modifying CTE: savepoint, debit UPDATE, message INSERT, ledger
        # INSERT, release; then the online phones.
        budget = 6
    with django_assert_num_queries(budget):
        assert send().status_code == 200


def test_a_changed_list_country_applies_to_the_next_send_despite_the_cache(send, alice_list):
    assert send(to="07700900123").json()["to"] == "+3907700900123"
    alice_list.default_country = "GB"
    alice_list.save(update_fields=["default_country"])
    assert assert_envelope(send(to="07700900123"), 200, 2)["to"] == "+447700900123"


def test_the_answer_is_the_json_envelope_whatever_the_client_accepts(client, alice_key):
    _key, secret = alice_key
    data = {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"}
    for accept in ("text/html", "application/xml", "*/*", ""):
        response = client.post("/api/v1/send", data, HTTP_ACCEPT=accept)
        assert response["Content-Type"].startswith("application/json")
        assert_envelope(response, 200, 2)
    refused = client.get(
        "/api/v1/send", {"api_key": "pf_live_nope", "to": GOOD_NUMBER, "msg": "Hi"}, HTTP_ACCEPT="text/html"
    )
    assert_envelope(refused, 401, 3)


def test_cors_echoes_the_keys_own_origin(client, alice, alice_list):
    _key, secret = factories.make_api_key(account=alice, default_list=alice_list, cors_origins=["https://shop.example"])
    data = {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hi"}
    allowed = client.post("/api/v1/send", data, HTTP_ORIGIN="https://shop.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    other = client.post("/api/v1/send", data, HTTP_ORIGIN="https://evil.example")
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other


@time_machine.travel(CURRENT_TIME, tick=False)  # the limit's window is one clock minute
def test_the_per_key_rate_limit_answers_429_with_retry_after(send, alice_key):
    from accounts import services

    services.update_api_key(key=alice_key[0], rate_limit_per_minute=2)
    assert send().status_code == 200
    assert send().status_code == 200
    response = send()
    assert_envelope(response, 429, 5)
    assert int(response["Retry-After"]) >= 1


def test_a_body_over_the_size_limit_is_a_4xx_not_a_5xx(client, alice_key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    _key, secret = alice_key
    response = client.post(
        "/api/v1/send",
        {"to": GOOD_NUMBER, "msg": "x" * 5000},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert_envelope(response, 400, 5)
    assert not Message.objects.exists()


def test_a_json_array_body_is_code_5(client, alice_key):
    _key, secret = alice_key
    response = client.post(
        "/api/v1/send", [1, 2], content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert_envelope(response, 400, 5)


def test_the_daily_spending_cap_refuses_with_code_9(send, alice):
    Account.objects.filter(pk=alice.pk).update(daily_spend_cap=3)
    assert assert_envelope(send(msg="x" * 200), 200, 2)["parts"] == 2
    assert_envelope(send(msg="x" * 200), 402, 9)
    assert Account.objects.get(pk=alice.pk).balance == 98
    assert Message.objects.count() == 1


@pytest.mark.parametrize("path", ["/api/v1/send", "/tools/api.pl"])
def test_head_sends_nothing(client, alice_key, path):
    key, secret = alice_key
    balance = Account.objects.get(pk=key.account_id).balance
    response = client.head(path, {"api_key": secret, "to": GOOD_NUMBER, "msg": "Hello"})
    assert response.status_code == 405
    assert "HEAD" not in response["Allow"]
    assert not Message.objects.exists()
    assert Account.objects.get(pk=key.account_id).balance == balance
