"""`python -m agent --server URL --pin PIN [--name N] [--count N] [--backend simulate|termux]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from agent.backends import GENERIC_FAILURE, Backend, SimulateBackend, TermuxBackend
from agent.phone import Phone
from agent.store import PhoneState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Phonefleet reference phone agent.")
    parser.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--pin", help="the list's PIN (needed only to enrol)")
    parser.add_argument("--name", default="Agent phone", help="phone name shown in the panel")
    parser.add_argument("--count", type=int, default=1, help="run N simulated phones in this process")
    parser.add_argument("--backend", choices=["simulate", "termux"], default="simulate")
    parser.add_argument(
        "--token-file", type=Path, help="where the token and sent outcomes are kept (with --count N: F-1, F-2…)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="messages one phone sends at a time")
    parser.add_argument("--send-time", type=float, default=0.2, help="simulate: seconds per send")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=None,
        help="simulate: share of sends that fail (default 0; 1 with --fail-with)",
    )
    parser.add_argument(
        "--fail-with",
        metavar="ERROR",
        help="simulate: the error failed sends report, e.g. RESULT_ERROR_RADIO_OFF (a phone whose radio is off)",
    )
    parser.add_argument(
        "--delivery-delay", type=float, default=1.0, help="simulate: seconds to a delivery report (<0: none)"
    )
    parser.add_argument("--sent-log", type=Path, help="simulate: append each radio send's message id here")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def token_file_for(base: Path | None, index: int, count: int) -> Path | None:
    if base is None or count == 1:
        return base
    return base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "termux":
        return TermuxBackend()
    failure_rate = args.failure_rate if args.failure_rate is not None else (1.0 if args.fail_with else 0.0)
    return SimulateBackend(
        send_seconds=args.send_time,
        failure_rate=failure_rate,
        fail_with=args.fail_with or GENERIC_FAILURE,
        delivery_seconds=args.delivery_delay if args.delivery_delay >= 0 else None,
        sent_log=args.sent_log,
    )


def build_phones(args: argparse.Namespace) -> list[Phone]:
    phones = []
    for index in range(max(1, args.count)):
        name = args.name if args.count == 1 else f"{args.name} {index + 1}"
        phones.append(
            Phone(
                server=args.server,
                name=name,
                pin=args.pin,
                backend=make_backend(args),
                state=PhoneState.load(token_file_for(args.token_file, index, args.count)),
                concurrency=args.concurrency,
            )
        )
    return phones


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await asyncio.gather(*(phone.run(stop) for phone in build_phones(args)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
