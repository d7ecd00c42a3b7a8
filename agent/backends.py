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
    # For "failed": what went wrong, as docs/device-protocol.md ("Failed sends") asks: an
    # Android SmsManager result name first (RESULT_ERROR_RADIO_OFF, …) or NO_SIM, then words.
    # The server reads phone-side errors as "try another phone" and recipient-side ones as final.
    error: str = ""


# The `error` values this agent reports (docs/device-protocol.md, "Failed sends").
RADIO_OFF = "RESULT_ERROR_RADIO_OFF"
NO_SERVICE = "RESULT_ERROR_NO_SERVICE"
GENERIC_FAILURE = "RESULT_ERROR_GENERIC_FAILURE"
NO_SIM = "NO_SIM"


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
    """A pretend radio: takes `send_seconds`, fails a `failure_rate` share of its sends with
    the error `fail_with` (an Android result name such as RESULT_ERROR_RADIO_OFF: a phone
    whose radio is off), and reports delivery after `delivery_seconds` (None: never).
    `sent_log` appends one line per SMS that went out (a failed send put nothing on the air)."""

    send_seconds: float = 0.2
    failure_rate: float = 0.0
    delivery_seconds: float | None = 1.0
    sent_log: Path | None = None
    seed: int | None = None
    fail_with: str = GENERIC_FAILURE
    radio_sends: list[str] = field(default_factory=list)

    name = "simulate"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    async def send(self, *, to: str, text: str, sim: int | None) -> SendResult:
        await asyncio.sleep(self.send_seconds)
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return SendResult("failed", f"{self.fail_with} (simulated)")
        self.radio_sends.append(to)
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

    async def radio_problem(self) -> str | None:
        """Why the radio cannot send now, as a report's `error`, or None (also when the
        state cannot be read: then the send is tried). `termux-sms-send` reports no send
        result at all (termux-api passes no sent intent to SmsManager), so the state is
        read first with `termux-telephony-deviceinfo` (the default SIM's)."""
        try:
            code, out, _err = await self._run("termux-telephony-deviceinfo", timeout=15)
            info = json.loads(out) if code == 0 else None
        except (FileNotFoundError, ValueError):
            return None
        return telephony_problem(info) if isinstance(info, dict) else None

    async def send(self, *, to: str, text: str, sim: int | None) -> SendResult:
        problem = await self.radio_problem()
        if problem is not None:
            return SendResult("failed", problem)
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
            return SendResult("failed", f"{GENERIC_FAILURE}: termux-sms-send not found: install termux-api.")
        if code != 0:
            reason = err.strip() or f"termux-sms-send exited with {code}"
            return SendResult("failed", f"{GENERIC_FAILURE}: {reason}"[:500])
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


# termux-telephony-deviceinfo's `sim_state`: Android's SIM_STATE_* by name, or its number
# for the states termux-api does not name (6 NOT_READY, 7 PERM_DISABLED, 8 CARD_IO_ERROR,
# 9 CARD_RESTRICTED).
SIM_UNUSABLE = {"absent", "pin_required", "puk_required", "network_locked", "7", "8", "9"}
SIM_NOT_READY = "6"


def telephony_problem(info: dict[str, Any]) -> str | None:
    """The `error` to report instead of sending, from termux-telephony-deviceinfo's JSON:
    no usable SIM, the radio off (the SIM not ready: airplane mode), or no network
    registered (no service); None when it looks able to send, or cannot tell."""
    sim_state = str(info.get("sim_state", "unknown"))
    if sim_state in SIM_UNUSABLE:
        return f"{NO_SIM} (SIM state: {sim_state})"
    if sim_state == SIM_NOT_READY or info.get("phone_type") == "none":
        return f"{RADIO_OFF} (SIM not ready: airplane mode or radio off)"
    if sim_state == "ready" and not info.get("network_operator"):
        return f"{NO_SERVICE} (no mobile network registered)"
    return None


def _termux_time(row: dict[str, Any]) -> str | None:
    """termux-sms-list shows the phone's local time without a zone; make it explicit."""
    try:
        return datetime.fromisoformat(str(row.get("received", "")).replace(" ", "T")).astimezone().isoformat()
    except ValueError:
        return None
