"""Ways to put an SMS on the air: `simulate` (tests, demo, benchmarks) and `termux`
(a real Android phone running Termux with the termux-api package)."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class SendResult:
    status: str  # "sent" or "failed"
    error: str = ""


class Backend:
    """What the agent needs from a radio."""

    name = "base"
    # Seconds until a delivery report arrives after `sent`; None = the radio gives none.
    delivery_seconds: float | None = None

    async def send(self, *, to: str, text: str, sim: int | None) -> SendResult:
        raise NotImplementedError

    async def delivered(self) -> bool:
        """Waits for the delivery report of the last send; True if it was delivered."""
        return False

    async def battery(self) -> int | None:
        return None

    async def received(self) -> list[dict[str, Any]]:
        """New SMS since the last call: [{"id", "from", "msg", "at", "sim"}]."""
        return []


@dataclass
class SimulateBackend(Backend):
    """A pretend radio: takes `send_seconds`, fails with `failure_rate`, and reports delivery
    after `delivery_seconds` (None: never). `sent_log` appends one line per radio send."""

    send_seconds: float = 0.2
    failure_rate: float = 0.0
    delivery_seconds: float | None = 1.0
    sent_log: Path | None = None
    seed: int | None = None
    radio_sends: list[str] = field(default_factory=list)

    name = "simulate"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def send(self, *, to: str, text: str, sim: int | None) -> SendResult:
        await asyncio.sleep(self.send_seconds)
        self.radio_sends.append(to)
        if self.rng.random() < self.failure_rate:
            return SendResult("failed", "Simulated radio failure.")
        return SendResult("sent")

    def log_send(self, message_id: str) -> None:
        if self.sent_log is not None:
            with self.sent_log.open("a") as handle:
                handle.write(message_id + "\n")

    async def delivered(self) -> bool:
        if self.delivery_seconds is None:
            return False
        await asyncio.sleep(self.delivery_seconds)
        return True

    async def battery(self) -> int | None:
        return 100


class TermuxBackend(Backend):
    """Sends with termux-api's `termux-sms-send -n NUMBER [-s SLOT]`, the text on its
    standard input; reads the inbox with `termux-sms-list`. Termux gives no delivery
    reports, so messages end `sent`."""

    name = "termux"
    SEND_TIMEOUT = 60.0

    def __init__(self) -> None:
        self.seen_inbox: set[str] = set()
        self.primed = False

    async def _run(self, *args: str, timeout: float, stdin: str | None = None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), timeout)
        except TimeoutError:
            process.kill()
            return -1, "", f"{args[0]} timed out"
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def send(self, *, to: str, text: str, sim: int | None) -> SendResult:
        args = ["termux-sms-send", "-n", to]
        if sim is not None:
            # Our `sim` counts from 1; termux-api's slot is Android's SIM slot index, from 0.
            args += ["-s", str(sim - 1)]
        try:
            # On standard input, not as arguments: the script reads its options with getopts
            # (a text starting with "-" would be taken for one) and passes arguments through
            # echo (which may rewrite backslashes).
            code, _out, err = await self._run(*args, timeout=self.SEND_TIMEOUT, stdin=text)
        except FileNotFoundError:
            return SendResult("failed", "termux-sms-send not found: install termux-api.")
        if code != 0:
            return SendResult("failed", (err.strip() or f"termux-sms-send exited with {code}")[:500])
        return SendResult("sent")

    async def battery(self) -> int | None:
        try:
            code, out, _err = await self._run("termux-battery-status", timeout=10)
            return int(json.loads(out)["percentage"]) if code == 0 else None
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    async def received(self) -> list[dict[str, Any]]:
        try:
            code, out, _err = await self._run("termux-sms-list", "-t", "inbox", "-l", "50", timeout=20)
            rows = json.loads(out) if code == 0 else []
        except (FileNotFoundError, ValueError):
            return []
        fresh = []
        for row in rows:
            key = str(row.get("_id") or f"{row.get('number')}|{row.get('received')}|{row.get('body')}")
            if key in self.seen_inbox:
                continue
            self.seen_inbox.add(key)
            fresh.append(
                {"id": key, "from": row.get("number", ""), "msg": row.get("body", ""), "at": _termux_time(row)}
            )
        if not self.primed:
            # The first read is the existing inbox: remember it, report only what comes next.
            self.primed = True
            return []
        return fresh


def _termux_time(row: dict[str, Any]) -> str | None:
    """termux-sms-list shows the phone's local time without a zone; make it explicit."""
    try:
        return datetime.fromisoformat(str(row.get("received", "")).replace(" ", "T")).astimezone().isoformat()
    except ValueError:
        return None
