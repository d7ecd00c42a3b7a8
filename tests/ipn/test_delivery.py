"""End-to-end delivery to a real local receiver: signatures, retries, status handling."""

import json
import random
import resource
import threading
import time
from concurrent import futures
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
import time_machine
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from ipn import delivery, selectors
from ipn import services as ipn_services
from ipn.models import IpnAttempt, IpnEndpoint, IpnEvent
from messaging.services import callbacks
from tests.ipn.conftest import Reply, make_device, make_message

CURRENT_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def clock():
    traveller = time_machine.travel(CURRENT_TIME, tick=False)
    yield traveller.start()
    traveller.stop()


def sent_event(alice, alice_list, **message_fields) -> IpnEvent:
    message = make_message(account=alice, phone_list=alice_list, **message_fields)
    event = callbacks.record_message_event(message=message, status=message.status)
    assert event is not None
    return event


def run_due(clock, event: IpnEvent) -> IpnAttempt:
    """Moves the clock to the event's next attempt and lets the worker step make it."""
    event.refresh_from_db()
    clock.move_to(event.next_attempt_at)
    delivery.deliver_one_due_event()
    made = event.attempts_log.order_by("-id").first()
    assert made is not None
    return made


def test_an_event_arrives_signed_and_verifies_with_standardwebhooks_and_svix(alice, alice_list, endpoint, receiver):
    event = sent_event(alice, alice_list, ref="order-42")
    delivery.deliver_one_due_event()
    got = receiver.wait_for(1)[0]
    assert got.verified, (got.standardwebhooks_error, got.svix_error)
    assert got.headers["webhook-id"] == event.webhook_id and "." not in event.webhook_id
    assert got.headers["content-type"] == "application/json"
    assert got.body == event.body.encode()
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.DELIVERED
    attempt = event.attempts_log.get()
    assert (attempt.status_code, attempt.outcome, attempt.response_body) == (200, "success", "ok")


def test_the_worker_step_says_when_nothing_is_due(db):
    assert delivery.deliver_one_due_event() is False


def test_a_claimed_event_is_not_claimed_again_by_another_worker(alice, alice_list, endpoint, clock):
    sent_event(alice, alice_list)
    first, was_due = delivery._claim_due_events(CURRENT_TIME, 16)
    assert len(first) == 1 and was_due
    assert delivery._claim_due_events(CURRENT_TIME, 16) == ([], False)


def test_a_messages_later_event_waits_while_its_earlier_one_is_being_attempted(
    alice, alice_list, endpoint, receiver, clock
):
    """Two workers: while one attempts `message.sent`, the other leaves that message's
    `message.delivered` alone (so a receiver that answers gets them in order) and takes
    other work meanwhile."""
    message = make_message(account=alice, phone_list=alice_list, status="delivered")
    sent = callbacks.record_message_event(message=message, status="sent")
    delivered = callbacks.record_message_event(message=message, status="delivered")
    other = sent_event(alice, alice_list)
    assert sent is not None and delivered is not None
    in_flight, _ = delivery._claim_due_events(CURRENT_TIME, 1)  # a worker takes the oldest...
    assert [event.pk for event in in_flight] == [sent.pk]
    second_worker, _ = delivery._claim_due_events(CURRENT_TIME, 16)
    assert [event.pk for event in second_worker] == [other.pk]
    assert delivery._claim_due_events(CURRENT_TIME, 16) == ([], False)
    delivery._finish(in_flight[0], endpoint, delivery.attempt(event=in_flight[0], endpoint=endpoint))
    after, _ = delivery._claim_due_events(CURRENT_TIME, 16)
    assert [event.pk for event in after] == [delivered.pk]


def test_the_step_says_more_is_waiting_only_after_a_full_claim(alice, alice_list, endpoint, receiver, monkeypatch):
    """A claim short of CLAIM_BATCH took everything due: the worker rests before the next
    step (what becomes due meanwhile goes as one batch) instead of claiming again at once."""
    monkeypatch.setattr(delivery, "CLAIM_BATCH", 2)
    events = [sent_event(alice, alice_list) for _ in range(3)]
    assert delivery.deliver_one_due_event() is True
    assert delivery.deliver_one_due_event() is False
    assert [r.headers["webhook-id"] for r in receiver.wait_for(3)] == [e.webhook_id for e in events]


