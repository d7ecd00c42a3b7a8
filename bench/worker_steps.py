"""What the worker's steps cost when there is nothing to do, in one process: each step of
`messaging/worker.py` called with nothing due (what an idle worker, or a busy one between
batches, does every IDLE_SLEEP or HOUSEKEEPING_IDLE_SLEEP).

    .venv/bin/python bench/worker_steps.py        # options: --calls 200 --batches 5

Sets up a fresh PostgreSQL database (`phonefleet_worker_steps`, dropped and re-created; or
WORKER_STEPS_DATABASE_URL) and prints, per step, the CPU of this process per call (median
of the batches) and of its PostgreSQL backend (all batches; /proc, 10 ms ticks).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import django_in_process
from reports import measure

DB_URL = os.environ.get("WORKER_STEPS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonefleet_worker_steps")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    django_in_process(DB_URL)
    from messaging import worker

    for path, step in zip(worker.STEPS, worker.load_steps(), strict=True):
        step()  # the first call's one-off costs (imports, caches) are not counted

        def calls(step: Callable[[], bool] = step) -> list[Callable[[], object]]:
            return [step] * args.calls

        measure(path.rsplit(".", 1)[-1], args.batches, calls)


if __name__ == "__main__":
    main()
