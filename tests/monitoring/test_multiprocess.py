"""monitoring/lib/multiprocess.py: processes of one host add their counts up in one folder,
one set of files per slot, and a process that takes a dead one's slot carries on from its
counts. Real processes (subprocess, fork, kill -9); no Django."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.live import ROOT

# Counts `argv[2]` events in the folder `argv[1]` (with `fork` in argv[3], a forked child
# counts one more), prints the counter files it sees, then stays alive until stdin has a line.
COUNTER = """
import os, sys
from pathlib import Path
from monitoring.lib.multiprocess import share_metrics_between_processes
share_metrics_between_processes(sys.argv[1])
from prometheus_client import Counter
events = Counter("events", "Things that happened.")
events.inc(int(sys.argv[2]))
if sys.argv[3:] == ["fork"]:
    child = os.fork()
    if child == 0:
        events.inc()
        os._exit(0)
    os.waitpid(child, 0)
print(sorted(p.name for p in Path(sys.argv[1]).glob("counter_*")), flush=True)
sys.stdin.readline()
"""


class Counting:
    def __init__(self, folder: Path, count: int, *extra: str) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", COUNTER, str(folder), str(count), *extra],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.files_seen = self.process.stdout.readline().strip()

    def finish(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.wait(10) == 0

    def kill_hard(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def total(folder: Path) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return registry.get_sample_value("events_total") or 0.0


def test_processes_alive_together_write_their_own_slots_and_add_up(tmp_path):
    first, second = Counting(tmp_path, 5), Counting(tmp_path, 3)
    try:
        assert first.files_seen == "['counter_slot0.db']"
        assert second.files_seen == "['counter_slot0.db', 'counter_slot1.db']"
        assert total(tmp_path) == 8
    finally:
        first.finish()
        second.finish()


def test_a_process_killed_hard_leaves_its_slot_to_the_next_which_carries_on_from_its_counts(tmp_path):
    killed = Counting(tmp_path, 5)
    killed.kill_hard()
    survivor = Counting(tmp_path, 3)
    try:
        after = Counting(tmp_path, 2)  # slot 0 is free again (the kernel dropped the lock)
        after.finish()
    finally:
        survivor.finish()
    assert sorted(p.name for p in tmp_path.glob("counter_*")) == ["counter_slot0.db", "counter_slot1.db"]
    assert total(tmp_path) == 10  # nothing the killed process counted was lost


def test_a_forked_child_counts_in_a_slot_of_its_own(tmp_path):
    parent = Counting(tmp_path, 4, "fork")
    try:
        assert parent.files_seen == "['counter_slot0.db', 'counter_slot1.db']"
        assert total(tmp_path) == 5
    finally:
        parent.finish()
