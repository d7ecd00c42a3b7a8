"""A restart of a phone fleet, simulated against the real admission (devices/lib/admission.py).

Phones whose server went away come back over the first `--spread` seconds (the agent's
jittered back-off while connections are refused); each attempt costs the process
`--parse-ms` of CPU (read the handshake, answer it) and each one taken on `--handshake-ms`
more (token check, groups, presence, `hello`), one at a time on one core. A phone told
"try later, N s" comes back within the second before N, as the agent does. Prints the
progress every 10 s and when every phone was back; no server, no network: it shows what
the admission's rules make of a storm, for a process of a given cost per connect.

    .venv/bin/python bench/restart_sim.py --phones 10000 --handshake-ms 5 --parse-ms 0.5
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.lib.admission import Admission


def simulate(phones: int, handshake_ms: float, parse_ms: float, spread: float, rate: float, seed: int) -> None:
    rng = random.Random(seed)
    admission = Admission(rate=rate, burst=int(rate), max_pending=int(rate))
    arrivals = [(rng.uniform(0, spread), phone) for phone in range(phones)]
    heapq.heapify(arrivals)
    in_progress: list[tuple[float, int]] = []  # (done at, phone)
    cpu_free_at, back, told, reported = 0.0, 0, 0, 0.0
    last = 0.0
    while arrivals or in_progress:
        if in_progress and (not arrivals or in_progress[0][0] <= arrivals[0][0]):
            last, _phone = heapq.heappop(in_progress)
            admission.leave()
            back += 1
            continue
        now, phone = heapq.heappop(arrivals)
        cpu_free_at = max(cpu_free_at, now) + parse_ms / 1000
        wait = admission.enter(now)
        if wait is None:
            cpu_free_at += handshake_ms / 1000
            heapq.heappush(in_progress, (cpu_free_at, phone))
        else:
            told += 1
            heapq.heappush(arrivals, (now + max(0.0, wait - rng.uniform(0, 1)), phone))
        if now - reported >= 10:
            reported = now
            print(f"{now:6.1f} s: {back:6d} back, {told:6d} told to try later, measured {admission.measured}")
    ideal = phones * (handshake_ms + parse_ms) / 1000
    print(f"all {phones} back after {last:.1f} s ({told} answers 'try later'; the CPU alone needs {ideal:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--handshake-ms", type=float, default=5.0, help="CPU per phone taken on")
    parser.add_argument("--parse-ms", type=float, default=0.5, help="CPU per attempt, taken on or not")
    parser.add_argument("--spread", type=float, default=15.0, help="first attempts over this many seconds")
    parser.add_argument("--accept-rate", type=float, default=300.0, help="DEVICE_ACCEPT_RATE")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    simulate(args.phones, args.handshake_ms, args.parse_ms, args.spread, args.accept_rate, args.seed)


if __name__ == "__main__":
    main()
