"""A Daphne holding phones is killed (kill -9) and started again (R26, R28; issue 21).

While it is dead its phones show offline within the presence TTL and nothing is assigned
to them. When it is back, every phone reconnects at once: the server takes handshakes at
its accept rate and tells the rest to try later (close 4503 with a time), never 403 for
a valid token, and the reference agent comes back at the time it was given. Small scale
here (200 phones, 25 handshakes a second); 10,000 phones are `bench/soak.py --restart`
(docs/benchmarks.md).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from django.db.models import Max
from django.utils import timezone

from accounts.models import ApiKey
from agent.store import PhoneState
from devices.models import PRESENCE_TTL, Device
from messaging.models import Message
from tests import factories
from tests.production.conftest import api, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONES = 200
ACCEPT_RATE = 25


def test_phones_of_a_killed_server_go_offline_and_all_come_back_paced_without_a_403(stack, tmp_path):
    account = factories.make_account(credit=100)
    phone_list = factories.make_list(account=account)
    key, secret = factories.make_api_key(account=account, default_list=phone_list)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=100_000)
    for n in range(PHONES):  # enrolled already, so that the agent starts them all at once
        device, token = factories.make_enrolled_device(phone_list=phone_list, name=f"P{n}")
        state = PhoneState(path=tmp_path / "phones" / f"phone-{n + 1}.json", device_id=device.public_id)
        state.device_token, state.list_token, state.ws_url = token, phone_list.token, "/ws/device/"
        state.save()
    phones = Device.objects.filter(phone_list=phone_list)
    server = stack.daphne("daphne", DEVICE_ACCEPT_RATE=str(ACCEPT_RATE))
    api_server = stack.daphne("daphne-api")  # sends while the phones' server is dead
    sent_log = tmp_path / "sent.log"
    agents = stack.agents("phones", server=server.url, pin=phone_list.pin, count=PHONES, sent_log=sent_log)
    wait_for(lambda: phones.online().count() == PHONES, timeout=120, what=f"{PHONES} phones online", every=0.5)
    # They all started at once: most were told to come back later, and came.
    assert "told to try later" in server.tail(200_000)

    server.kill_hard()
    killed_at = timezone.now()
    time.sleep(2.5)  # two of the surviving server's periodic passes (DEVICE_TICK_SECONDS=1)
    # R26: nothing refreshes a dead connection's lease, so all show offline within the TTL.
    assert phones.aggregate(seen=Max("last_seen_at"))["seen"] <= killed_at
    assert phones.online(at=killed_at + PRESENCE_TTL).count() == 0
    ids = []
    for n in range(10):
        status, body, _ = api(
            "POST", f"{api_server.url}/api/v1/send", secret=secret, body={"to": f"+3933300{n:05d}", "msg": f"storm {n}"}
        )
        assert status == 200, body
        ids.append(body["message_id"])

    restarted = time.monotonic()
    server = stack.daphne("daphne-again", port=urlsplit(server.url).port or 0, DEVICE_ACCEPT_RATE=str(ACCEPT_RATE))
    back = phones.online().filter(connected_at__gt=killed_at)
    wait_for(lambda: back.count() == PHONES, timeout=60, what="every phone back", every=0.5)
    seconds = time.monotonic() - restarted
    print(f"{PHONES} phones back {seconds:.1f} s after the restart began")
    assert seconds < 60

    log = agents.tail(200_000)
    assert "refused this phone's token" not in log  # the agent's answer to a 403
    restarted_log = server.tail(200_000)
    assert "Traceback" not in restarted_log and "ERROR" not in restarted_log
    sent = wait_for(
        lambda: Message.objects.filter(public_id__in=ids, status="sent").count() == len(ids) and sent_log.exists(),
        timeout=30,
        what="the messages sent while the server was dead, sent once back",
    )
    assert sent
    radio = sent_log.read_text().split()
    assert sorted(radio) == sorted(ids)  # each one over the radio exactly once
