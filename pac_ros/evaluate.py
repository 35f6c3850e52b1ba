"""Seeded evaluation of a deployable policy in the simulated stacking world (no ROS).

Used by `pac-ros eval`, by training's periodic evaluation and by the benchmarks.
Evaluation seeds start at EVAL_SEED so they never coincide with collection seeds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pac_ros.policy import Policy
from pac_ros.seeds import EVAL_SEED
from pac_ros.sim.env import StackingEnv
from pac_ros.sim.perturb import Perturbation
from pac_ros.spec import Spec


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound at 0% and 100% too)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# Student's t, two-sided 95%, by degrees of freedom (beyond 30, the normal's 1.96 is within 4%)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}


def t_interval(rates: list[float]) -> tuple[float, float, float]:
    """Mean of per-run rates (one per training seed) and its 95% t-interval over the runs;
    one run has no spread to measure, so its interval is the mean itself."""
    n = len(rates)
    if n == 0:
        raise ValueError("t_interval of no runs")
    if n < 2:
        return rates[0], rates[0], rates[0]
    mean, var_of_mean = _mean_and_its_variance(rates)
    half = T_975.get(n - 1, 1.96) * math.sqrt(var_of_mean)
    return mean, mean - half, mean + half


def _mean_and_its_variance(rates: list[float]) -> tuple[float, float]:
    """The runs' mean and the variance of that mean (sample variance / n)."""
    n = len(rates)
    mean = sum(rates) / n
    return mean, sum((r - mean) ** 2 for r in rates) / (n - 1) / n


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) over training seeds and its 95% Welch interval (unequal spreads; the
    Welch-Satterthwaite degrees of freedom rounded down, so the interval errs wide)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("welch_interval needs at least two runs on each side")
    (ma, va), (mb, vb) = _mean_and_its_variance(a), _mean_and_its_variance(b)
    diff, se = ma - mb, math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = T_975.get(max(1, math.floor(df)), 1.96) * se
    return diff, diff - half, diff + half


@dataclass
class EvalResult:
    seeds: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    frames: list[list[np.ndarray]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(int(sum(self.successes)), self.n)

    def scalars(self) -> dict[str, float]:
        lo, hi = self.ci95
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "success_rate": self.success_rate, "success_ci_low": lo, "success_ci_high": hi,
            "mean_return": float(np.mean(self.returns)) if self.returns else 0.0,
            "mean_length": float(np.mean(self.lengths)) if self.lengths else 0.0,
            "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
        }

    def lines(self) -> list[str]:
        s = self.scalars()
        return [
            f"episodes:      {self.n} (seeds {self.seeds[0]}..{self.seeds[-1]})" if self.seeds else "episodes: 0",
            f"success rate:  {s['success_rate']:.1%}  (95% CI {s['success_ci_low']:.1%} - "
            f"{s['success_ci_high']:.1%})",
            f"mean return:   {s['mean_return']:.3f}",
            f"mean length:   {s['mean_length']:.1f} steps",
            f"policy latency p50 {s['latency_p50_ms']:.2f} ms, p99 {s['latency_p99_ms']:.2f} ms",
        ]


def evaluate(policy: Policy, episodes: int, seed: int = EVAL_SEED, spec: Spec | None = None,
             record_frames: int = 0, progress: Callable[[int, bool, int], None] | None = None,
             perturbation: Perturbation | None = None) -> EvalResult:
    """Run ``episodes`` seeded episodes (seeds seed, seed+1, ...) with ``policy``, in the
    world as trained or changed by ``perturbation`` (pac_ros.sim.perturb)."""
    spec = spec or policy.spec
    render = policy.model.config.uses_images or record_frames > 0
    env = StackingEnv(spec, render=render)
    if perturbation is not None:
        perturbation.apply(env)
    result = EvalResult()
    try:
        for i in range(episodes):
            obs = perturbation.reset(env, seed + i) if perturbation is not None else env.reset(seed=seed + i)
            policy.reset()
            frames: list[np.ndarray] = []
            ret, steps, success = 0.0, 0, False
            while True:
                if i < record_frames:
                    frames.append(np.concatenate([obs["images"][c] for c in spec.camera_names], axis=1))
                command, info = policy.act(obs)
                result.latencies_ms.append(info["latency_ms"])
                obs, reward, terminated, truncated, step_info = env.step(command)
                ret += reward
                steps += 1
                success = success or bool(step_info["success"])
                if terminated or truncated:
                    break
            if i < record_frames:
                frames.append(np.concatenate([obs["images"][c] for c in spec.camera_names], axis=1))
                result.frames.append(frames)
            result.seeds.append(seed + i)
            result.successes.append(success)
            result.returns.append(ret)
            result.lengths.append(steps)
            if progress is not None:
                progress(i, success, steps)
    finally:
        env.close()
    return result


def make_eval_fn(episodes: int, seed: int = EVAL_SEED, log=print) -> Callable[[Path, int], dict]:
    """For training: (checkpoint, step) -> scalars of a seeded evaluation on the CPU."""

    def eval_fn(checkpoint: Path, step: int) -> dict:
        start = time.perf_counter()
        result = evaluate(Policy.load(checkpoint, device="cpu"), episodes, seed)
        s = result.scalars()
        log(f"eval at step {step}: success {s['success_rate']:.1%} (95% CI {s['success_ci_low']:.1%}-"
            f"{s['success_ci_high']:.1%}) over {episodes} episodes, {time.perf_counter() - start:.0f} s")
        return s

    return eval_fn
