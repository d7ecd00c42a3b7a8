"""Credit and exactly-once sending as a hypothesis state machine over the real services: accept, top up, claim,
report sent/delivered/failed, cancel, and time passing (lease lapses and TTL expiry run by
the worker's own steps), in random orders, with the credit and assignment invariants
checked after every step against the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db.models import Count, Q, Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from accounts import errors
from accounts import services as account_services
from accounts.models import Account, LedgerEntry
from devices.models import Device
from messaging.models import Message, MessageEvent
from messaging.services import accept, dispatch
from tests import factories

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONES = 3
TTL_SECONDS = 900  # lease is the list default (120 s), so both lapses and expiry happen


class Dispatch(RuleBasedStateMachine):
    """One account, one list, three phones; every accepted message id is remembered."""

    def __init__(self) -> None:
        super().__init__()
        self.traveller = time_machine.travel(START, tick=False)
        self.clock = self.traveller.start()
        self.ids: list[str] = []

    @initialize(credit=st.integers(0, 6))
    def setup(self, credit: int) -> None:
        self.account = factories.make_account(credit=credit)
        self.phone_list = factories.make_list(account=self.account)
        _key, secret = factories.make_api_key(account=self.account, default_list=self.phone_list)
        self.key = account_services.authenticate_api_key(secret=secret)
        self.phones = [
            Device.objects.select_related("phone_list").get(
                pk=factories.make_enrolled_device(phone_list=self.phone_list, name=f"P{n}")[0].pk
            )
            for n in range(PHONES)
        ]

    def teardown(self) -> None:
        self.traveller.stop()

    # --- rules ---

    @rule(parts=st.sampled_from([1, 1, 2]))
    def send(self, parts: int) -> None:
        text = "x" if parts == 1 else "y" * 200  # 200 GSM-7 characters are two parts
        try:
            accepted = accept.accept_message(
                key=self.key, list_token=None, device_id=None, to="+393331234567", text=text, ttl=TTL_SECONDS
            )
        except errors.InsufficientCredit:
            return
        self.ids.append(accepted.message.public_id)

    @rule(amount=st.integers(1, 5))
    def top_up(self, amount: int) -> None:
        account_services.top_up_credit(account=Account.objects.get(pk=self.account.pk), amount=amount)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), phone=st.integers(0, PHONES - 1))
    def claim(self, data: st.DataObject, phone: int) -> None:
        dispatch.claim_message(device=self.phones[phone], message_id=data.draw(st.sampled_from(self.ids)))

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), phone=st.integers(0, PHONES - 1), status=st.sampled_from(["sent", "delivered", "failed"]))
    def report(self, data: st.DataObject, phone: int, status: str) -> None:
        message_id = data.draw(st.sampled_from(self.ids))
        dispatch.report_message(device=self.phones[phone], message_id=message_id, status=status, error="radio off")

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        try:
            accept.cancel_message(account_id=self.account.pk, message_id=data.draw(st.sampled_from(self.ids)))
        except errors.Conflict:
            pass

    @rule(seconds=st.sampled_from([5, 130, 400, TTL_SECONDS]))
    def time_passes(self, seconds: int) -> None:
        """The clock moves; the worker's steps then requeue lapsed leases and expire overdue messages."""
        self.clock.shift(timedelta(seconds=seconds))
        while dispatch.requeue_one_expired_lease():
            pass
        while dispatch.expire_one_overdue_message():
            pass

    # --- invariants ---

    @invariant()
    def credit_equals_the_ledger_and_is_never_negative(self) -> None:
        if not hasattr(self, "account"):
            return
        ledger = LedgerEntry.objects.filter(account_id=self.account.pk)
        by_kind = {kind: ledger.filter(kind=kind).aggregate(s=Sum("amount"))["s"] or 0 for kind in LedgerEntry.Kind}
        account = Account.objects.get(pk=self.account.pk)
        topups, debits = by_kind[LedgerEntry.Kind.TOPUP], -by_kind[LedgerEntry.Kind.DEBIT]
        refunds, reversals = by_kind[LedgerEntry.Kind.REFUND], -by_kind[LedgerEntry.Kind.REVERSAL]
        repaid = -by_kind[LedgerEntry.Kind.REPAYMENT]
        assert account.balance == topups - debits + refunds - reversals - repaid
        assert account.debt == (ledger.aggregate(s=Sum("debt_change"))["s"] or 0)
        assert account.balance >= 0 and account.debt >= 0
        assert account.balance == 0 or account.debt == 0  # credit coming in repays debt first

    @invariant()
    def a_sent_message_is_paid_for_or_owed(self) -> None:
        """R32: whatever the order of failed, sent and delivered reports."""
        sent = Message.objects.filter(
            public_id__in=self.ids, status__in=[Message.Status.SENT, Message.Status.DELIVERED]
        ).annotate(paid=Sum("ledger_entries__amount"), owed=Sum("ledger_entries__debt_change"))
        for message in sent:
            assert -(message.paid or 0) + (message.owed or 0) == message.cost, message.public_id

    @invariant()
    def no_message_has_two_debits_or_two_refunds(self) -> None:
        doubled = (
            LedgerEntry.objects.filter(message__public_id__in=self.ids)
            .values("message_id", "kind")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not doubled.exists(), list(doubled)

    @invariant()
    def a_refunded_message_is_a_refunded_end(self) -> None:
        messages = Message.objects.filter(public_id__in=self.ids).annotate(
            refunds=Count("ledger_entries", filter=Q(ledger_entries__kind=LedgerEntry.Kind.REFUND)),
            reversals=Count("ledger_entries", filter=Q(ledger_entries__kind=LedgerEntry.Kind.REVERSAL)),
        )
        for message in messages:
            refunded = message.refunds > message.reversals
            assert refunded == (message.status in Message.REFUNDED_STATUSES), (message.public_id, message.status)
            if refunded:
                assert message.status not in (Message.Status.SENT, Message.Status.DELIVERED)

    @invariant()
    def at_most_one_assignee_at_a_time(self) -> None:
        for message_id in self.ids:
            holder = None
            for status, device in MessageEvent.objects.filter(message__public_id=message_id).values_list(
                "status", "device_id"
            ):
                if status == Message.Status.ASSIGNED:
                    assert holder is None, f"{message_id} assigned to {device} while {holder} held it"
                    holder = device
                elif status == Message.Status.QUEUED or status in Message.FINAL_STATUSES or status == "sent":
                    holder = None

    @invariant()
    def no_message_is_lost(self) -> None:
        """Every accepted message exists, and every due queued one is offered to each phone
        that may still send it: one that has not failed it (failover), unless paused; and
        at least one such phone exists."""
        if not self.ids:
            return
        assert Message.objects.filter(public_id__in=self.ids).count() == len(self.ids)
        queued = list(Message.objects.filter(public_id__in=self.ids, status=Message.Status.QUEUED))
        phones = Device.objects.filter(pk__in=[phone.pk for phone in self.phones]).select_related("phone_list")
        offered = {
            phone.pk: {m.public_id for m in dispatch.open_messages_for_device(device=phone, limit=10_000)}
            for phone in phones
        }
        for message in queued:
            failed_by = set(
                MessageEvent.objects.filter(message=message, status="failed").values_list("device", flat=True)
            )
            takers = [phone for phone in phones if phone.pk not in failed_by]
            assert takers, f"{message.public_id} is queued but every phone failed it"
            for phone in takers:
                assert phone.is_paused or message.public_id in offered[phone.pk], (message.public_id, phone.pk)
            for phone in phones:
                if phone.pk in failed_by:
                    assert message.public_id not in offered[phone.pk]


@pytest.mark.django_db
def test_credit_and_assignment_invariants_hold_in_any_order_of_operations():
    Dispatch.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    Dispatch.TestCase().runTest()
