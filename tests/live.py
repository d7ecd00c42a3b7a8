"""Live servers for tests (Daphne, or gunicorn): started on a free port, on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The test database, as a URL a server process can open."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    """Polls `condition` until it is truthy (returns it) or fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then waits; SIGKILL if it does not stop in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LiveServer:
    """Daphne serving config.asgi on one port, on the test DB, with `env` on top of this
    process's environment; it can be killed and started again on the same port."""

    def __init__(self, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "daphne.log"
        self.env = env
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"]

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": database_url(), "SECRET_KEY": settings.SECRET_KEY, **self.env}
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(self._answers, timeout=30, what="daphne to start")
        except BaseException:
            self.kill()  # not left running when it never came up
            raise

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
        stop_process(self.process)
        self.process = None


class GunicornServer(LiveServer):
    """gunicorn serving config.wsgi (the production server for `/api/` and `/tools/api.pl`)."""

    def __init__(self, log_dir: Path, **env: str) -> None:
        super().__init__(log_dir, **env)
        self.log_path = log_dir / "gunicorn.log"

    def command(self) -> list[str]:
        bind = f"127.0.0.1:{self.port}"
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "-b",
            bind,
            "-w",
            "1",
            "--log-level",
            "warning",
        ]


@pytest.fixture
def daphne_server(tmp_path):
    """Daphne with the embedded worker and a 1 s device tick."""
    with LiveServer(tmp_path, EMBEDDED_WORKER="true", DEVICE_TICK_SECONDS="1", DEBUG="false") as server:
        yield server


@pytest.fixture
def live_server_url(daphne_server):
    """The base URL of a live Daphne server (see LiveServer)."""
    return daphne_server.url


@pytest.fixture
def agent_phones(tmp_path, live_server_url):
    """Starts `python -m agent` with N simulated phones (send time 10 ms, no delivery
    reports); returns a starter. Each phone's token and outcomes go to tmp_path/phones."""
    started: list[subprocess.Popen] = []

    def start(
        *, pin: str, count: int, sent_log: Path, name: str = "phone", extra: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        """`name` names the phones and their token files (one per agent process); `extra`
        are further agent options (e.g. `--fail-with RESULT_ERROR_RADIO_OFF`)."""
        command = [sys.executable, "-m", "agent", "--server", live_server_url, "--pin", pin, "--count", str(count)]
        command += ["--send-time", "0.01", "--delivery-delay", "-1", "--log-level", "INFO", "--name", name, *extra]
        command += ["--token-file", str(tmp_path / "phones" / f"{name}.json"), "--sent-log", str(sent_log)]
        with (tmp_path / "agent.log").open("a") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)
