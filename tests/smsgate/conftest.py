"""A live Daphne server on a free port, sharing the test database, for replaying the
SMSGate app's requests over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings

from devices.smsgate import services as smsgate
from tests.live import LiveServer

USER_AGENT = "me.capcom.smsgateway/1.68.0"


class SMSGateServer(LiveServer):
    @property
    def mobile(self) -> str:
        return f"{self.url}/api/mobile/v1"


@pytest.fixture(scope="module")
def daphne_process(django_db_setup, tmp_path_factory) -> Iterator[SMSGateServer]:
    """Daphne running `config.asgi` against the test database (module-scoped: tests
    create their own data, which the server sees once committed)."""
    with SMSGateServer(
        tmp_path_factory.mktemp("daphne"),
        API_KEY_SECRET=settings.API_KEY_SECRET,
        EMBEDDED_WORKER="false",
        SMSGATE_SSE_KEEPALIVE_SECONDS="0.3",
        DJANGO_SETTINGS_MODULE="config.settings",
    ) as server:
        yield server


@pytest.fixture
def server(daphne_process, transactional_db) -> SMSGateServer:
    return daphne_process


@pytest.fixture
def mobile_token(alice_list) -> str:
    _row, secret = smsgate.create_enrolment_token(phone_list=alice_list)
    return secret


@pytest.fixture
def app(server) -> Iterator[httpx.Client]:
    """An HTTP client that talks like the app: its User-Agent, JSON, the base URL."""
    with httpx.Client(base_url=server.mobile, headers={"User-Agent": USER_AGENT}, timeout=10) as client:
        yield client
