"""Through the real API on PostgreSQL: concurrent sends never overdraw the balance."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client

from accounts.models import Account, ApiKey, LedgerEntry
from messaging.models import Message
from tests import factories

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 16


def race(secret: str, texts: list[str]) -> list[dict]:
    """Posts every text at once from WORKERS threads, each with its own DB connection."""
    start = threading.Barrier(WORKERS)

    def worker(chunk: list[str]) -> list[dict]:
        client = Client()
        answers = []
        try:
            start.wait()
            for text in chunk:
                response = client.post(
                    "/api/v1/send", {"to": "+393331234567", "msg": text}, HTTP_AUTHORIZATION=f"Bearer {secret}"
                )
                body = response.json()
                assert body["response"] == str(response.status_code)
                answers.append(body)
        finally:
            connection.close()
        return answers

    chunks = [texts[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [answer for answers in pool.map(worker, chunks) for answer in answers]


def make_sender(credit: int) -> tuple[Account, str]:
    account = factories.make_account(credit=credit)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    # No per-key rate limit in the way of the race.
    ApiKey.objects.filter(account=account).update(rate_limit_per_minute=100_000)
    return account, secret


def assert_ledger_matches(account: Account, initial: int) -> None:
    balance = Account.objects.get(pk=account.pk).balance
    total = LedgerEntry.objects.filter(account=account).exclude(kind="topup").aggregate(total=Sum("amount"))["total"]
    assert total == balance - initial


@pytest.mark.parametrize("db_route", ["direct", "pgbouncer"], indirect=True)
def test_two_hundred_concurrent_sends_with_credit_for_one_hundred(postgres_only, db_route):
    account, secret = make_sender(credit=100)
    answers = race(secret, [f"race {n}" for n in range(200)])
    codes = [a["status_code"] for a in answers]
    assert codes.count("2") == 100
    assert codes.count("9") == 100
    assert all(a["response"] == "402" for a in answers if a["status_code"] == "9")
    assert Account.objects.get(pk=account.pk).balance == 0
    assert Message.objects.filter(account=account).count() == 100
    assert LedgerEntry.objects.filter(account=account, kind="debit").count() == 100
    assert_ledger_matches(account, initial=100)


def test_multi_part_sends_at_the_boundary_are_refused_whole(postgres_only):
    # 3-part texts against 100 credits: 33 fit, 1 credit stays, nothing is partly charged.
    account, secret = make_sender(credit=100)
    answers = race(secret, ["x" * 400] * 60)
    codes = [a["status_code"] for a in answers]
    assert (codes.count("2"), codes.count("9")) == (33, 27)
    assert Account.objects.get(pk=account.pk).balance == 1
    assert_ledger_matches(account, initial=100)
