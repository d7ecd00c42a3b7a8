"""The project's ASGI application with the offer/claim path under a probe, for
`bench/send.py --trace-dispatch`: what each message went through in the Daphne that holds
the phones, and the event loop's garbage-collection pauses. Nothing here runs unless a
benchmark starts Daphne with this module; the project's own code is not changed.

    PF_DISPATCH_TRACE=/tmp/trace.json daphne bench.dispatch_trace:application

SIGUSR1 writes what was recorded to PF_DISPATCH_TRACE (then renames it to `<name>.done`)
and starts afresh. All times are time.time(), comparable with the phones' process.

Per message: `offer` (first offer event reaching a consumer), `offered` (each phone's
offer frame written: phone id → time), `claims` (phone id → time its claim reached the
claim rounds), `opened` and `awaited` (round), `settled` and `by_timer` (the round ended
by its timer rather than by the awaited phone), `db` (each database claim: phone, start,
end, won), `assign` (the `assign` frame written).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from typing import Any

from config.asgi import application  # noqa: F401  (the project, set up first)
from devices import consumers, rounds

_messages: dict[str, dict[str, Any]] = {}
_gc: list[tuple[float, float, int]] = []  # (start, seconds, generation)
_gc_started = [0.0]


def _entry(message_id: str) -> dict[str, Any]:
    found = _messages.get(message_id)
    if found is None:
        found = _messages[message_id] = {"offered": {}, "claims": {}, "db": []}
    return found


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc.append((time.time(), time.perf_counter() - _gc_started[0], info.get("generation", -1)))


gc.callbacks.append(_on_gc)

Consumer = consumers.DeviceConsumer
_message_offer = Consumer.message_offer
_send_frame = Consumer.send_frame
_send = Consumer.send


# PF_DISPATCH_PROFILE=<file>: cProfile of the event-loop thread from the first offer to
# SIGUSR1 (pstats file, `<file>.done`).
_profile: Any = None
if os.environ.get("PF_DISPATCH_PROFILE"):
    import cProfile

    _profile = cProfile.Profile()
_profiling = [False]


async def message_offer(self: Any, event: dict[str, Any]) -> None:
    if _profile is not None and not _profiling[0]:
        _profiling[0] = True
        _profile.enable()
    entry = _entry(event["frame"]["message_id"])
    entry.setdefault("offer", time.time())
    await _message_offer(self, event)


async def send(self: Any, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
    await _send(self, text_data=text_data, bytes_data=bytes_data, close=close)
    if text_data is not None and text_data.startswith('{"type":"offer"'):
        message_id = json.loads(text_data)["message_id"]
        _entry(message_id)["offered"][self.device.pk] = time.time()


async def send_frame(self: Any, frame: dict[str, Any]) -> None:
    await _send_frame(self, frame)
    if frame.get("type") == "assign":
        _entry(frame["message_id"])["assign"] = time.time()


Consumer.message_offer = message_offer  # type: ignore[method-assign]
Consumer.send = send  # type: ignore[method-assign]
Consumer.send_frame = send_frame  # type: ignore[method-assign]

Rounds = rounds.ClaimRounds
_claim = Rounds.claim
_open = Rounds._open
_settle = Rounds._settle
_time_up = Rounds._time_up


async def claim(self: Any, claimant: Any, message_id: str, *, alone: bool = False) -> Any:
    _entry(message_id)["claims"].setdefault(claimant.device.pk, time.time())
    return await _claim(self, claimant, message_id, alone=alone)


def _open_traced(self: Any, message_id: str, list_id: int, *, alone: bool) -> Any:
    opened = _open(self, message_id, list_id, alone=alone)
    entry = _entry(message_id)
    entry.setdefault("opened", time.time())
    entry.setdefault("awaited", opened.awaited)
    return opened


def _settle_traced(self: Any, message_id: str) -> None:
    _entry(message_id).setdefault("settled", time.time())
    _settle(self, message_id)


def _time_up_traced(self: Any, message_id: str, current: Any) -> None:
    if self.rounds.get(message_id) is current and not current.settling:
        _entry(message_id)["by_timer"] = True
    _time_up(self, message_id, current)


Rounds.claim = claim  # type: ignore[method-assign]
Rounds._open = _open_traced  # type: ignore[method-assign]
Rounds._settle = _settle_traced  # type: ignore[method-assign]
Rounds._time_up = _time_up_traced  # type: ignore[method-assign]

_try_claim = consumers.claims.try_claim


async def try_claim(device: Any, message_id: str) -> Any:
    started = time.time()
    outcome = await _try_claim(device, message_id)
    _entry(message_id)["db"].append((device.pk, started, time.time(), outcome[0].message is not None))
    return outcome


consumers.claims.try_claim = try_claim


def _dump(_signum: int, _frame: Any) -> None:
    global _messages, _gc
    path = os.environ.get("PF_DISPATCH_TRACE", "/tmp/pf-dispatch-trace.json")
    with open(path, "w") as out:
        json.dump({"messages": _messages, "gc": _gc}, out)
    _messages, _gc = {}, []
    if _profiling[0]:
        import pstats

        _profile.disable()
        _profiling[0] = False
        profile_path = os.environ["PF_DISPATCH_PROFILE"]
        pstats.Stats(_profile).dump_stats(profile_path)
        os.replace(profile_path, f"{profile_path}.done")
    os.replace(path, f"{path}.done")


signal.signal(signal.SIGUSR1, _dump)
