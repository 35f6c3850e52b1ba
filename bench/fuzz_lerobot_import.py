"""Long fuzz run of the LeRobot import: mutated datasets, each imported once, outcomes counted.

    nice -n 15 .venv/bin/python bench/fuzz_lerobot_import.py --n 10000 [--seed 0] [--time-limit 20]

The cases are those of test/test_fuzz_lerobot_import.py (the generator is test/lerobot_fuzz.py):
case k of seed s is always the same input. Each is written to a fresh directory (under /dev/shm where
there is one) and imported in this process under a time limit and an address-space limit (a hang in C
code that the time limit cannot interrupt ends the run with a stack dump and a non-zero exit). Prints the
inputs, clean imports, clear refusals, crashes, hangs, excess memory, writes outside --out and reads
outside the dataset, then each failing case's number and mutations; exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from lerobot_fuzz import FAILURES, bases, case_rng, fresh, make_case, run_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="number of mutated inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first case number (to rerun one: --start K --n 1)")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds one import may take")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    logging.getLogger("pac_ros.data").setLevel(logging.ERROR)  # "closing with 1 uncommitted episode"
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    t0 = time.perf_counter()
    bases()
    counts: collections.Counter[str] = collections.Counter()
    failures: list[tuple[int, str, str, str]] = []
    slowest = (0.0, -1)
    with tempfile.TemporaryDirectory(prefix="lerobot-fuzz-", dir=scratch) as tmp:
        work = Path(tmp) / "case"
        for k in range(args.start, args.start + args.n):
            case = make_case(case_rng(args.seed, k))
            fresh(work)
            # a hang inside C code never reaches the case's timer: then dump the stacks and end the run
            faulthandler.dump_traceback_later(3 * args.time_limit + 30, exit=True)
            outcome = run_case(case, work, args.time_limit)
            faulthandler.cancel_dump_traceback_later()
            counts[outcome.kind] += 1
            slowest = max(slowest, (outcome.seconds, k))
            if outcome.failed:
                failures.append((k, outcome.kind, case.describe(), outcome.detail))
            if args.verbose:
                print(f"{k:6d} {outcome.kind:13s} {outcome.seconds:6.2f}s {case.describe()}\n       "
                      f"{outcome.detail[:300]!r}", flush=True)
            elif (k - args.start + 1) % 500 == 0:
                print(f"... {k - args.start + 1} inputs, {time.perf_counter() - t0:.0f} s, "
                      f"{sum(counts[f] for f in FAILURES)} failures", flush=True)
    wall = time.perf_counter() - t0
    print(f"seed {args.seed}, cases {args.start}..{args.start + args.n - 1}, wall {wall:.1f} s "
          f"({args.n / wall:.1f} inputs/s), slowest case {slowest[1]} at {slowest[0]:.2f} s")
    print(f"inputs           {args.n}")
    print(f"clean imports    {counts['clean']}")
    print(f"clear refusals   {counts['refused']}")
    for kind, label in (("crash", "crashes"), ("hang", "hangs"), ("memory", "excess memory"),
                        ("write_outside", "writes outside"), ("read_outside", "reads outside")):
        print(f"{label:16s} {counts[kind]}")
    for k, kind, what, detail in failures:
        print(f"\ncase {k}: {kind}: {what}\n{detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
