"""A live Phonefleet for the official SMSGate clients: Daphne with the embedded worker on the
test database, callbacks to 127.0.0.1 allowed, and two simulated phones (the reference
agent) in Alice's list that send in 10 ms and report delivery 50 ms later."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from accounts.models import Account
from devices.models import Device
from devices.smsgate import services as smsgate_services
from tests import factories
from tests.live import ROOT, LiveServer, stop_process, wait_for

# Two recipients, as the issue asks: each becomes one Phonefleet message.
RECIPIENTS = ["+393331234567", "+393337654321"]


@dataclass(frozen=True)
class Live:
    url: str
    login: str
    password: str
    api_key: str
    phones: list[str]


@pytest.fixture
def live_smsgate(tmp_path, alice, alice_list) -> Iterator[Live]:
    Account.objects.filter(pk=alice.pk).update(balance=1000)
    _key, api_key = factories.make_api_key(account=alice, default_list=alice_list)
    # What the SMSGate app's sign-up gives a list: a login and password (Basic auth).
    login, password = smsgate_services._create_login(phone_list=alice_list)
    env = {"EMBEDDED_WORKER": "true", "DEVICE_TICK_SECONDS": "1", "IPN_ALLOW_PRIVATE_NETWORKS": "true"}
    with LiveServer(tmp_path, DEBUG="false", **env) as server:
        command = [sys.executable, "-m", "agent", "--server", server.url, "--pin", alice_list.pin, "--count", "2"]
        command += ["--send-time", "0.01", "--delivery-delay", "0.05", "--log-level", "WARNING"]
        command += ["--token-file", str(tmp_path / "phone.json")]
        with (tmp_path / "agent.log").open("a") as log:
            agent = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            online = Device.objects.filter(phone_list=alice_list, is_connected=True)
            wait_for(lambda: online.count() == 2, timeout=20, what="two phones online")
            phones = sorted(online.values_list("public_id", flat=True))
            yield Live(url=server.url, login=login, password=password, api_key=api_key, phones=phones)
        finally:
            stop_process(agent)
