"""/metrics on the production stack, read with prometheus_client's text parser: gunicorn
(two workers, each replaced after a few requests), Daphne holding phones and a worker
delivering callbacks, all counting into one PROMETHEUS_MULTIPROC_DIR. Whichever process
answers, the counters are the totals of all of them, and state comes from the database."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import ApiKey
from devices.models import Device
from ipn import services as ipn_services
from ipn.models import IpnEvent
from messaging.models import Message
from tests import factories
from tests.production.conftest import api, enrol, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SENT = 20  # to the list whose three phones send everything
WAITING = 4  # to a list without phones
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server_url: str) -> Samples:
    with urllib.request.urlopen(f"{server_url}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def counters(samples: Samples) -> Samples:
    """The counted series (histograms too): what the processes add up."""
    return {key: v for key, v in samples.items() if key[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def test_every_process_answers_with_the_counts_of_all_of_them(stack, tmp_path, raw_phones, receiver, private_ok):
    folder = tmp_path / "metrics"
    stack.env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    account = factories.make_account(credit=SENT + WAITING)
    busy, idle = factories.make_list(account=account, name="Busy"), factories.make_list(account=account, name="Idle")
    key, secret = factories.make_api_key(account=account, default_list=busy)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    ipn_services.update_endpoint(account=account, url=receiver.url, enabled=True)

    # Every gunicorn worker is replaced after 4 requests: many processes count in turn.
    web = stack.gunicorn("gunicorn", flags=("--max-requests", "4", "--log-level", "info"))
    phones = stack.daphne("daphne")
    stack.worker()
    tokens = [enrol(phones.url, busy.pin, f"phone {n}") for n in range(3)]
    raw_phones.start(phones.url, tokens, mode="send")
    online = Device.objects.filter(phone_list=busy, is_connected=True)
    wait_for(lambda: online.count() == 3, timeout=20, what="three phones online")

    for n in range(SENT + WAITING):
        body = {"to": f"+39333{n:07d}", "msg": f"metrics {n}", **({"list": idle.token} if n >= SENT else {})}
        status, answer, _ = api("POST", f"{web.url}/api/v1/send", secret=secret, body=body)
        assert status == 200, answer
    sent = Message.objects.filter(phone_list=busy, status="sent")
    wait_for(lambda: sent.count() == SENT, timeout=60, what="every message sent")
    delivered = IpnEvent.objects.filter(account=account, status="delivered")
    wait_for(lambda: delivered.count() == SENT, timeout=60, what="every `sent` callback delivered")

    from_web, from_phones = scrape(web.url), scrape(phones.url)
    assert counters(from_web) == counters(from_phones)
    for samples in (from_web, from_phones):
        assert value(samples, "phonefleet_messages_accepted_total") == SENT + WAITING  # gunicorn workers
        assert value(samples, "phonefleet_credit_debits_total") == SENT + WAITING
        assert value(samples, "phonefleet_credits_debited_total") == SENT + WAITING
        assert value(samples, "phonefleet_dispatch_latency_seconds_count") == SENT  # Daphne
        assert value(samples, "phonefleet_dispatch_latency_seconds_bucket", le="+Inf") == SENT
        assert value(samples, "phonefleet_assignments_total") == SENT
        assert value(samples, "phonefleet_reports_total", status="sent") == SENT
        assert value(samples, "phonefleet_ipn_attempts_total", outcome="success") == SENT  # the worker
        assert value(samples, "phonefleet_phones_connected", list=busy.token) == 3
        assert value(samples, "phonefleet_phones_available", list=busy.token) == 3
        assert value(samples, "phonefleet_phones_connected", list=idle.token) == 0
        assert value(samples, "phonefleet_queue_depth", list=idle.token) == WAITING
        assert value(samples, "phonefleet_queue_depth", list=busy.token) == 0
        assert value(samples, "phonefleet_ipn_backlog") == 0
        assert value(samples, "phonefleet_workers_alive") == 1

    # Files by slot, not by pid: fewer than the processes that counted.
    boots = web.log.read_text().count("Booting worker with pid")
    files = sorted(p.name for p in Path(folder).glob("counter_*.db"))
    assert boots >= 6, web.tail()
    assert len(files) < boots, files
