"""prometheus_client's multiprocess mode, with files named by process slot. Django-free.

In multiprocess mode every process writes its counters and histograms to files of its own
in one folder, and a scrape adds up every file there, so any process can answer for all
of them. The library names those files by pid: every process that ever ran leaves its
files behind, and gunicorn replaces a worker every few thousand requests (`max_requests`),
so the folder, and the work of every scrape, would grow without end.

Here a process names its files by a *slot* instead: the lowest number N whose lock file
`slot-N.lock` it can lock (flock) without waiting. It holds that lock while it lives and
the kernel releases it when the process ends, however it ends (kill -9 too). The next
process to take slot N opens the files its predecessor left and carries on from their
counts, so every sum stays monotonic and the folder holds one set of files per process
that ran *at the same time*. Only counters and histograms may be used this way (a gauge
would carry a dead process's value over); state is computed when scraped.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from prometheus_client import values


class ProcessSlot:
    """The process identifier prometheus_client names its files by: "slot<N>", N being
    the lowest slot this process could lock in `folder`. A forked child takes its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = 0
        self.name = ""
        self.fd = -1
        self.guard = threading.Lock()

    def __call__(self) -> str:
        # prometheus_client calls this before every increment: one getpid() when unchanged.
        if os.getpid() != self.pid:
            with self.guard:
                if os.getpid() != self.pid:
                    self._take()
        return self.name

    def _take(self) -> None:
        if self.fd >= 0:
            # Inherited from the parent across fork(): closing this copy keeps the parent's
            # lock (it belongs to the open file, which the parent still has open).
            os.close(self.fd)
        number = 0
        while True:
            fd = os.open(self.folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process holds it
                number += 1
                continue
            self.pid, self.name, self.fd = os.getpid(), f"slot{number}", fd
            return


def share_metrics_between_processes(folder: str) -> None:
    """Switches prometheus_client to multiprocess mode in `folder` (created if missing),
    with files named by process slot. Call before any metric is created; the folder must
    also be in the environment as PROMETHEUS_MULTIPROC_DIR, where the library reads it."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier=ProcessSlot(path))
