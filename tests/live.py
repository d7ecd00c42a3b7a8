"""A live Daphne server for tests: started on a free port, on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database, as a URL the server process can open."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class LiveServer:
    """Daphne serving config.asgi on one port with the embedded worker, on the test DB;
    it can be killed and started again on the same port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "daphne.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SECRET_KEY": settings.SECRET_KEY,
            "EMBEDDED_WORKER": "true",
            "DEVICE_TICK_SECONDS": "1",
            "DEBUG": "false",
        }
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, timeout=30, what="daphne to start")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/api/device/v1/enroll", timeout=1)
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is up
        except OSError:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(self.log_path.read_text())
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no disconnect handlers run, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def daphne_server(tmp_path):
    server = LiveServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server_url(daphne_server):
    """The base URL of a live Daphne server (see LiveServer)."""
    return daphne_server.url


@pytest.fixture
def agent_phones(tmp_path, live_server_url):
    """Starts `python -m agent` with N simulated phones (send time 10 ms, no delivery
    reports); returns a starter. Each phone's token and outcomes go to tmp_path/phones."""
    started: list[subprocess.Popen] = []

    def start(*, pin: str, count: int, sent_log: Path) -> subprocess.Popen:
        command = [sys.executable, "-m", "agent", "--server", live_server_url, "--pin", pin, "--count", str(count)]
        command += ["--send-time", "0.01", "--delivery-delay", "-1", "--log-level", "INFO"]
        command += ["--token-file", str(tmp_path / "phones" / "phone.json"), "--sent-log", str(sent_log)]
        with (tmp_path / "agent.log").open("a") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
