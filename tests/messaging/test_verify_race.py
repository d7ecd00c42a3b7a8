"""Verifications under concurrency, through the real API on PostgreSQL: a code is approved
at most once, at most five wrong codes are counted, and concurrent starts for one number
leave one live code."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from accounts.models import Account, ApiKey
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Verification, VerificationCheck
from tests import factories
from tests.messaging.verifying import ITALIAN, code_sent, start

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 16


def race(path: str, secret: str, payloads: list[dict]) -> list[dict]:
    """Posts every payload at once from WORKERS threads, each with its own DB connection."""
    begin = threading.Barrier(WORKERS)

    def worker(chunk: list[dict]) -> list[dict]:
        client = Client()
        answers = []
        try:
            begin.wait()
            for payload in chunk:
                response = client.post(path, payload, HTTP_AUTHORIZATION=f"Bearer {secret}")
                body = response.json()
                assert body["response"] == str(response.status_code)
                answers.append(body)
        finally:
            connection.close()
        return answers

    chunks = [payloads[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [answer for answers in pool.map(worker, chunks) for answer in answers]


@pytest.fixture
def sender():
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    IpnEndpoint.objects.create(account=account, url="https://example.com/ipn", enabled=True, secret="whsec_eA==")
    return account, secret


def test_concurrent_checks_of_the_right_code_approve_it_once(postgres_only, sender):
    _account, secret = sender
    started = start(Client(), secret)
    code = code_sent(started["verification_id"])
    answers = race("/api/v1/verify/check", secret, [{"verification_id": started["verification_id"], "code": code}] * 48)
    statuses = [answer["status"] for answer in answers]
    assert (statuses.count("approved"), statuses.count("expired")) == (1, 47)
    assert VerificationCheck.objects.filter(outcome="approved").count() == 1
    assert IpnEvent.objects.filter(type="verify.approved").count() == 1


def test_concurrent_wrong_codes_are_counted_five_times_and_no_more(postgres_only, sender):
    _account, secret = sender
    started = start(Client(), secret)
    code = code_sent(started["verification_id"])
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    payloads = [{"verification_id": started["verification_id"], "code": wrong}] * 47
    payloads.insert(40, {"verification_id": started["verification_id"], "code": code})  # the right one, late
    answers = race("/api/v1/verify/check", secret, payloads)
    statuses = [answer["status"] for answer in answers]
    verification = Verification.objects.get()
    if statuses.count("approved"):
        # The right code won a place among the first five tries: no wrong code after it counted.
        assert statuses.count("approved") == 1 and verification.status == "approved"
        assert verification.attempts == statuses.count("denied") <= 4
    else:
        assert (verification.status, verification.attempts) == ("locked", 5)
        assert statuses.count("denied") == 4 and statuses.count("too_many_attempts") == 44


def test_concurrent_starts_for_one_number_leave_one_live_code(postgres_only, sender):
    account, secret = sender
    answers = race("/api/v1/verify", secret, [{"to": ITALIAN}] * 32)
    codes = [answer["status_code"] for answer in answers]
    assert (codes.count("2"), codes.count("5")) == (1, 31)
    assert all(answer["response"] == "429" for answer in answers if answer["status_code"] == "5")
    assert Verification.objects.filter(to=ITALIAN).count() == 1
    assert Account.objects.get(pk=account.pk).balance == 99
