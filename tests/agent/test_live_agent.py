"""The agent against a real server that crashes and comes back."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from devices import selectors
from devices.models import Device
from messaging.models import Message
from tests import factories
from tests.live import agent_phones, daphne_server, live_server_url, wait_for  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_phones_reconnect_after_a_server_crash_and_keep_sending(tmp_path, daphne_server, agent_phones, alice_list):  # noqa: F811
    sent_log = tmp_path / "sent.log"
    agent_phones(pin=alice_list.pin, count=2, sent_log=sent_log)
    online = Device.objects.filter(phone_list=alice_list, is_connected=True)
    wait_for(lambda: online.count() == 2, timeout=30, what="two phones online")

    crashed_at = timezone.now()
    daphne_server.kill()
    # No disconnect handler ran, yet the phones count as offline once their lease lapses.
    with time_machine.travel(crashed_at + timedelta(seconds=80), tick=False):
        assert selectors.online_devices(phone_list_id=alice_list.pk) == []

    daphne_server.start()
    back = Device.objects.filter(phone_list=alice_list, connected_at__gt=crashed_at)
    wait_for(lambda: back.count() == 2, timeout=60, what="both phones to reconnect")
    assert Device.objects.filter(phone_list=alice_list).count() == 2  # reused their tokens

    message = factories.make_message(phone_list=alice_list)
    wait_for(lambda: Message.objects.filter(pk=message.pk, status="sent").exists(), timeout=30, what="the message sent")
    assert sent_log.read_text().split() == [message.public_id]
