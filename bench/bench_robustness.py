"""Success under what changes between a simulator and a room (pac_ros.sim.perturb).

    .venv/bin/python bench/bench_robustness.py models/pac_tiny_pixels --episodes 100

Every perturbation runs the same seeded episodes (default seeds 400000.., used by no
training run and by no model choice), so the rows differ only by the perturbation.
Prints success with its 95% Wilson interval per perturbation, side by side with the
unperturbed world, and the ratio to it.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from pac_ros.evaluate import evaluate  # noqa: E402
from pac_ros.policy import Policy  # noqa: E402
from pac_ros.sim.perturb import PERTURBATIONS, perturbation  # noqa: E402

ROBUSTNESS_SEED = 400_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model or checkpoint directories")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=ROBUSTNESS_SEED)
    parser.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=list(PERTURBATIONS))
    parser.add_argument("--decoding", default="auto")
    args = parser.parse_args()
    names = ["none", *[p for p in args.perturbations if p != "none"]]
    for ckpt in args.checkpoints:
        print(f"\n{ckpt}: {args.episodes} episodes per row, seeds {args.seed}..{args.seed + args.episodes - 1}")
        print(f"{'perturbation':18s} {'success':>8s} {'95% CI':>15s} {'vs none':>8s} {'time':>6s}")
        base = None
        for name in names:
            policy = Policy.load(ckpt, device="cpu", decoding=args.decoding, seed=args.seed)
            start = time.perf_counter()
            r = evaluate(policy, args.episodes, args.seed, perturbation=perturbation(name))
            lo, hi = r.ci95
            base = r.success_rate if name == "none" else base
            ratio = r.success_rate / base if base else float("nan")
            print(f"{name:18s} {r.success_rate:8.1%} {lo:6.1%} - {hi:6.1%} {ratio:8.2f} "
                  f"{time.perf_counter() - start:5.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
