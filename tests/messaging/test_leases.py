"""Leases, re-offers, TTL expiry and scheduled sends: the worker steps."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.models import Account, LedgerEntry
from ipn.models import IpnEndpoint, IpnEvent
from messaging.models import Message
from messaging.services import dispatch
from tests import factories


@pytest.fixture
def phones(alice_list):
    return [factories.make_enrolled_device(phone_list=alice_list, name=n)[0] for n in ("A", "B", "C", "D")]


def balance(account) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)


def after_lease(phone_list, start=None):
    return (start or timezone.now()) + timedelta(seconds=phone_list.lease_seconds + 1)


def test_nothing_to_do_when_no_lease_has_lapsed(alice_list, phones):
    message = factories.make_message(phone_list=alice_list)
    dispatch.claim_message(device=phones[0], message_id=message.public_id)
    assert dispatch.requeue_one_expired_lease() is False
    assert Message.objects.get(pk=message.pk).status == "assigned"


def test_a_lapsed_lease_goes_back_to_the_queue_and_is_offered_again(
    alice_list, phones, django_capture_on_commit_callbacks, in_memory_layer
):
    message = factories.make_message(phone_list=alice_list)
    dispatch.claim_message(device=phones[0], message_id=message.public_id)
    layer = in_memory_layer
    async_to_sync(layer.group_add)(f"offers.{alice_list.pk}", "listener")
    with time_machine.travel(after_lease(alice_list), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert dispatch.requeue_one_expired_lease() is True
        assert dispatch.requeue_one_expired_lease() is False
        message.refresh_from_db()
        assert (message.status, message.lease_expires_at) == ("queued", None)
        assert [m.pk for m in dispatch.open_messages_for_device(device=phones[1])] == [message.pk]
    hint = async_to_sync(layer.receive)("listener")
    assert hint["type"] == "message.offer" and hint["frame"]["message_id"] == message.public_id
    assert list(message.events.values_list("status", flat=True)) == ["assigned", "queued"]


def test_after_k_assignments_without_a_report_the_message_fails_and_is_refunded(alice, alice_list, phones):
    alice_list.default_ttl_seconds = 86400
    message = factories.make_message(phone_list=alice_list, ttl=timedelta(days=1))
    before = balance(alice)
    now = timezone.now()
    for attempt in range(dispatch.MAX_ATTEMPTS):
        with time_machine.travel(now, tick=False):
            assert dispatch.claim_message(device=phones[attempt], message_id=message.public_id)
        now = after_lease(alice_list, now)
        with time_machine.travel(now, tick=False):
            assert dispatch.requeue_one_expired_lease()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", dispatch.MAX_ATTEMPTS)
    assert "3 assignments" in message.error
    assert balance(alice) == before + 1
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1


def test_a_message_nobody_sends_before_its_ttl_expires_with_a_refund(alice, alice_list, phones):
    IpnEndpoint.objects.create(account=alice, url="https://hooks.example/ipn", enabled=True, secret="whsec_x")
    queued = factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=5))
    held = factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=5))
    dispatch.claim_message(device=phones[0], message_id=held.public_id)
    before = balance(alice)
    assert dispatch.expire_one_overdue_message() is False
    with time_machine.travel(timezone.now() + timedelta(minutes=5, seconds=1), tick=False):
        assert dispatch.expire_one_overdue_message() is True
        assert dispatch.expire_one_overdue_message() is True
        assert dispatch.expire_one_overdue_message() is False
    for message in (queued, held):
        message.refresh_from_db()
        assert message.status == "expired" and message.expired_at
    assert balance(alice) == before + 2
    assert IpnEvent.objects.filter(type="message.expired").count() == 2


def test_expiry_and_a_failed_report_racing_refund_once(alice, alice_list, phones):
    message = factories.make_message(phone_list=alice_list, ttl=timedelta(minutes=5))
    dispatch.claim_message(device=phones[0], message_id=message.public_id)
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        dispatch.expire_one_overdue_message()
        dispatch.report_message(device=phones[0], message_id=message.public_id, status="failed")
    assert LedgerEntry.objects.filter(message=message, kind="refund").count() == 1
    assert Message.objects.get(pk=message.pk).status == "expired"


def test_a_scheduled_message_is_announced_when_due_and_only_then(
    alice_list, phones, django_capture_on_commit_callbacks, in_memory_layer
):
    send_at = timezone.now() + timedelta(minutes=10)
    message = factories.make_message(phone_list=alice_list, send_at=send_at)
    layer = in_memory_layer
    async_to_sync(layer.group_add)(f"list.{alice_list.pk}", "listener")
    with django_capture_on_commit_callbacks(execute=True) as early:
        assert dispatch.offer_due_scheduled_messages() is False
    assert early == []
    assert dispatch.open_messages_for_device(device=phones[0]) == []
    with time_machine.travel(send_at + timedelta(seconds=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True) as due:
            dispatch.offer_due_scheduled_messages()
        assert len(due) == 1
        assert [m.pk for m in dispatch.open_messages_for_device(device=phones[0])] == [message.pk]
        with django_capture_on_commit_callbacks(execute=True) as again:
            dispatch.offer_due_scheduled_messages()
        assert again == []  # already announced
    assert async_to_sync(layer.receive)("listener") == {"type": "work.available"}
