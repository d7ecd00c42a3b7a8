"""Failover with real phones: five reference agents on a live Daphne (PostgreSQL), one of
them with its radio off (`--fail-with RESULT_ERROR_RADIO_OFF`)."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db.models import Sum

from accounts import services as account_services
from accounts.models import Account, LedgerEntry
from devices.models import Device
from messaging.models import Message, MessageEvent
from messaging.services import accept
from tests import factories
from tests.live import agent_phones, daphne_server, live_server_url, wait_for  # noqa: F401 - fixtures

MESSAGES = 200
CREDIT = 1000


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_one_phone_s_radio_off_every_message_goes_out_once_through_the_others(
    postgres_only,
    tmp_path,
    agent_phones,  # noqa: F811
):
    account = factories.make_account(credit=CREDIT)
    phone_list = factories.make_list(account=account)
    _key, secret = factories.make_api_key(account=account, default_list=phone_list)
    key = account_services.authenticate_api_key(secret=secret)
    sent_log = tmp_path / "sent.log"
    agent_phones(pin=phone_list.pin, count=4, sent_log=sent_log, name="Working")
    radio_off = ("--fail-with", "RESULT_ERROR_RADIO_OFF")
    agent_phones(pin=phone_list.pin, count=1, sent_log=sent_log, name="Radio off", extra=radio_off)
    online = Device.objects.filter(phone_list=phone_list, is_connected=True)
    wait_for(lambda: online.count() == 5, timeout=60, what="five phones online")
    broken = Device.objects.get(phone_list=phone_list, name="Radio off")

    ids = []
    for n in range(MESSAGES):
        accepted = accept.accept_message(
            key=key, list_token=None, device_id=None, to=f"+39333{n:07d}", text=f"Message {n}"
        )
        ids.append(accepted.message.public_id)

    done = Message.objects.filter(public_id__in=ids, status="sent")
    wait_for(lambda: done.count() == len(ids), timeout=120, what="every message sent")
    radio = Counter(sent_log.read_text().split())
    assert set(radio) == set(ids)  # 0 lost
    assert max(radio.values()) == 1  # 0 sent twice
    senders = Counter(Message.objects.filter(public_id__in=ids).values_list("device", flat=True))
    assert broken.pk not in senders and len(senders) > 1
    assert MessageEvent.objects.filter(message__public_id__in=ids, status="sent").count() == len(ids)
    # The broken phone did claim work, failed it phone-side, and each went out through another.
    failed_over = set(
        MessageEvent.objects.filter(device=broken, status="failed").values_list("message__public_id", flat=True)
    )
    assert failed_over, "the radio-off phone never claimed anything: nothing was tested"
    assert failed_over <= set(ids)
    broken.refresh_from_db()
    assert broken.failures_in_a_row >= 1 and broken.paused_until is not None
    # Credit: each message debited once, none refunded; the ledger adds up to the balance.
    account.refresh_from_db()
    assert account.balance == CREDIT - MESSAGES
    assert not LedgerEntry.objects.filter(account=account, kind="refund").exists()
    assert LedgerEntry.objects.filter(account=account, kind="debit").count() == MESSAGES
    ledger = LedgerEntry.objects.filter(account=account).exclude(kind="topup").aggregate(total=Sum("amount"))
    assert ledger["total"] == Account.objects.get(pk=account.pk).balance - CREDIT
    print(f"senders: {sorted(senders.values())}; failed over from the radio-off phone: {len(failed_over)}")
