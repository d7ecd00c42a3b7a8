"""SMSGate Android phones benchmark: wake-up latency and drain throughput over the app's protocol.

    .venv/bin/python bench/smsgate.py [--phones 4] [--sends 40] [--backlog 300]

Everything runs on 127.0.0.1: a fresh PostgreSQL database (`phonefleet_bench_smsgate`),
Redis when REDIS_URL is set, one Daphne process, and simulated SMSGate apps that speak
exactly what the real app sends (sign-up with the list's private token, `/events`
stream, `GET /message`, `PATCH /message`).

1. wake-up: one send at a time through `POST /api/v1/send`; the time until a phone's
   event stream shows `MessageEnqueued`, and until the message is reported `Sent`
   (fetch + PATCH); p50/p95/max;
2. drain: a backlog of N queued messages, then every phone fetches and reports as fast
   as it can; messages/s, and how many messages were fetched by two phones (must be 0).

Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/phonefleet_bench_smsgate;
dropped and re-created), REDIS_URL (optional).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from collections import Counter

import httpx
from harness import PY, ROOT, base_env, free_port, manage, pct, reset_database, stop, wait_http

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/phonefleet_bench_smsgate"
UA = {"User-Agent": "me.capcom.smsgateway/1.68.0"}


def percentiles(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {pct(values, 95) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms"
    )


async def sign_up(base: str, private_token: str) -> str:
    async with httpx.AsyncClient(headers=UA) as http:
        answer = await http.post(
            f"{base}/device", json={"name": "bench"}, headers={"Authorization": f"Bearer {private_token}"}
        )
        answer.raise_for_status()
        return answer.json()["token"]


async def watch_events(base: str, token: str, seen: asyncio.Queue[float]) -> None:
    """Holds `/events` open like the app; puts the arrival time of every MessageEnqueued."""
    headers = {**UA, "Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
        async with http.stream("GET", f"{base}/events", headers=headers) as response:
            async for line in response.aiter_lines():
                if line == "event: MessageEnqueued":
                    seen.put_nowait(time.monotonic())


async def fetch_and_report(http: httpx.AsyncClient, base: str, token: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    jobs = (await http.get(f"{base}/message", params={"order": "fifo"}, headers=headers)).json()
    for job in jobs:
        patch = [{"id": job["id"], "state": "Sent", "recipients": [], "states": {}}]
        (await http.patch(f"{base}/message", json=patch, headers=headers)).raise_for_status()
    return [job["id"] for job in jobs]


async def wake_up(server: str, base: str, api_key: str, tokens: list[str], sends: int) -> None:
    seen: asyncio.Queue[float] = asyncio.Queue()
    watcher = asyncio.create_task(watch_events(base, tokens[0], seen))
    await asyncio.sleep(1.0)  # let the stream open
    wake, done = [], []
    async with httpx.AsyncClient(headers=UA) as http:
        for i in range(sends):
            while not seen.empty():
                seen.get_nowait()
            started = time.monotonic()
            answer = await http.post(
                f"{server}/api/v1/send",
                data={"to": "+393471234567", "msg": f"bench {i}"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            answer.raise_for_status()
            wake.append(await asyncio.wait_for(seen.get(), 30) - started)
            assert await fetch_and_report(http, base, tokens[0])
            done.append(time.monotonic() - started)
            await asyncio.sleep(0.6)  # outside the stream's burst window
    watcher.cancel()
    print(f"wake-up  send → MessageEnqueued: {percentiles(wake)}")
    print(f"         send → reported Sent:   {percentiles(done)}  ({sends} sends)")


async def drain(server: str, base: str, api_key: str, tokens: list[str], backlog: int) -> None:
    async with httpx.AsyncClient(headers=UA) as http:
        for i in range(backlog):
            answer = await http.post(
                f"{server}/api/v1/send",
                data={"to": "+393471234567", "msg": f"drain {i}"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            answer.raise_for_status()
    fetched: list[str] = []

    async def phone(token: str) -> None:
        async with httpx.AsyncClient(headers=UA, timeout=30) as http:
            while len(set(fetched)) < backlog:
                ids = await fetch_and_report(http, base, token)
                fetched.extend(ids)
                if not ids:
                    await asyncio.sleep(0.01)

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(phone(token) for token in tokens)), 300)
    elapsed = time.monotonic() - started
    twice = sum(1 for count in Counter(fetched).values() if count > 1)
    print(
        f"drain    {backlog} messages, {len(tokens)} phones: {backlog / elapsed:.0f} messages/s; fetched twice: {twice}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=4)
    parser.add_argument("--sends", type=int, default=40)
    parser.add_argument("--backlog", type=int, default=300)
    args = parser.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    reset_database(db_url)
    env = {**base_env(db_url, os.environ.get("REDIS_URL")), "DEBUG": "false"}
    manage(env, "migrate", "--noinput", "-v", "0")
    account = json.loads(manage(env, "createaccount", "--email", "bench@example.com", "--credit", "100000", "--json"))
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    base = f"{server}/api/mobile/v1"
    daphne = subprocess.Popen(
        [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(port, daphne, "daphne", path="/api/mobile/v1/device")
        tokens = [asyncio.run(sign_up(base, account["mobile_token"])) for _ in range(args.phones)]
        print(f"SMSGate bench: {args.phones} phones, Redis: {'yes' if os.environ.get('REDIS_URL') else 'no'}")
        asyncio.run(wake_up(server, base, account["api_key"], tokens, args.sends))
        asyncio.run(drain(server, base, account["api_key"], tokens, args.backlog))
    finally:
        stop(daphne)


if __name__ == "__main__":
    main()
