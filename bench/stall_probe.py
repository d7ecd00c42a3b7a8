"""Where a process stalls: full garbage collections and event-loop lags, written as JSON
lines as they happen (bench/soak.py --stall-probe, in Daphne and in the phones' processes).

    install_gc(path)            # at import: every generation-2 collection, with its length
    await watch_loop(path)      # a task: every time the loop ran LAG_MS or more late
    install_log(path, "devices.fleet")  # that logger's records, DEBUG up, with their time
    install_daphne_checks(path)  # Daphne's periodic walks over every connection, 5 ms or more

PF_LAG_MS sets LAG_MS (default 100).

With PF_GC_TYPES=<file>, each generation-2 collection also writes the 25 commonest types of
the objects it kept (what survives between two passes of devices/lib/gc_policy.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

LAG_MS = float(os.environ.get("PF_LAG_MS", "100"))
TICK_S = 0.05


def _write(path: str, record: dict[str, Any]) -> None:
    with Path(path).open("a") as out:
        out.write(json.dumps({"pid": os.getpid(), "at": round(time.time(), 3), **record}) + "\n")


def install_gc(path: str) -> None:
    started: list[float] = [0.0]
    types_path = os.environ.get("PF_GC_TYPES")  # also: the types of what a collection kept

    def callback(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - started[0]) * 1000
            _write(path, {"kind": "gc2", "ms": round(ms, 1), "collected": info.get("collected", 0)})
            if types_path:
                counts: dict[str, int] = {}
                for obj in gc.get_objects():  # not the frozen ones
                    name = type(obj).__qualname__
                    counts[name] = counts.get(name, 0) + 1
                top = sorted(counts.items(), key=lambda kv: -kv[1])[:25]
                _write(types_path, {"kind": "kept", "total": sum(counts.values()), "top": top})

    gc.callbacks.append(callback)


class _LogRecords(logging.Handler):
    def __init__(self, path: str) -> None:
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        _write(self.path, {"kind": "log", "logger": record.name, "msg": record.getMessage()})


def install_log(path: str, name: str) -> None:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_LogRecords(path))


def install_daphne_checks(path: str) -> None:
    """Times Daphne's `application_checker` (every 1 s) and `timeout_checker` (every 2 s),
    each a walk over every connection of the process."""
    from daphne.server import Server

    for name in ("application_checker", "timeout_checker"):
        original = getattr(Server, name)

        def timed(self: Any, _original: Any = original, _name: str = name) -> None:
            started = time.perf_counter()
            _original(self)
            ms = (time.perf_counter() - started) * 1000
            if ms >= 5:
                _write(path, {"kind": "daphne", "check": _name, "ms": round(ms, 1)})

        setattr(Server, name, timed)


async def watch_loop(path: str) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(TICK_S)
        late = (time.perf_counter() - before - TICK_S) * 1000
        if late >= LAG_MS:
            _write(path, {"kind": "lag", "ms": round(late, 1)})


def summary(paths: list[Path]) -> dict[str, Any]:
    """Per file: generation-2 collections (count, longest) and loop lags (count, longest, and
    the five longest with their times)."""
    out: dict[str, Any] = {}
    for path in paths:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        collections = [r["ms"] for r in records if r["kind"] == "gc2"]
        lags = sorted((r for r in records if r["kind"] == "lag"), key=lambda r: -r["ms"])
        out[path.stem] = {
            "gc2": len(collections),
            "gc2_max_ms": max(collections, default=0.0),
            "gc2_total_ms": round(sum(collections), 1),
            "lags": len(lags),
            "lag_max_ms": lags[0]["ms"] if lags else 0.0,
            "longest_lags": [(r["at"], r["ms"]) for r in lags[:5]],
        }
    return out
