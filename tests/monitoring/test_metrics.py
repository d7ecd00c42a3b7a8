"""/metrics in the process: who may read it, what the database state gauges say, and that
each counter moves where its event happens. The text is read with prometheus_client's own
parser. (Several processes adding up: test_metrics_live.py.)"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.lib import tokens
from devices.models import Device
from ipn import delivery
from ipn import services as ipn_services
from ipn.models import IpnEvent
from messaging.models import Message
from messaging.services import callbacks, dispatch, heartbeats
from monitoring import checks
from tests import factories
from tests.live import ROOT

pytestmark = pytest.mark.django_db

CURRENT_TIME = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client, **headers: str) -> Samples:
    """Every sample of a scrape from the loopback address, by (name, labels)."""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after[key] - before.get(key, 0.0)


# --- Who may read it ------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "127.8.9.10"])
def test_loopback_callers_may_read_it_when_no_token_is_set(client, address):
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200


def test_other_callers_are_refused_with_a_sentence_saying_how(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert (
        response.content == b"/metrics answers loopback callers only; set METRICS_TOKEN to scrape it from elsewhere.\n"
    )


def test_a_forged_forwarded_for_from_a_direct_caller_does_not_make_it_loopback(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403


def test_behind_a_trusted_proxy_on_this_host_the_real_client_decides(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1  # nginx on this host: every socket address is 127.0.0.1
    outside = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    local = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert (outside.status_code, local.status_code) == (403, 200)


def test_with_a_token_set_every_caller_needs_it_and_any_address_may_use_it(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    missing = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    wrong = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer nope")
    right = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    lower = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="bearer s3cret-metrics-token")
    assert (missing.status_code, wrong.status_code, right.status_code, lower.status_code) == (401, 401, 200, 200)
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert missing.content == b"/metrics needs `Authorization: Bearer <METRICS_TOKEN>`.\n"
    assert b"phonefleet_messages_accepted_total" in right.content


# --- State read from the database ---------------------------------------------------------


def make_phone(phone_list, *, seen_ago: float, available: bool = True, enabled: bool = True) -> Device:
    device = factories.make_device(phone_list=phone_list, online=True)
    Device.objects.filter(pk=device.pk).update(
        last_seen_at=timezone.now() - timedelta(seconds=seen_ago), is_available=available, is_enabled=enabled
    )
    return device


def make_event(account, *, status: str = IpnEvent.Status.PENDING, due_in: float = 0) -> IpnEvent:
    return IpnEvent.objects.create(
        webhook_id=tokens.public_id("evt"),
        account=account,
        type="message.sent",
        body="{}",
        status=status,
        next_attempt_at=timezone.now() + timedelta(seconds=due_in),
    )


def test_phones_queue_callbacks_and_workers_are_read_from_the_database(client):
    account = factories.make_account(credit=100)
    busy, idle = factories.make_list(account=account, name="Busy"), factories.make_list(account=account, name="Idle")
    with time_machine.travel(CURRENT_TIME, tick=False):
        for _ in range(3):
            factories.make_message(phone_list=busy)
        factories.make_message(phone_list=busy, send_at=CURRENT_TIME + timedelta(hours=1))  # scheduled: not due
        factories.make_message(phone_list=busy, status=Message.Status.ASSIGNED)  # held by a phone
        heartbeats.record_heartbeat(worker="host:1", started_at=CURRENT_TIME)
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=30), tick=False):
        make_phone(busy, seen_ago=5)
        make_phone(busy, seen_ago=5, available=False)
        make_phone(busy, seen_ago=120)  # its presence lapsed (R26)
        make_phone(busy, seen_ago=5, enabled=False)
        for due_in in (-20, -5, 600):
            make_event(account, due_in=due_in)
        make_event(account, status=IpnEvent.Status.DELIVERED, due_in=-60)
        samples = scrape(client)

    assert value(samples, "phonefleet_database_up") == 1
    assert value(samples, "phonefleet_phones_connected", list=busy.token) == 2
    assert value(samples, "phonefleet_phones_available", list=busy.token) == 1
    assert value(samples, "phonefleet_phones_connected", list=idle.token) == 0
    assert value(samples, "phonefleet_queue_depth", list=busy.token) == 3
    assert value(samples, "phonefleet_queue_oldest_age_seconds", list=busy.token) == 30
    assert value(samples, "phonefleet_queue_depth", list=idle.token) == 0
    assert value(samples, "phonefleet_ipn_backlog") == 2
    assert value(samples, "phonefleet_ipn_pending") == 3
    assert value(samples, "phonefleet_ipn_backlog_oldest_age_seconds") == 20
    assert value(samples, "phonefleet_worker_heartbeat_age_seconds") == 30
    assert value(samples, "phonefleet_workers_alive") == 1


# --- Counters, where the events happen ---------------------------------------------------


def test_an_accepted_send_counts_the_message_and_its_debit(client, django_capture_on_commit_callbacks):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/send", {"to": "+393331234567", "msg": "x" * 200}, HTTP_AUTHORIZATION=f"Bearer {secret}"
        )
    assert response.status_code == 200, response.content
    after = scrape(client)
    assert grew(before, after, "phonefleet_messages_accepted_total") == 1
    assert grew(before, after, "phonefleet_credit_debits_total") == 1
    assert grew(before, after, "phonefleet_credits_debited_total") == 2  # two parts at 1 credit


def test_a_claim_observes_the_dispatch_latency_of_a_first_assignment_only(client, django_capture_on_commit_callbacks):
    phone_list = factories.make_list(account=factories.make_account())
    phone = factories.make_device(phone_list=phone_list, online=True)
    with time_machine.travel(CURRENT_TIME, tick=False):
        message = factories.make_message(phone_list=phone_list, cost=0)
    before = scrape(client)
    with time_machine.travel(CURRENT_TIME + timedelta(seconds=2), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert dispatch.claim_message(device=phone, message_id=message.public_id) is not None
    first = scrape(client)
    latency = "phonefleet_dispatch_latency_seconds"
    assert grew(before, first, f"{latency}_count") == 1
    assert grew(before, first, f"{latency}_sum") == 2
    assert grew(before, first, f"{latency}_bucket", le="2.5") == 1
    assert grew(before, first, f"{latency}_bucket", le="1.0") == 0
    assert grew(before, first, "phonefleet_assignments_total") == 1

    # Its lease lapses and another claim takes it: an assignment, not a dispatch latency.
    Message.objects.filter(pk=message.pk).update(status=Message.Status.QUEUED)
    with time_machine.travel(CURRENT_TIME + timedelta(minutes=3), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert dispatch.claim_message(device=phone, message_id=message.public_id) is not None
    second = scrape(client)
    assert grew(first, second, "phonefleet_assignments_total") == 1
    assert grew(first, second, f"{latency}_count") == 0


def test_reports_and_worker_endings_are_counted_by_outcome(client, django_capture_on_commit_callbacks):
    phone_list = factories.make_list(account=factories.make_account())
    phone = factories.make_device(phone_list=phone_list, online=True)
    held = factories.make_message(phone_list=phone_list, status=Message.Status.ASSIGNED, device=phone)
    overdue = factories.make_message(phone_list=phone_list, ttl=timedelta(seconds=-1))
    before = scrape(client)
    dispatch.report_message(device=phone, message_id=held.public_id, status="sent")
    dispatch.report_message(device=phone, message_id=held.public_id, status="delivered")
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.expire_one_overdue_message()
    after = scrape(client)
    assert Message.objects.get(pk=overdue.pk).status == Message.Status.EXPIRED
    assert grew(before, after, "phonefleet_reports_total", status="sent") == 1
    assert grew(before, after, "phonefleet_reports_total", status="delivered") == 1
    assert grew(before, after, "phonefleet_reports_total", status="failed") == 0
    assert grew(before, after, "phonefleet_messages_timed_out_total", status="expired") == 1


def test_a_failover_is_counted(client, django_capture_on_commit_callbacks, in_memory_layer):
    phone_list = factories.make_list(account=factories.make_account())
    broken, _other = (factories.make_device(phone_list=phone_list, online=True) for _ in range(2))
    held = factories.make_message(phone_list=phone_list, status=Message.Status.ASSIGNED, device=broken)
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        failed = dispatch.report_message(
            device=broken, message_id=held.public_id, status="failed", error="RESULT_ERROR_RADIO_OFF"
        )
    assert failed is not None and failed.status == Message.Status.QUEUED
    assert grew(before, scrape(client), "phonefleet_failovers_total") == 1


def test_callback_attempts_are_counted_by_outcome(client, receiver, private_ok):
    account = factories.make_account()
    phone_list = factories.make_list(account=account)
    endpoint = ipn_services.update_endpoint(account=account, url=receiver.url, enabled=True)
    message = factories.make_message(phone_list=phone_list, status=Message.Status.SENT, cost=0)
    callbacks.record_message_event(message=message, status="sent", endpoint=endpoint)
    before = scrape(client)
    delivery.deliver_one_due_event()
    after = scrape(client)
    assert len(receiver.requests) == 1
    assert grew(before, after, "phonefleet_ipn_attempts_total", outcome="success") == 1
    assert grew(before, after, "phonefleet_ipn_attempts_total", outcome="retry") == 0


def test_every_series_the_grafana_dashboard_plots_is_exported(client):
    heartbeats.record_heartbeat(worker="host:1", started_at=timezone.now())
    factories.make_list(account=factories.make_account())
    exported = {name for name, _labels in scrape(client)}
    dashboard = json.loads((ROOT / "docs/deploy/grafana-dashboard.json").read_text())
    plotted = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"phonefleet_\w+", target["expr"])
    }
    assert len(plotted) >= 15
    assert plotted <= exported, plotted - exported


def test_the_system_check_warns_when_several_processes_would_count_apart(settings):
    settings.REDIS_URL, settings.PROMETHEUS_MULTIPROC_DIR = "redis://127.0.0.1:6379/0", ""
    assert [m.id for m in checks.metrics_are_shared_between_processes(None)] == ["monitoring.W001"]
    settings.PROMETHEUS_MULTIPROC_DIR = "/srv/phonefleet/var/metrics"
    assert checks.metrics_are_shared_between_processes(None) == []
    settings.REDIS_URL, settings.PROMETHEUS_MULTIPROC_DIR = "", ""  # one process: nothing to share
    assert checks.metrics_are_shared_between_processes(None) == []