def test_a_messages_sent_and_delivered_due_together_go_in_one_step_in_order(alice, alice_list, endpoint, receiver):
    message = make_message(account=alice, phone_list=alice_list, status="delivered")
    sent = callbacks.record_message_event(message=message, status="sent")
    delivered = callbacks.record_message_event(message=message, status="delivered")
    assert sent is not None and delivered is not None
    delivery.deliver_one_due_event()
    assert [r.headers["webhook-id"] for r in receiver.wait_for(2)] == [sent.webhook_id, delivered.webhook_id]
    for event in (sent, delivered):
        event.refresh_from_db()
        assert (event.status, event.attempts) == (IpnEvent.Status.DELIVERED, 1)


def test_a_delivered_taken_along_with_its_sent_waits_when_the_sent_fails(alice, alice_list, endpoint, receiver):
    receiver.replies.append(Reply(500))
    message = make_message(account=alice, phone_list=alice_list, status="delivered")
    sent = callbacks.record_message_event(message=message, status="sent")
    delivered = callbacks.record_message_event(message=message, status="delivered")
    assert sent is not None and delivered is not None
    delivery.deliver_one_due_event()
    assert len(receiver.wait_for(1)) == 1
    sent.refresh_from_db()
    delivered.refresh_from_db()
    assert (sent.status, sent.attempts) == (IpnEvent.Status.PENDING, 1)
    # Not attempted: given back, due again at once (and, its sent failed, no longer held back: R11).
    assert (delivered.status, delivered.attempts, delivered.locked_until) == (IpnEvent.Status.PENDING, 0, None)
    assert len(receiver.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivered_whose_sent_another_worker_is_claiming_right_then_is_given_back(alice, alice_list, endpoint):
    """The claim's snapshot shows the `message.sent` free, so its `message.delivered` may be
    taken along; but another worker's claim holds the sent's row (SKIP LOCKED passes it
    by): the delivered goes back instead of being sent beside, or before, its sent."""
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED: SQLite runs one writer at a time")
    message = make_message(account=alice, phone_list=alice_list, status="delivered")
    sent = callbacks.record_message_event(message=message, status="sent")
    delivered = callbacks.record_message_event(message=message, status="delivered")
    assert sent is not None and delivered is not None
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                IpnEvent.objects.select_for_update().filter(pk=sent.pk).exists()
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=other_worker)
    holder.start()
    try:
        assert locked.wait(10)
        claimed, _ = delivery._claim_due_events(timezone.now(), 16)
    finally:
        release.set()
        holder.join(10)
    assert claimed == []
    delivered.refresh_from_db()
    assert (delivered.attempts, delivered.locked_until) == (0, None)
    after, _ = delivery._claim_due_events(timezone.now(), 16)
    assert [event.pk for event in after] == [sent.pk, delivered.pk]


def test_an_event_held_by_a_crashed_worker_is_delivered_later_with_the_same_id(
    alice, alice_list, endpoint, receiver, clock
):
    event = sent_event(alice, alice_list)
    claimed, _ = delivery._claim_due_events(CURRENT_TIME, 16)  # ...and the worker dies here
    assert [c.pk for c in claimed] == [event.pk]
    delivery.deliver_one_due_event()
    assert receiver.requests == []
    clock.move_to(CURRENT_TIME + delivery.lock_duration())
    delivery.deliver_one_due_event()
    assert receiver.wait_for(1)[0].headers["webhook-id"] == event.webhook_id
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.DELIVERED


