from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.db.models import Sum

from accounts import errors, services
from accounts.models import MAX_PRICE_PER_PART, Account, LedgerEntry
from messaging.services.accept import MAX_PARTS
from tests import factories


def ledger_sum(account):
    return LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or 0


def test_it_books_a_top_up_in_the_ledger(db):
    account = factories.make_account(credit=0)
    entry = services.top_up_credit(account=account, amount=50, reason="Invoice 7")
    account.refresh_from_db()
    assert account.balance == 50
    assert (entry.kind, entry.amount, entry.balance_after, entry.reason) == ("topup", 50, 50, "Invoice 7")


def test_it_refuses_a_debit_larger_than_the_balance_and_takes_nothing(db):
    account = factories.make_account(credit=2)
    with pytest.raises(errors.InsufficientCredit):
        services.debit_credit(account=account, amount=3)
    account.refresh_from_db()
    assert account.balance == 2
    assert not LedgerEntry.objects.filter(account=account, kind="debit").exists()


def test_it_debits_down_to_exactly_zero(db):
    account = factories.make_account(credit=3)
    entry = services.debit_credit(account=account, amount=3, reason="3 parts")
    account.refresh_from_db()
    assert account.balance == 0
    assert (entry.amount, entry.balance_after) == (-3, 0)
    assert ledger_sum(account) == account.balance


def test_the_database_itself_refuses_a_negative_balance(db):
    account = factories.make_account(credit=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(balance=-1)


def test_a_price_per_part_is_bounded_so_a_full_message_costs_what_its_column_holds(db):
    assert MAX_PRICE_PER_PART * MAX_PARTS <= 2**31 - 1
    account = factories.make_account(credit=1)
    account.price_per_part = MAX_PRICE_PER_PART + 1
    with pytest.raises(ValidationError) as refused:
        account.full_clean()
    assert "price_per_part" in refused.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(price_per_part=MAX_PRICE_PER_PART + 1)


def test_it_refuses_non_positive_top_ups(db):
    account = factories.make_account(credit=0)
    with pytest.raises(errors.InvalidParameter):
        services.top_up_credit(account=account, amount=0)


def test_a_daily_spending_cap_stops_debits_past_it(db):
    account = factories.make_account(credit=100)
    Account.objects.filter(pk=account.pk).update(daily_spend_cap=5)
    account.refresh_from_db()
    services.debit_credit(account=account, amount=4)
    with pytest.raises(errors.SpendingCapReached):
        services.debit_credit(account=account, amount=2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_never_overdraw_and_the_ledger_matches(postgres_only):
    """Credit for exactly 100 parts, 200 concurrent single-part debits."""
    account = factories.make_account(credit=100)

    def debit(_):
        try:
            services.debit_credit(account=account, amount=1)
            return True
        except errors.InsufficientCredit:
            return False
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(debit, range(200)))

    account.refresh_from_db()
    assert results.count(True) == 100
    assert results.count(False) == 100
    assert account.balance == 0
    assert ledger_sum(account) == account.balance
    assert LedgerEntry.objects.filter(account=account, kind="debit").count() == 100


@pytest.mark.django_db(transaction=True)
def test_a_multi_part_debit_at_the_boundary_is_refused_whole(postgres_only):
    account = factories.make_account(credit=2)
    with pytest.raises(errors.InsufficientCredit):
        services.debit_credit(account=account, amount=3)
    account.refresh_from_db()
    assert account.balance == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_never_pass_the_daily_spending_cap(postgres_only):
    """The cap is counted by the same UPDATE that takes the balance: 20 concurrent debits of
    1 credit against a cap of 5 let exactly 5 through, whatever the balance."""
    account = factories.make_account(credit=100)
    Account.objects.filter(pk=account.pk).update(daily_spend_cap=5)

    def debit(_):
        try:
            services.debit_credit(account=account, amount=1)
            return "ok"
        except errors.SpendingCapReached:
            return "cap"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(debit, range(20)))

    account.refresh_from_db()
    assert (results.count("ok"), results.count("cap")) == (5, 15)
    assert (account.balance, account.spent_that_day) == (95, 5)
    assert ledger_sum(account) == account.balance


def test_the_spending_cap_starts_again_on_a_new_utc_day(db):
    account = factories.make_account(credit=100)
    Account.objects.filter(pk=account.pk).update(daily_spend_cap=5)
    with time_machine.travel("2026-12-01 23:59:00+00:00", tick=False):
        services.debit_credit(account=account, amount=5)
        with pytest.raises(errors.SpendingCapReached):
            services.debit_credit(account=account, amount=1)
    with time_machine.travel("2026-12-02 00:00:01+00:00", tick=False):
        services.debit_credit(account=account, amount=5)
    account.refresh_from_db()
    assert (account.balance, str(account.spent_on), account.spent_that_day) == (90, "2026-12-02", 5)
