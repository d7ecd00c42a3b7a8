"""A sent message is always paid for (R32): a `sent` after a refund is charged again, and
what the balance no longer covers is owed (a recorded debt that stops sending until credit
coming in repays it). The balance never goes below zero and always equals the ledger."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from accounts import errors
from accounts import services as account_services
from accounts.models import Account, ApiKey, LedgerEntry
from messaging.models import Message
from messaging.services import accept, dispatch
from tests import factories


def send(secret: str, client: Client | None = None) -> dict:
    answer = (client or Client()).post(
        "/api/v1/send", {"to": "+393331234567", "msg": "hi"}, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    return answer.json()


def assert_books_balance(account: Account) -> Account:
    """The balance is the sum of the ledger's amounts, the debt the sum of its debt changes."""
    account.refresh_from_db()
    sums = LedgerEntry.objects.filter(account=account).aggregate(amount=Sum("amount"), owed=Sum("debt_change"))
    assert (sums["amount"] or 0, sums["owed"] or 0) == (account.balance, account.debt)
    assert account.balance >= 0 and account.debt >= 0
    return account


def charged_for(message: Message) -> int:
    """What the account paid or owes for the message: its debit, refund and reversal."""
    sums = LedgerEntry.objects.filter(message=message).aggregate(amount=Sum("amount"), owed=Sum("debt_change"))
    return -(sums["amount"] or 0) + (sums["owed"] or 0)


def pinned_failed_message(phone_list, phone) -> Message:
    """A message pinned to the account's own phone, claimed and reported failed (refunded)."""
    message = factories.make_message(pinned_device=phone)
    assert dispatch.claim_message(device=phone, message_id=message.public_id)
    dispatch.report_message(device=phone, message_id=message.public_id, status="failed", error="no signal")
    return message


@pytest.fixture
def setup(db):
    account = factories.make_account(credit=1)
    phone_list = factories.make_list(account=account)
    phone = factories.make_enrolled_device(phone_list=phone_list)[0]
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    return account, phone_list, phone, secret


def test_a_failed_then_sent_message_whose_refund_was_spent_is_owed_and_stops_sending(setup):
    account, phone_list, phone, secret = setup
    message = pinned_failed_message(phone_list, phone)
    assert send(secret)["status_code"] == "2"  # the refunded credit is spent elsewhere
    for status in ("sent", "delivered"):
        dispatch.report_message(device=phone, message_id=message.public_id, status=status)
    message.refresh_from_db()
    assert message.status == "delivered"
    assert charged_for(message) == message.cost  # paid or owed, never free
    account = assert_books_balance(account)
    assert (account.balance, account.debt) == (0, 1)
    reversal = LedgerEntry.objects.get(message=message, kind="reversal")
    assert (reversal.amount, reversal.debt_change) == (0, 1)

    # While it is owed, nothing is sent, and the answer says why.
    answer = send(secret)
    assert (answer["response"], answer["status_code"], answer["debt"]) == ("402", "9", "1")
    assert "owes 1 credits" in answer["error"]
    balance = Client().get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {secret}").json()
    assert (balance["balance"], balance["debt"]) == (0, 1)

    # A top-up repays it first; then sending resumes.
    account_services.top_up_credit(account=account, amount=5)
    account = assert_books_balance(account)
    assert (account.balance, account.debt) == (4, 0)
    assert LedgerEntry.objects.filter(account=account, kind="repayment").get().amount == -1
    assert send(secret)["status_code"] == "2"


def test_a_refund_repays_a_debt_before_it_can_be_spent(setup):
    account, phone_list, phone, _secret = setup
    account_services.top_up_credit(account=account, amount=1)
    first = pinned_failed_message(phone_list, phone)
    second = factories.make_message(pinned_device=phone)  # accepted before anything was owed
    account_services.debit_credit(account=account, amount=1)  # the refund of `first` is spent
    dispatch.report_message(device=phone, message_id=first.public_id, status="sent")
    assert assert_books_balance(account).debt == 1
    assert dispatch.claim_message(device=phone, message_id=second.public_id)
    dispatch.report_message(device=phone, message_id=second.public_id, status="failed")
    account = assert_books_balance(account)
    assert (account.balance, account.debt) == (0, 0)
    assert LedgerEntry.objects.get(account=account, kind="repayment").amount == -1


def test_the_panel_shows_what_is_owed(setup, client):
    account, phone_list, phone, _secret = setup
    message = pinned_failed_message(phone_list, phone)
    account_services.debit_credit(account=account, amount=1)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    client.force_login(account.users.get())
    page = client.get(reverse("credit")).content.decode()
    assert 'id="debt-notice"' in page and "The account owes 1 credit:" in page
    assert "owes 1" in client.get(reverse("credit-live")).content.decode()
    assert "owes" not in client.get(reverse("credit-live")).content.decode().replace("owes 1", "")


def test_a_late_sent_with_credit_left_is_simply_charged_again(setup):
    account, phone_list, phone, _secret = setup
    account_services.top_up_credit(account=account, amount=4)
    message = pinned_failed_message(phone_list, phone)
    dispatch.report_message(device=phone, message_id=message.public_id, status="sent")
    account = assert_books_balance(account)
    assert (account.balance, account.debt) == (4, 0)
    assert charged_for(message) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_failed_then_spend_then_late_sent_race_never_leaves_a_sent_message_free(postgres_only):
    """Real concurrent connections: after the refund, 8 sends race the phone's late
    `sent` + `delivered` for the refunded credit. Whoever wins, the message is paid for
    (or owed, and then nothing more is sent), and the books balance."""
    rounds, senders = 4, 8
    for _round in range(rounds):
        account = factories.make_account(credit=1)
        phone_list = factories.make_list(account=account)
        phone = factories.make_enrolled_device(phone_list=phone_list)[0]
        _key, secret = factories.make_api_key(account=account, default_list=phone_list)
        ApiKey.objects.filter(account=account).update(rate_limit_per_minute=100_000)
        message = pinned_failed_message(phone_list, phone)
        start = threading.Barrier(senders + 1)

        def spend() -> bool:
            try:
                start.wait()
                return send(secret)["status_code"] == "2"
            finally:
                connection.close()

        def report_late() -> None:
            try:
                start.wait()
                for status in ("sent", "delivered"):
                    dispatch.report_message(device=phone, message_id=message.public_id, status=status)
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=senders + 1) as pool:
            reported = pool.submit(report_late)
            accepted = sum(pool.map(lambda _n: spend(), range(senders)))
            reported.result()

        message.refresh_from_db()
        assert message.status == "delivered"
        assert charged_for(message) == message.cost
        account = assert_books_balance(account)
        # One credit was there after the refund: it paid either one send or the late sent.
        assert accepted <= 1 and account.balance == 0
        assert account.debt == accepted
        # Every message that was sent or is waiting to be sent is paid for.
        for other in Message.objects.filter(account=account):
            assert charged_for(other) == other.cost


def test_nothing_is_accepted_while_owed_even_with_credit_on_the_balance(db):
    account = factories.make_account(credit=0)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    key = account_services.authenticate_api_key(secret=secret)
    Account.objects.filter(pk=account.pk).update(balance=10, debt=1)
    with pytest.raises(errors.InsufficientCredit):
        accept.accept_message(key=key, list_token=None, device_id=None, to="+393331234567", text="hi")
