"""`manage.py worker`: leases, expiry, scheduled sends and IPN delivery."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from messaging import worker


class Command(BaseCommand):
    help = "Run the background worker (lease and TTL expiry, scheduled sends, IPN delivery)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="run one tick and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            worker.run_tick(worker.load_steps())
            return
        stop = threading.Event()

        def finish(signum: int, frame: object) -> None:
            # SIGTERM/SIGINT: finish the current unit, then leave.
            stop.set()

        signal.signal(signal.SIGTERM, finish)
        signal.signal(signal.SIGINT, finish)
        self.stdout.write("worker running; Ctrl-C to stop")
        worker.run_forever(stop)
