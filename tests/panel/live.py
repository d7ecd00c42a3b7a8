"""A real Phonefleet for browser and snippet tests: Daphne in a subprocess on a free port,
with its own SQLite file, migrated, and one account from `createaccount --json` (more on
demand). Besides 127.0.0.1 it answers to PUBLIC_NAME, a name the browser tests map to
127.0.0.1: reached that way, its pages show what phones on a network are shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.live import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_NAME = "phonefleet.test"


@dataclass
class LiveServer:
    url: str
    account: dict
    process: subprocess.Popen
    log: Path
    folder: Path

    def new_account(self, email: str) -> dict:
        """Another account (with its Default list), as `createaccount --json` prints it."""
        return create_account(self.folder, email)


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'live.sqlite3'}",
        SECRET_KEY="live-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        IPN_ALLOW_PRIVATE_NETWORKS="true",
        EMBEDDED_WORKER="true",
        ALLOWED_HOSTS=f"127.0.0.1,localhost,{PUBLIC_NAME}",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_account(folder: Path, email: str) -> dict:
    """An account with 500 credits and its Default list, as `createaccount --json` prints it."""
    args = ["createaccount", "--email", email, "--credit", "500", "--password", "live pass 123", "--json"]
    return json.loads(_manage(_env(folder), *args))


def start(folder: Path) -> LiveServer:
    env = _env(folder)
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "collectstatic", "--noinput", "-v", "0")
    account = create_account(folder, "live@example.com")
    port = free_port()
    log = folder / "daphne.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/login/", timeout=1).status_code == 200:
                return LiveServer(url, account, process, log, folder)
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)  # polling a condition with a deadline, not waiting on time
    process.kill()
    raise AssertionError("daphne did not start: " + log.read_text())


def stop(server: LiveServer) -> None:
    stop_process(server.process)
