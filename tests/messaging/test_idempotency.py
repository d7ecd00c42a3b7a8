"""Idempotency-Key on the send endpoints (Stripe's semantics)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from django.db import connection
from django.test import Client

from accounts.models import Account, LedgerEntry
from messaging.models import IdempotencyRecord, Message
from messaging.services import idempotency
from tests import factories

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def post(client, alice_key):
    _key, secret = alice_key

    def _post(key, path="/api/v1/send", secret=secret, **params):
        data = {"to": "+393331234567", "msg": "Your code is 1234"}
        data.update(params)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = key
        return client.post(path, data, content_type="application/json", **headers)

    return _post


def test_a_retry_with_the_same_key_replays_the_stored_answer_and_sends_nothing_new(post, alice):
    first = post("otp-1")
    again = post("otp-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Message.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="debit").count() == 1
    assert Account.objects.get(pk=alice.pk).balance == 99


def test_the_same_key_with_a_different_body_is_422(post):
    post("otp-1")
    response = post("otp-1", to="+393339999999")
    assert (response.status_code, response.json()["status_code"]) == (422, "5")
    assert Message.objects.count() == 1


def test_a_key_is_scoped_to_the_api_key(post, alice, alice_list):
    _other, other_secret = factories.make_api_key(account=alice, default_list=alice_list)
    post("shared")
    assert post("shared", secret=other_secret).status_code == 200
    assert Message.objects.count() == 2


def test_a_key_is_scoped_to_the_endpoint(post):
    post("k")
    bulk = post("k", path="/api/v1/send/bulk", recipients=[{"to": "+393331234567"}])
    assert bulk.status_code == 200
    assert Message.objects.count() == 2


def test_a_request_still_running_makes_a_retry_409(post, alice_key):
    IdempotencyRecord.objects.create(
        api_key=alice_key[0],
        endpoint="send",
        key="busy",
        request_hash=idempotency.request_fingerprint({"to": "+393331234567", "msg": "Your code is 1234"}),
    )
    response = post("busy")
    assert (response.status_code, response.json()["status_code"]) == (409, "5")
    assert not Message.objects.exists()


def test_a_key_longer_than_255_characters_is_400(post):
    assert post("k" * 255).status_code == 200
    response = post("k" * 256)
    assert (response.status_code, response.json()["status_code"]) == (400, "5")


def test_validation_failures_are_not_stored(post):
    missing = post("fix-me", to="")
    assert missing.json()["status_code"] == "7"
    assert not IdempotencyRecord.objects.exists()
    # Corrected and retried with the same key: it runs.
    assert post("fix-me").status_code == 200


def test_a_credit_refusal_is_stored_and_replayed(client, db):
    account = factories.make_account(credit=0)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}", "HTTP_IDEMPOTENCY_KEY": "poor"}
    data = {"to": "+393331234567", "msg": "x"}
    first = client.post("/api/v1/send", data, **headers)
    assert first.status_code == 402
    Account.objects.filter(pk=account.pk).update(balance=10)
    again = client.post("/api/v1/send", data, **headers)
    assert (again.status_code, again.json()) == (402, first.json())


def test_a_key_is_kept_24_hours_then_free_again(post):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        first = post("daily")
        traveller.shift(dt.timedelta(hours=23, minutes=59))
        assert post("daily").json() == first.json()
        traveller.shift(dt.timedelta(minutes=2))
        assert post("daily").json()["message_id"] != first.json()["message_id"]
    assert Message.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_identical_posts_make_one_message_and_one_debit(postgres_only, alice_key, alice):
    _key, secret = alice_key
    start = threading.Barrier(50)

    def one(_n):
        try:
            start.wait()
            return Client().post(
                "/api/v1/send",
                {"to": "+393331234567", "msg": "once"},
                HTTP_AUTHORIZATION=f"Bearer {secret}",
                HTTP_IDEMPOTENCY_KEY="race",
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(one, range(50)))
    assert Message.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="debit").count() == 1
    assert Account.objects.get(pk=alice.pk).balance == 99
    stored = IdempotencyRecord.objects.get(key="race")
    for response in responses:
        assert response.status_code in (200, 409)
        if response.status_code == 200:
            assert response.json() == stored.response_body
    assert sum(r.status_code == 200 for r in responses) >= 1


def test_the_purge_step_deletes_only_records_past_retention(post):
    with time_machine.travel(CURRENT_TIME, tick=False) as traveller:
        post("old")
        traveller.shift(dt.timedelta(hours=20))
        post("recent")
        traveller.shift(dt.timedelta(hours=5))
        assert idempotency.purge_idempotency_records() is False
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
