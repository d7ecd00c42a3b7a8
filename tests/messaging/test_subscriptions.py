"""List subscribers: the OK/DEL keywords (once per list), confirmation replies, imports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading

import pytest
import time_machine
from django.db import connection

from accounts import errors
from accounts.models import Account
from devices.models import Device, PhoneList, Subscriber
from messaging.models import InboundSms, Message
from messaging.services import inbox, subscriptions
from tests import factories

CURRENT_TIME = dt.datetime(2026, 3, 2, 9, 30, 10, tzinfo=dt.UTC)
ANNA = "+393331112222"


@pytest.fixture
def phones(alice_list):
    return [factories.make_device(phone_list=alice_list, name=name) for name in ("Pixel", "Galaxy")]


def receive(device: Device, text: str, *, sender: str = ANNA, at: dt.datetime | None = None) -> InboundSms:
    return inbox.record_incoming_sms(device=device, sender=sender, text=text, received_at=at or CURRENT_TIME)


def state(phone_list: PhoneList, number: str = ANNA) -> Subscriber:
    return Subscriber.objects.get(phone_list=phone_list, number=number)


def known(phone_list: PhoneList, number: str = ANNA) -> bool:
    return Subscriber.objects.filter(phone_list=phone_list, number=number).exists()


def balance(account: Account) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)


def replies(phone_list: PhoneList) -> list[Message]:
    return list(Message.objects.filter(phone_list=phone_list, ref__startswith="phonefleet:").order_by("id"))


# --- Keywords --------------------------------------------------------------------------


@time_machine.travel(CURRENT_TIME, tick=False)
@pytest.mark.parametrize("text", ["OK", "ok", "  Ok \n", "oK"])
def test_it_subscribes_the_sender_of_ok_in_any_case_and_with_spaces(phones, alice_list, text):
    inbound = receive(phones[0], text)
    row = state(alice_list)
    assert row.is_subscribed
    assert (row.source, row.subscribed_at) == ("sms", CURRENT_TIME)
    assert inbound.keyword == "subscribe"


@time_machine.travel(CURRENT_TIME, tick=False)
def test_it_stores_a_national_sender_in_e164_with_the_lists_country(phones, alice_list):
    receive(phones[0], "OK", sender="333 111 2222")
    assert known(alice_list, ANNA)


@time_machine.travel(CURRENT_TIME, tick=False)
def test_del_unsubscribes_in_any_case_however_the_number_joined(phones, alice_list):
    subscriptions.subscribe(phone_list=alice_list, number=ANNA, source="panel")
    inbound = receive(phones[0], " Del ")
    assert inbound.keyword == "unsubscribe"
    assert state(alice_list).unsubscribed_at == CURRENT_TIME


@time_machine.travel(CURRENT_TIME, tick=False)
def test_other_texts_change_nothing(phones, alice_list):
    for text in ("OK thanks", "okay", "DELETE", "hello"):
        inbound = receive(phones[0], text)
        assert inbound.keyword == ""
    assert not Subscriber.objects.exists()


@time_machine.travel(CURRENT_TIME, tick=False)
def test_an_alphanumeric_sender_cannot_subscribe_and_the_sms_is_still_stored(phones, alice_list):
    inbound = receive(phones[0], "OK", sender="TIM")
    assert InboundSms.objects.filter(pk=inbound.pk).exists()
    assert not Subscriber.objects.exists()


@time_machine.travel(CURRENT_TIME, tick=False)
def test_ok_from_two_phones_of_the_list_is_one_subscription_change(phones, alice_list):
    first, second = receive(phones[0], "OK"), receive(phones[1], "OK")
    assert first.pk == second.pk
    assert Subscriber.objects.filter(phone_list=alice_list).count() == 1


def test_re_reports_across_a_minute_boundary_still_change_the_subscription_once(phones, alice_list):
    alice_list.confirm_subscriptions = True
    alice_list.save(update_fields=["confirm_subscriptions"])
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 31, 1, tzinfo=dt.UTC), tick=False):
        receive(phones[0], "OK", at=dt.datetime(2026, 3, 2, 9, 30, 59, tzinfo=dt.UTC))
        receive(phones[1], "OK", at=dt.datetime(2026, 3, 2, 9, 31, 0, tzinfo=dt.UTC))
    assert InboundSms.objects.count() == 2  # the phones' clocks put it in two minutes
    assert len(replies(alice_list)) == 1  # but only the first one changed anything


def test_subscribing_again_after_del_works(phones, alice_list):
    with time_machine.travel(CURRENT_TIME, tick=False):
        receive(phones[0], "OK")
        receive(phones[0], "DEL", at=CURRENT_TIME + dt.timedelta(minutes=1))
    later = CURRENT_TIME + dt.timedelta(days=2)
    with time_machine.travel(later, tick=False):
        receive(phones[1], "ok")
    row = state(alice_list)
    assert row.is_subscribed and row.subscribed_at == later
    assert Subscriber.objects.count() == 1


@time_machine.travel(CURRENT_TIME, tick=False)
def test_lists_keep_their_own_subscribers(alice, phones, alice_list):
    other_list = factories.make_list(account=alice, name="Shop")
    other_phone = factories.make_device(phone_list=other_list)
    receive(phones[0], "OK")
    receive(other_phone, "DEL")
    assert state(alice_list).is_subscribed
    assert not known(other_list)


# --- Confirmation replies ----------------------------------------------------------------


@pytest.fixture
def confirming(alice_list):
    return subscriptions.update_reply_settings(
        phone_list=alice_list,
        confirm_subscriptions=True,
        subscribe_reply="Welcome! Text DEL to leave.",
        unsubscribe_reply="Bye.",
    )


@time_machine.travel(CURRENT_TIME, tick=False)
def test_no_reply_is_sent_while_replies_are_off(alice, phones, alice_list):
    receive(phones[0], "OK")
    assert replies(alice_list) == [] and balance(alice) == 100


@time_machine.travel(CURRENT_TIME, tick=False)
def test_replies_are_queued_through_the_list_and_paid_like_any_message(
    alice, phones, confirming, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as offers:
        receive(phones[0], "OK")
    receive(phones[1], "OK")  # the same SMS from the other phone
    (welcome,) = replies(confirming)
    assert (welcome.to, welcome.text, welcome.status) == (ANNA, "Welcome! Text DEL to leave.", "queued")
    assert welcome.phone_list_id == confirming.pk and welcome.api_key_id is None
    assert balance(alice) == 100 - welcome.cost
    assert offers, "the reply is offered to the phones after commit"
    receive(phones[0], "DEL", at=CURRENT_TIME - dt.timedelta(minutes=2))
    assert [m.text for m in replies(confirming)] == ["Welcome! Text DEL to leave.", "Bye."]


@time_machine.travel(CURRENT_TIME, tick=False)
def test_no_credit_means_no_reply_but_the_subscription_stands(alice, phones, confirming, caplog):
    Account.objects.filter(pk=alice.pk).update(balance=0)
    receive(phones[0], "OK")
    assert state(confirming).is_subscribed
    assert replies(confirming) == []
    assert "No subscribe reply to +393331112222" in caplog.text


@time_machine.travel(CURRENT_TIME, tick=False)
def test_an_ok_from_someone_already_subscribed_gets_no_second_welcome(phones, confirming):
    receive(phones[0], "OK")
    receive(phones[0], "OK", at=CURRENT_TIME - dt.timedelta(minutes=5))
    assert len(replies(confirming)) == 1


@time_machine.travel(CURRENT_TIME, tick=False)
def test_a_list_without_a_reply_text_stays_silent(phones, confirming):
    subscriptions.update_reply_settings(
        phone_list=confirming, confirm_subscriptions=True, subscribe_reply="Hi!", unsubscribe_reply=""
    )
    receive(phones[0], "DEL")  # not subscribed: no change, no reply
    receive(phones[0], "OK", at=CURRENT_TIME - dt.timedelta(minutes=1))
    receive(phones[0], "DEL", at=CURRENT_TIME - dt.timedelta(minutes=2))
    assert [m.text for m in replies(confirming)] == ["Hi!"]


def test_reply_settings_are_checked(alice_list):
    with pytest.raises(errors.InvalidParameter):
        subscriptions.update_reply_settings(
            phone_list=alice_list, confirm_subscriptions=True, subscribe_reply="", unsubscribe_reply=" "
        )
    with pytest.raises(errors.InvalidParameter):
        subscriptions.update_reply_settings(
            phone_list=alice_list, confirm_subscriptions=False, subscribe_reply="x" * 161, unsubscribe_reply=""
        )


# --- Services ---------------------------------------------------------------------------------


def test_subscribe_and_unsubscribe_say_whether_they_changed_anything(alice_list):
    assert subscriptions.subscribe(phone_list=alice_list, number="3331112222", source="api").changed
    assert not subscriptions.subscribe(phone_list=alice_list, number=ANNA, source="api").changed
    assert subscriptions.unsubscribe(phone_list=alice_list, number="0039 333 111 2222").changed
    assert not subscriptions.unsubscribe(phone_list=alice_list, number=ANNA).changed
    assert not subscriptions.unsubscribe(phone_list=alice_list, number="+393339999999").changed
    with pytest.raises(errors.InvalidParameter):
        subscriptions.subscribe(phone_list=alice_list, number="hello", source="api")


def test_import_adds_new_numbers_brings_back_former_ones_and_reports_bad_entries(alice_list):
    subscriptions.subscribe(phone_list=alice_list, number="+393330000001", source="sms")
    subscriptions.subscribe(phone_list=alice_list, number="+393330000002", source="sms")
    subscriptions.unsubscribe(phone_list=alice_list, number="+393330000002")
    result = subscriptions.import_subscribers(
        phone_list=alice_list,
        numbers=["+393330000001", "3330000002", "'+393330000003", "not a number", "+393330000003"],
        source="import",
    )
    assert result.already == ["+393330000001"]
    assert result.added == ["+393330000002", "+393330000003"]
    assert [(row, text) for row, text, _ in result.errors] == [(4, "not a number")]
    assert subscriptions.current_subscribers(phone_list=alice_list) == [
        "+393330000001",
        "+393330000002",
        "+393330000003",
    ]
    assert state(alice_list, "+393330000002").source == "import"


def test_the_csv_export_round_trips_through_import(alice, alice_list):
    subscriptions.import_subscribers(phone_list=alice_list, numbers=["+393330000001", "+393330000002"], source="api")
    subscriptions.unsubscribe(phone_list=alice_list, number="+393330000002")
    out = io.StringIO()
    assert subscriptions.export_subscribers_csv(phone_list=alice_list, out=out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["number", "source", "subscribed_at", "unsubscribed_at"]
    assert [r[0] for r in rows[1:]] == ["'+393330000001", "'+393330000002"]  # formula-safe
    assert rows[1][3] == "" and rows[2][3] != ""
    copy = factories.make_list(account=alice, name="Copy")
    result = subscriptions.import_subscribers(phone_list=copy, numbers=[r[0] for r in rows[1:]], source="import")
    assert result.added == ["+393330000001", "+393330000002"] and not result.errors


def test_an_import_over_the_limit_is_refused(alice_list):
    with pytest.raises(errors.InvalidParameter):
        subscriptions.import_subscribers(
            phone_list=alice_list, numbers=["+393330000001"] * (subscriptions.MAX_IMPORT + 1), source="api"
        )


# --- Real races on PostgreSQL ------------------------------------------------------------------


def _race(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_phones_reporting_the_same_ok_at_once_subscribe_and_reply_once(postgres_only):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    subscriptions.update_reply_settings(
        phone_list=phone_list, confirm_subscriptions=True, subscribe_reply="Welcome", unsubscribe_reply="Bye"
    )
    devices = [factories.make_device(phone_list=phone_list, name=f"P{n}") for n in range(6)]
    at = dt.datetime.now(dt.UTC).replace(second=5)
    for round_number, text in enumerate(["OK", "DEL", "OK"]):
        stored = _race(
            len(devices),
            lambda n, text=text, round_number=round_number: (
                inbox.record_incoming_sms(
                    device=devices[n], sender=ANNA, text=text, received_at=at - dt.timedelta(minutes=round_number)
                ).pk
            ),
        )
        assert len(set(stored)) == 1  # every phone got back the one stored row
    assert InboundSms.objects.count() == 3
    assert Subscriber.objects.filter(phone_list=phone_list, number=ANNA, unsubscribed_at__isnull=True).count() == 1
    assert [m.text for m in replies(phone_list)] == ["Welcome", "Bye", "Welcome"]
    assert balance(account) == 97


@pytest.mark.django_db(transaction=True)
def test_concurrent_subscribe_and_unsubscribe_calls_each_change_it_once(postgres_only):
    account = factories.make_account(credit=0)
    phone_list = factories.make_list(account=account)
    joined = _race(8, lambda n: subscriptions.subscribe(phone_list=phone_list, number=ANNA, source="api").changed)
    assert joined.count(True) == 1
    left = _race(8, lambda n: subscriptions.unsubscribe(phone_list=phone_list, number=ANNA).changed)
    assert left.count(True) == 1
    back = _race(8, lambda n: subscriptions.subscribe(phone_list=phone_list, number=ANNA, source="sms").changed)
    assert back.count(True) == 1
