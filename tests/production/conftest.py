"""The production stack in processes: Daphne servers, `manage.py worker`, agent phones and
raw-protocol phones, all on the test database (PostgreSQL) and the shared Redis.

Every process is started in its own session (process group) and is killed at teardown,
whatever the test did. `kill_hard()` is `kill -9`: no cleanup runs in the victim.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.live import ROOT, database_url, free_port, wait_for


@pytest.fixture
def redis_only(postgres_only) -> str:
    """The shared Redis (REDIS_URL); skips without it, as `postgres_only` does without PostgreSQL."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs Redis: set REDIS_URL (CI runs this against the real server)")
    return url


# --- Processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> None:
        """`kill -9`: the process gets no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then waits; returns the exit code (SIGKILL if it does not stop in time)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_hard()
        return self.process.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Stack:
    """Starts and tracks the processes of one test."""

    folder: Path
    env: dict[str, str]
    # On top of `env` for Daphne only (the psycopg pool of the production layout).
    daphne_env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.folder / f"{name}.log"
        process = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    def daphne(self, name: str, *, flags: tuple[str, ...] = (), port: int = 0, **env: str) -> Proc:
        """Daphne on `port` (a free one by default: pass a killed one's to restart it)."""
        port = port or free_port()
        proc = self._spawn(
            name,
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *flags, "config.asgi:application"],
            {**self.daphne_env, **env},
        )
        proc.url = f"http://127.0.0.1:{port}"
        self._wait_serving(proc)
        return proc

    def gunicorn(self, name: str, *, workers: int = 2, flags: tuple[str, ...] = (), **env: str) -> Proc:
        """The WSGI server of the production layout (`/api/` and the panel)."""
        port = free_port()
        cmd = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-b", f"127.0.0.1:{port}"]
        proc = self._spawn(name, [*cmd, "-w", str(workers), "--log-level", "warning", *flags], env)
        proc.url = f"http://127.0.0.1:{port}"
        self._wait_serving(proc)
        return proc

    def _wait_serving(self, proc: Proc) -> None:
        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{proc.url}/api/v1/balance", timeout=2)
            except urllib.error.HTTPError:
                return True  # any HTTP answer: it is serving
            except OSError:
                if not proc.alive():
                    raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
                return False
            return True

        wait_for(answers, timeout=30, what=f"{proc.name} to serve")

    def worker(self, name: str = "worker", **env: str) -> Proc:
        return self._spawn(name, [sys.executable, "manage.py", "worker"], env)

    def agents(self, name: str, *, server: str, pin: str, count: int, sent_log: Path, send_time: float = 0.01) -> Proc:
        """`python -m agent` with `count` simulated phones; radio sends are logged to `sent_log`."""
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "agent",
                "--server",
                server,
                "--pin",
                pin,
                "--count",
                str(count),
                "--backend",
                "simulate",
                "--send-time",
                str(send_time),
                "--delivery-delay",
                "-1",
                "--token-file",
                str(self.folder / name / "phone.json"),
                "--sent-log",
                str(sent_log),
                "--log-level",
                "WARNING",
            ],
        )

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.alive():
                with contextlib.suppress(Exception):
                    proc.terminate(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.process.pid, signal.SIGKILL)  # anything it left in its group


@pytest.fixture
def stack(tmp_path, redis_only, db_route) -> Iterator[Stack]:
    """Processes on the test database and the shared Redis; all stopped at teardown. With
    `db_route` set to "pgbouncer" (see tests/pgbouncer.py), every process reaches the
    database through PgBouncer in transaction mode, configured as docs/deploy.md says."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=redis_only,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="false",
        EMBEDDED_WORKER="false",
        DEVICE_TICK_SECONDS="1",
        IPN_ALLOW_PRIVATE_NETWORKS="true",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    running = Stack(tmp_path, env)
    if db_route is not None:
        env.update(DATABASE_URL=db_route.url(), DATABASE_TRANSACTION_POOLING="true")
        running.daphne_env["DATABASE_POOL"] = "true"
    try:
        yield running
    finally:
        running.stop_all()


# --- HTTP -------------------------------------------------------------------------------------


def api(
    method: str, url: str, *, secret: str = "", body: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One JSON API call: (HTTP status, decoded body, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"{}"), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = {"_raw": raw.decode(errors="replace")[:500]}
        return exc.code, decoded, dict(exc.headers)


def enrol(server: str, pin: str, name: str) -> str:
    status, body, _ = api("POST", f"{server}/api/device/v1/enroll", body={"pin": pin, "name": name})
    assert status == 200, body
    return body["device_token"]


# --- Raw-protocol phones ------------------------------------------------------------------------


class RawPhones:
    """Phones speaking the protocol's frames (docs/device-protocol.md) with `websockets`, on an event loop in a thread.

    mode "send": claim every offer, "radio-send" on assign (counted), report `sent`.
    mode "hold": claim every offer and never report (a phone that took work and then died).
    mode "silent": connected and available, but never claims anything.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.lock = threading.Lock()
        self.assigned: Counter[str] = Counter()  # message id → assign frames received
        self.by_phone: Counter[str] = Counter()  # token → assign frames received
        self.radio: Counter[str] = Counter()  # message id → SMS "sent" by a phone in send mode
        self.connected: set[str] = set()
        self.errors: list[str] = []
        self.tasks: list[concurrent.futures.Future[None]] = []

    def start(self, url: str, tokens: list[str], *, mode: str) -> None:
        ws_url = url.replace("http://", "ws://") + "/ws/device/"
        for token in tokens:
            self.tasks.append(asyncio.run_coroutine_threadsafe(self._phone(ws_url, token, mode), self.loop))

    async def _phone(self, url: str, token: str, mode: str) -> None:
        import websockets

        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await ws.send(json.dumps({"type": "state", "available": True}))
                with self.lock:
                    self.connected.add(token)
                async for raw in ws:
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "offer" and mode != "silent":
                        await ws.send(json.dumps({"type": "claim", "message_id": frame["message_id"]}))
                    elif kind == "assign":
                        message_id = frame["message_id"]
                        with self.lock:
                            self.assigned[message_id] += 1
                            self.by_phone[token] += 1
                            if mode == "send":
                                self.radio[message_id] += 1
                        if mode == "send":
                            await ws.send(json.dumps({"type": "report", "message_id": message_id, "status": "sent"}))
                    elif kind == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
        except Exception as exc:  # the connection ends when a server dies: recorded, not raised
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with self.lock:
                self.connected.discard(token)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def raw_phones() -> Iterator[RawPhones]:
    phones = RawPhones()
    try:
        yield phones
    finally:
        phones.close()


# The local IPN receiver of the IPN tests (a real HTTP server in a thread).
from tests.ipn.conftest import private_ok, receiver  # noqa: E402, F401