def test_failures_are_retried_on_the_jittered_schedule_for_at_least_a_day_then_given_up(
    alice, alice_list, endpoint, receiver, clock
):
    receiver.default = Reply(500, body=b"boom")
    event = sent_event(alice, alice_list)
    attempted_at = []
    for expected in [*delivery.RETRY_DELAYS, None]:
        attempt = run_due(clock, event)
        attempted_at.append(attempt.at)
        assert attempt.outcome == IpnAttempt.Outcome.RETRY and attempt.status_code == 500
        event.refresh_from_db()
        if expected is None:
            assert event.status == IpnEvent.Status.FAILED
        else:
            delay = (event.next_attempt_at - attempt.at).total_seconds()
            assert expected * 0.8 <= delay <= expected * 1.2
    assert len(attempted_at) == 8
    assert attempted_at[-1] - attempted_at[0] >= timedelta(hours=24)
    requests = receiver.wait_for(8)
    assert {r.headers["webhook-id"] for r in requests} == {event.webhook_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 8
    assert all(r.verified for r in requests)


def test_the_schedule_spans_a_day_even_when_every_jitter_draws_short(monkeypatch):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    event = IpnEvent(schedule_started_at=CURRENT_TIME)
    at = CURRENT_TIME
    for number in range(1, len(delivery.RETRY_DELAYS) + 1):
        event.attempts = number
        delay = delivery.next_delay(event=event, log=IpnAttempt(), now=at)
        assert delay is not None
        at += timedelta(seconds=delay)
    assert at - CURRENT_TIME >= timedelta(hours=24)
    event.attempts = len(delivery.RETRY_DELAYS) + 1
    assert delivery.next_delay(event=event, log=IpnAttempt(), now=at) is None


def test_a_retry_six_minutes_later_is_signed_fresh_and_verifies(alice, alice_list, endpoint, receiver, clock):
    receiver.replies.append(Reply(503))
    event = sent_event(alice, alice_list)
    run_due(clock, event)
    clock.move_to(CURRENT_TIME + timedelta(minutes=6))
    delivery.deliver_one_due_event()
    first, retry = receiver.wait_for(2)
    assert int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 360
    assert retry.verified and first.headers["webhook-id"] == retry.headers["webhook-id"]
    # The first attempt's signature is now stale for the reference verifier (±5 min).
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(receiver.secret).verify(first.body, first.headers)


def test_a_receiver_that_does_not_answer_in_time_is_recorded_as_a_timeout(
    alice, alice_list, endpoint, receiver, settings
):
    settings.IPN_TIMEOUT_SECONDS = 0.3  # production waits 10 s; see the next test
    receiver.replies.append(Reply(200, delay=1.1))
    event = sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    attempt = event.attempts_log.get()
    assert attempt.outcome == IpnAttempt.Outcome.RETRY and attempt.status_code is None
    assert attempt.error.startswith("timeout:")
    event.refresh_from_db()
    # After a timeout the next attempt waits at least 60 s, not the usual 5 s.
    assert (event.next_attempt_at - attempt.at).total_seconds() >= 60


def test_production_waits_ten_seconds_for_an_answer():
    assert django_settings.IPN_TIMEOUT_SECONDS == 10.0
    assert delivery.timeout_seconds() == 10.0


def test_a_429_with_retry_after_is_honoured(alice, alice_list, endpoint, receiver, clock):
    receiver.replies.append(Reply(429, headers={"Retry-After": "120"}))
    event = sent_event(alice, alice_list)
    attempt = run_due(clock, event)
    assert (attempt.status_code, attempt.retry_after) == (429, 120)
    event.refresh_from_db()
    assert (event.next_attempt_at - attempt.at).total_seconds() >= 120


def test_retry_after_is_clamped_to_twice_the_scheduled_delay(alice, alice_list, endpoint, receiver, clock):
    receiver.replies.append(Reply(503, headers={"Retry-After": "86400"}))
    event = sent_event(alice, alice_list)
    attempt = run_due(clock, event)
    event.refresh_from_db()
    assert (event.next_attempt_at - attempt.at).total_seconds() <= 2 * 5 * 1.2


def test_a_redirect_is_a_failure_and_is_not_followed(alice, alice_list, endpoint, receiver):
    receiver.replies.append(Reply(302, headers={"Location": "http://127.0.0.1/"}))
    event = sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    attempt = event.attempts_log.get()
    assert (attempt.status_code, attempt.outcome) == (302, IpnAttempt.Outcome.RETRY)
    assert len(receiver.requests) == 1
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.PENDING


def test_a_410_disables_the_endpoint_at_once(alice, alice_list, endpoint, receiver, clock):
    receiver.default = Reply(410)
    event = sent_event(alice, alice_list)
    later = sent_event(alice, alice_list)
    attempt = run_due(clock, event)
    assert attempt.outcome == IpnAttempt.Outcome.PERMANENT
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "disabled (410)" and endpoint.disabled_at == CURRENT_TIME
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.FAILED
    # Nothing more is attempted: the queued event is skipped, new ones are kept as skipped.
    delivery.deliver_one_due_event()
    later.refresh_from_db()
    assert later.status == IpnEvent.Status.SKIPPED
    assert sent_event(alice, alice_list).status == IpnEvent.Status.SKIPPED
    assert delivery.deliver_one_due_event() is False
    assert len(receiver.requests) == 1


def fail_every_few_hours(alice, alice_list, clock, hours):
    """A new event (and its first attempt) every 5 hours up to `hours`; all fail."""
    for hour in range(0, hours + 1, 5):
        clock.move_to(CURRENT_TIME + timedelta(hours=hour))
        sent_event(alice, alice_list)
        while delivery.deliver_one_due_event():
            pass


def test_an_endpoint_failing_for_five_days_is_disabled(alice, alice_list, endpoint, receiver, clock):
    receiver.default = Reply(500)
    fail_every_few_hours(alice, alice_list, clock, 119)
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is None and endpoint.failing_since == CURRENT_TIME
    fail_every_few_hours(alice, alice_list, clock, 121)
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "disabled (failing for 5 days)"


def test_one_success_resets_the_failing_clock(alice, alice_list, endpoint, receiver, clock):
    receiver.default = Reply(500)
    fail_every_few_hours(alice, alice_list, clock, 95)
    clock.move_to(CURRENT_TIME + timedelta(hours=100))
    receiver.replies.append(Reply(200))
    sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    endpoint.refresh_from_db()
    # The step's first attempt succeeded; retries due beside it may have failed after it.
    assert endpoint.last_success_at == CURRENT_TIME + timedelta(hours=100)
    assert endpoint.failing_since is None or endpoint.failing_since >= endpoint.last_success_at
    receiver.default = Reply(500)
    for hour in range(101, 122, 5):
        clock.move_to(CURRENT_TIME + timedelta(hours=hour))
        sent_event(alice, alice_list)
        delivery.deliver_one_due_event()
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is None


def test_a_replay_is_delivered_with_the_same_webhook_id(alice, alice_list, endpoint, receiver):
    event = sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    attempt = ipn_services.replay_event(account=alice, webhook_id=event.webhook_id)
    assert attempt.outcome == IpnAttempt.Outcome.SUCCESS and attempt.is_replay
    first, again = receiver.wait_for(2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == event.webhook_id
    assert again.body == first.body and again.verified


def test_replay_failed_since_sends_each_missed_event_once_oldest_first(alice, alice_list, endpoint, receiver, clock):
    receiver.default = Reply(410)
    before = sent_event(alice, alice_list)
    run_due(clock, before)  # 410: disabled
    clock.move_to(CURRENT_TIME + timedelta(hours=1))
    missed = [sent_event(alice, alice_list, ref=f"missed-{n}") for n in range(3)]
    receiver.default = Reply(200)
    ipn_services.update_endpoint(account=alice, enabled=True)
    since = CURRENT_TIME + timedelta(minutes=30)
    assert selectors.count_replayable_since(account_id=alice.pk, since=since) == 3
    queued = ipn_services.replay_failed_since(account=alice, since=since)
    assert queued == 3
    while delivery.deliver_one_due_event():
        pass
    got = receiver.wait_for(4)[1:]
    assert [r.headers["webhook-id"] for r in got] == [e.webhook_id for e in missed]
    assert all(r.verified for r in got)
    assert ipn_services.replay_failed_since(account=alice, since=CURRENT_TIME) == 1  # only the 410'd one
    assert IpnEvent.objects.get(pk=before.pk).status == IpnEvent.Status.PENDING


def test_during_rotation_both_secrets_sign_and_only_the_new_one_after_a_day(
    alice, alice_list, endpoint, receiver, clock
):
    old_secret = endpoint.secret
    rotated = ipn_services.rotate_secret(account=alice)
    assert rotated.secret != old_secret
    receiver.secret = rotated.secret
    sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    during = receiver.wait_for(1)[0]
    assert during.verified
    standardwebhooks.Webhook(old_secret).verify(during.body, during.headers)
    clock.move_to(CURRENT_TIME + timedelta(hours=24, seconds=1))
    sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    after = receiver.wait_for(2)[1]
    assert after.verified
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old_secret).verify(after.body, after.headers)


def test_a_huge_answer_is_cut_at_20000_bytes_while_streaming(alice, alice_list, endpoint, receiver):
    receiver.replies.append(Reply(200, body=b"", stream_bytes=50 * 1024 * 1024))
    event = sent_event(alice, alice_list)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    delivery.deliver_one_due_event()
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    attempt = event.attempts_log.get()
    assert attempt.outcome == IpnAttempt.Outcome.SUCCESS
    assert len(attempt.response_body.encode()) == 20_000
    assert peak_after - peak_before < 10 * 1024  # kB: the 50 MB never sat in memory


def test_events_arrive_even_out_of_order_and_occurred_at_restores_the_order(
    alice, alice_list, endpoint, receiver, clock
):
    message = make_message(account=alice, phone_list=alice_list, status="sent")
    sent = callbacks.record_message_event(message=message, status="sent")
    clock.move_to(CURRENT_TIME + timedelta(seconds=3))
    message.status, message.delivered_at = "delivered", CURRENT_TIME + timedelta(seconds=3)
    message.save(update_fields=["status", "delivered_at"])
    delivered = callbacks.record_message_event(message=message, status="delivered")
    assert sent is not None and delivered is not None
    receiver.replies.append(Reply(500))  # sent's first attempt fails
    assert run_due(clock, sent).status_code == 500
    run_due(clock, delivered)
    run_due(clock, sent)
    got = [json.loads(r.body) for r in receiver.wait_for(3)[1:]]
    assert [g["type"] for g in got] == ["message.delivered", "message.sent"]
    assert sorted(got, key=lambda g: g["occurred_at"])[0]["type"] == "message.sent"
    assert all(g["data"]["status"] in ("sent", "delivered") for g in got)


def test_a_disabled_endpoint_gets_nothing_and_a_user_disabled_one_records_nothing(
    alice, alice_list, endpoint, receiver
):
    ipn_services.update_endpoint(account=alice, enabled=False)
    assert (
        callbacks.record_message_event(message=make_message(account=alice, phone_list=alice_list), status="sent")
        is None
    )
    assert delivery.deliver_one_due_event() is False
    assert receiver.requests == []


def test_a_device_number_is_the_from_of_geniosms_callbacks(alice, alice_list, endpoint, receiver):
    ipn_services.update_endpoint(account=alice, format=IpnEndpoint.Format.GENIOSMS)
    device = make_device(phone_list=alice_list, phone_number="00393331112222")
    sent_event(alice, alice_list, device=device)
    delivery.deliver_one_due_event()
    got = receiver.wait_for(1)[0]
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"from=00393331112222" in got.body and got.verified


def test_an_answer_with_nul_bytes_and_broken_utf8_is_stored_within_the_cap(alice, alice_list, endpoint, receiver):
    receiver.replies.append(Reply(500, body=b"\x00\xff\xe2\x82" * 6000))
    event = sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    attempt = event.attempts_log.get()
    assert attempt.status_code == 500
    assert "\x00" not in attempt.response_body
    assert 0 < len(attempt.response_body.encode()) <= 20_000


def test_one_accounts_slow_receiver_does_not_hold_up_another_accounts_callback(
    alice, alice_list, bob, bob_list, endpoint, receiver, make_receiver, settings
):
    settings.IPN_TIMEOUT_SECONDS = 3
    receiver.replies.append(Reply(200, delay=1.5))
    bobs_receiver = make_receiver()
    bobs_receiver.secret = ipn_services.update_endpoint(account=bob, url=bobs_receiver.url, enabled=True).secret
    slow = sent_event(alice, alice_list)
    fast = sent_event(bob, bob_list)
    started = time.monotonic()
    delivery.deliver_one_due_event()
    assert bobs_receiver.wait_for(1)[0].at - started < 1.0
    fast.refresh_from_db()
    assert fast.status == IpnEvent.Status.DELIVERED
    # Alice's receiver is still answering: a later step records it once it has answered.
    slow.refresh_from_db()
    assert slow.status == IpnEvent.Status.PENDING
    futures.wait(list(delivery._in_flight.turns.values()))
    delivery.deliver_one_due_event()
    slow.refresh_from_db()
    assert slow.status == IpnEvent.Status.DELIVERED
    assert bobs_receiver.requests[0].verified and receiver.requests[0].verified


def test_a_receiver_that_never_answers_does_not_hold_other_accounts_next_callbacks(
    alice, alice_list, bob, bob_list, endpoint, receiver, make_receiver, settings
):
    """Alice's receiver hangs until the timeout: Bob's callbacks that become due meanwhile
    still go out at once, step after step; Alice's next event waits for her attempt."""
    settings.IPN_TIMEOUT_SECONDS = 4
    receiver.replies.append(Reply(200, delay=6))
    bobs_receiver = make_receiver()
    bobs_receiver.secret = ipn_services.update_endpoint(account=bob, url=bobs_receiver.url, enabled=True).secret
    hung = sent_event(alice, alice_list)
    started = time.monotonic()
    delivery.deliver_one_due_event()
    assert time.monotonic() - started < 2.0  # the step did not wait for the timeout
    alices_next = sent_event(alice, alice_list)
    for number in (1, 2):
        sent_event(bob, bob_list)
        asked = time.monotonic()
        delivery.deliver_one_due_event()
        assert bobs_receiver.wait_for(number)[-1].at - asked < 1.0
    alices_next.refresh_from_db()
    assert (alices_next.attempts, alices_next.locked_until) == (0, None)  # not claimed while hers runs
    assert len(receiver.requests) == 1
    # The timeout ends her attempt; a later step records it as a timeout and schedules the retry.
    futures.wait(list(delivery._in_flight.turns.values()))
    delivery.deliver_one_due_event()
    hung.refresh_from_db()
    attempt = hung.attempts_log.get()
    assert attempt.outcome == IpnAttempt.Outcome.RETRY and attempt.error.startswith("timeout:")
    assert hung.locked_until is None and hung.status == IpnEvent.Status.PENDING


def test_attempts_of_two_steps_recorded_together_each_settle_their_own_claim(
    alice, alice_list, bob, bob_list, endpoint, receiver, make_receiver
):
    """Alice's and Bob's attempts, claimed by two steps (two locks), both outlive their
    step and are recorded by a third: each event is settled, whichever claim holds it.
    The second round has the destinations' success already stamped (the one-statement
    record on PostgreSQL)."""
    bobs_receiver = make_receiver()
    bobs_receiver.secret = ipn_services.update_endpoint(account=bob, url=bobs_receiver.url, enabled=True).secret
    for number in (1, 2):
        receiver.replies.append(Reply(200, delay=0.8))
        bobs_receiver.replies.append(Reply(200, delay=0.8))
        events = [sent_event(alice, alice_list)]
        delivery.deliver_one_due_event()  # Alice's, still running
        events.append(sent_event(bob, bob_list))
        delivery.deliver_one_due_event()  # Bob's, still running
        for event in events:
            event.refresh_from_db()
        assert events[0].locked_until != events[1].locked_until
        futures.wait(list(delivery._in_flight.turns.values()))  # both answered, neither recorded
        delivery.deliver_one_due_event()
        for event in events:
            event.refresh_from_db()
            settled = (event.status, event.locked_until, event.attempts_log.count())
            assert settled == (IpnEvent.Status.DELIVERED, None, 1)


def test_a_stopping_worker_records_the_attempt_still_running(alice, alice_list, endpoint, receiver):
    receiver.replies.append(Reply(200, delay=1.0))
    event = sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    event.refresh_from_db()
    assert event.status == IpnEvent.Status.PENDING and event.locked_until is not None  # still running
    delivery.finish_in_flight()
    event.refresh_from_db()
    assert (event.status, event.locked_until, event.attempts_log.count()) == (IpnEvent.Status.DELIVERED, None, 1)


def test_the_attempt_log_keeps_the_url_without_its_credentials(alice, alice_list, receiver, private_ok):
    url = receiver.url.replace("http://", "http://shop:s3cret@")
    found = ipn_services.update_endpoint(account=alice, url=url, enabled=True)
    receiver.secret = found.secret
    sent_event(alice, alice_list)
    delivery.deliver_one_due_event()
    assert receiver.wait_for(1)[0].headers["authorization"].startswith("Basic ")  # the credentials were used
    attempt = IpnAttempt.objects.get()
    assert attempt.url == receiver.url.replace("http://", "http://[redacted]@")
    assert "s3cret" not in str(IpnEndpoint.objects.get(account=alice))


def test_one_step_sends_an_accounts_due_events_in_turn_and_stops_at_its_first_failure(
    alice, alice_list, endpoint, receiver
):
    events = [sent_event(alice, alice_list) for _ in range(4)]
    receiver.replies.extend([Reply(200), Reply(200), Reply(500)])
    delivery.deliver_one_due_event()
    assert [r.headers["webhook-id"] for r in receiver.wait_for(3)] == [e.webhook_id for e in events[:3]]
    for event in events:
        event.refresh_from_db()
    assert [e.status for e in events] == ["delivered", "delivered", "pending", "pending"]
    # The failed one waits for its retry; the one after it was given back unattempted.
    assert [e.attempts for e in events] == [1, 1, 1, 0]
    assert events[3].locked_until is None and events[3].next_attempt_at <= timezone.now()
    assert len(receiver.requests) == 3


def test_once_the_worker_is_stopping_a_step_starts_no_attempt_and_gives_its_claim_back(
    alice, alice_list, endpoint, receiver
):
    events = [sent_event(alice, alice_list) for _ in range(2)]
    stop = threading.Event()
    stop.set()
    delivery.deliver_one_due_event(stop=stop)
    for event in events:
        event.refresh_from_db()
        assert (event.status, event.attempts, event.locked_until) == ("pending", 0, None)
    assert receiver.requests == []
