"""A live Daphne server on a free port, sharing the test database, for replaying the
SMSGate app's requests over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

from devices.smsgate import services as smsgate

ROOT = Path(__file__).resolve().parents[2]
USER_AGENT = "me.capcom.smsgateway/1.68.0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 5000) -> str:
        """The end of the server's stderr, for failure messages."""
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def mobile(self) -> str:
        return f"{self.url}/api/mobile/v1"


@pytest.fixture(scope="module")
def daphne_process(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    """Daphne running `config.asgi` against the test database (module-scoped: tests
    create their own data, which the server sees once committed)."""
    with django_db_blocker.unblock():
        database_url = _database_url()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "stderr.log"
    log = log_path.open("wb")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "API_KEY_SECRET": settings.API_KEY_SECRET,
        "EMBEDDED_WORKER": "false",
        "SMSGATE_SSE_KEEPALIVE_SECONDS": "0.3",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{server.mobile}/device", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"daphne did not start: {server.log_tail()}")
            time.sleep(0.05)
    yield server
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture
def server(daphne_process, transactional_db) -> LiveServer:
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
