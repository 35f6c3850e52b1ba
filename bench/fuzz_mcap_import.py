"""Long fuzz run of the MCAP import: mutated bags through `import_mcap`, counted by outcome.

    PYTHONPATH=. .venv/bin/python bench/fuzz_mcap_import.py --n 10000

Cases come from test/mcap_fuzz.py (the same generator and property check as
test/test_fuzz_mcap_import.py): case ``i`` is the seed bag mutated by ``random.Random(i)``,
so ``--start i --n 1`` reproduces one. Work files go to a temporary folder (under /dev/shm
when it exists). Prints the counts (inputs, clean imports, clear refusals, crashes, hangs,
memory, writes outside) and the first failures; exits 1 on any crash, hang, memory excess or
write outside the output (and dies with a traceback, also non-zero, if one case stays in C code
past three times its time limit, where the per-case alarm cannot stop it).
"""
from __future__ import annotations

import argparse
import faulthandler
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))

import mcap_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of cases")
    parser.add_argument("--start", type=int, default=0, help="number of the first case")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per case")
    parser.add_argument("--show", type=int, default=5, help="failures to print in full")
    parser.add_argument("--verbose", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="fuzz_mcap_", dir=base))
    counts: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    failures = []
    started = time.perf_counter()
    try:
        seeds = mcap_fuzz.write_seed_bags(root / "seeds")
        for number in range(args.start, args.start + args.n):
            folder = root / "case"
            folder.mkdir()
            # a hang in C code, where the per-case alarm cannot interrupt it, kills the run with a traceback
            faulthandler.dump_traceback_later(3 * args.seconds, exit=True)
            try:
                bag, done = mcap_fuzz.make_case(seeds, number, folder)
                outcome = mcap_fuzz.run_case(bag, folder / "out", seconds=args.seconds, watch=folder)
            finally:
                faulthandler.cancel_dump_traceback_later()
                shutil.rmtree(folder, ignore_errors=True)
            counts[outcome.kind] += 1
            if outcome.kind == "refused":
                refusals[_gist(outcome.detail)] += 1
            if outcome.kind in mcap_fuzz.FAILURES:
                failures.append((number, done, outcome))
            if args.verbose:
                print(f"case {number}: {outcome.kind}: {'; '.join(done)}: {outcome.detail[:200]}", flush=True)
            elif (number - args.start + 1) % 500 == 0:
                print(f"{number - args.start + 1} cases, {time.perf_counter() - started:.0f} s: {dict(counts)}",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - started
    print(f"\ninputs {sum(counts.values())}  clean imports {counts['clean']}  clear refusals {counts['refused']}  "
          f"crashes {counts['crash']}  hangs {counts['hang']}  memory {counts['memory']}  "
          f"writes outside {counts['outside']}  wall {wall:.0f} s ({wall / max(1, sum(counts.values())):.3f} s/case)")
    print("most common refusals:")
    for gist, n in refusals.most_common(30):
        print(f"  {n:6d}  {gist}")
    for number, done, outcome in failures[: args.show]:
        print(f"\ncase {number} ({'; '.join(done)}): {outcome.kind}\n{outcome.detail}")
    return 1 if failures else 0


def _gist(message: str) -> str:
    """A refusal without its paths and numbers, to group alike ones."""
    text = message.split(": ", 1)[-1]
    return "".join("#" if c.isdigit() else c for c in text)[:110]


if __name__ == "__main__":
    sys.exit(main())
