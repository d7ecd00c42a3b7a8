"""CPU of the offer path in one process (docs/benchmarks.md, "Fourth pass").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/phonefleet_bench REDIS_URL=redis://127.0.0.1:6379/15 \
      .venv/bin/python bench/offer_path.py 1000

10 phones of one list connected to the ASGI application through Channels' communicator
(no network), the channel layer of the settings (Redis with REDIS_URL), and N offers
published at 200 a second as the send API publishes them (`offers.offer_message`); each
reaches one phone (directed, never opened to all: nobody claims). Prints this process's
CPU (all threads: the publisher, the layer's reader, the event loop) per offer, three
times. The database (migrated here) only holds the account, the list and the phones.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django

django.setup()
from channels.db import database_sync_to_async  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.core.management import call_command  # noqa: E402

from config.asgi import application  # noqa: E402
from devices import consumers  # noqa: E402
from messaging.services import offers  # noqa: E402
from tests import factories  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
RATE = 200.0


def setup():
    call_command("migrate", verbosity=0)
    account = factories.make_account(email=f"bench-{time.time()}@example.com")
    phone_list = factories.make_list(account=account, name=f"bench {time.time()}")
    tokens = [factories.make_enrolled_device(phone_list=phone_list, name=f"P{i}")[1] for i in range(10)]
    return phone_list, tokens


async def main():
    phone_list, tokens = await database_sync_to_async(setup)()
    consumers.claims.OFFER_WAIT_MAX = consumers.claims.OFFER_WAIT_MIN = 1000.0
    phones = []
    for token in tokens:
        ws = WebsocketCommunicator(application, "/ws/device/", headers=[(b"authorization", f"Bearer {token}".encode())])
        ok, _ = await ws.connect(timeout=10)
        assert ok
        await ws.receive_json_from(timeout=10)  # hello
        await ws.send_json_to({"type": "state", "available": True})
        phones.append(ws)
    await asyncio.sleep(1.0)

    def frames():
        return sum(ws.output_queue.qsize() for ws in phones)

    async def run(count, tag):
        base = frames()

        def publish():
            start = time.monotonic()
            for i in range(count):
                offers.offer_message(
                    message=types.SimpleNamespace(
                        public_id=f"msg_{tag}_{i}",
                        to="+393331234567",
                        text="Hello",
                        parts=1,
                        sim=None,
                        phone_list_id=phone_list.pk,
                        pinned_device_id=None,
                    )
                )
                delay = start + (i + 1) / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        t0 = time.process_time()
        await asyncio.to_thread(publish)
        for _ in range(1000):
            if frames() - base >= count:
                break
            await asyncio.sleep(0.01)
        got = frames() - base
        return (time.process_time() - t0) / count * 1000, got

    await run(200, "warm")
    for r in range(3):
        ms, got = await run(N, f"r{r}")
        print(f"offer path: {ms:.3f} ms CPU per offer (process, all threads), {got} of {N} offers reached a phone")
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
