"""bench/harness.py's CPU attribution: per process, sampled before and after, never negative."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import harness


def test_only_growth_of_the_same_process_counts() -> None:
    before = {(10, 1): 5.0, (11, 1): 3.0, (12, 1): 9.0}
    # 10 grew by 1 s; 11 ended (its last part is missing, counted as gone); 12's pid now
    # belongs to a process started inside the window (counted whole, never 0.5 − 9.0);
    # 13 started inside the window.
    after = {(10, 1): 6.0, (12, 7): 0.5, (13, 8): 0.25}
    used, gone = harness.cpu_used(before, after)
    assert used == 1.75
    assert gone == 2


def test_a_child_that_ends_inside_the_window_never_makes_a_role_negative() -> None:
    child = subprocess.Popen([sys.executable, "-c", "sum(range(3_000_000))"])
    meter = harness.CpuMeter({"child": lambda: harness.descendants(child.pid), "me": lambda: {os.getpid()}})
    meter.start()
    child.wait()
    used, gone = meter.stop()
    assert used["child"] >= 0.0
    assert used["me"] >= 0.0
    assert gone in (0, 1)
