"""An ASGI application under a probe, for `bench/conn_memory.py`: the project's
(`config.asgi`) or the bare consumer's (`bench.bare_asgi`), chosen by PF_TRACE_APP, with
tracemalloc started before it is imported. SIGUSR1 writes a snapshot to the file
PF_TRACE_SNAPSHOT names (then renames it to `<name>.done`), after a full collection.

    PF_TRACE_APP=config.asgi PF_TRACE_SNAPSHOT=/tmp/snap daphne bench.traced_asgi:application
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import tracemalloc
from typing import Any

FRAMES = int(os.environ.get("PF_TRACE_FRAMES", "12"))
if FRAMES > 0:  # 0: no tracing (RSS only)
    tracemalloc.start(FRAMES)
application: Any = importlib.import_module(os.environ.get("PF_TRACE_APP", "config.asgi")).application

if os.environ.get("PF_STALL_LOG"):  # bench/stall_probe.py: full collections and loop lags
    import asyncio
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import stall_probe

    stall_probe.install_gc(os.environ["PF_STALL_LOG"])
    stall_probe.install_log(os.environ["PF_STALL_LOG"], "devices.fleet")  # each pass's timings
    stall_probe.install_daphne_checks(os.environ["PF_STALL_LOG"])
    _inner: Any = application
    _watching: list[Any] = []

    async def application(scope: Any, receive: Any, send: Any) -> Any:  # type: ignore[no-redef]
        if not _watching:  # the first call: the server's loop runs now
            _watching.append(asyncio.get_running_loop().create_task(stall_probe.watch_loop(os.environ["PF_STALL_LOG"])))
        return await _inner(scope, receive, send)


def _snapshot(_signum: int, _frame: Any) -> None:
    path = os.environ.get("PF_TRACE_SNAPSHOT", "/tmp/pf-trace.snapshot")
    gc.collect()
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(path)
    else:  # RSS only: an empty snapshot
        tracemalloc.start(1)
        tracemalloc.take_snapshot().dump(path)
        tracemalloc.stop()
    os.replace(path, f"{path}.done")


signal.signal(signal.SIGUSR1, _snapshot)

if os.environ.get("PF_PROFILE"):  # cProfile of the event-loop thread, from SIGUSR2 to SIGUSR2
    import cProfile
    import pstats

    _profile = cProfile.Profile()
    _profiling = [False]

    def _toggle_profile(_signum: int, _frame: Any) -> None:
        if not _profiling[0]:
            _profile.enable()
            _profiling[0] = True
            return
        _profile.disable()
        _profiling[0] = False
        path = os.environ["PF_PROFILE"]
        pstats.Stats(_profile).dump_stats(path)
        os.replace(path, f"{path}.done")

    signal.signal(signal.SIGUSR2, _toggle_profile)
