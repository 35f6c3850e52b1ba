"""Foundation figures: sim speed, render cost, expert quality, collection rate, disk use.

    .venv/bin/python bench/bench_foundation.py [--episodes 30] [--collect 20]

Prints measured figures only (one run, same machine, side by side).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from pac_ros.collect import collect, run_expert_episode  # noqa: E402
from pac_ros.sim.env import StackingEnv  # noqa: E402
from pac_ros.sim.expert import PRESETS, ExpertConfig, ScriptedExpert  # noqa: E402
from pac_ros.spec import default_spec  # noqa: E402


def control_steps_per_second(spec, render: bool, steps: int) -> float:
    env = StackingEnv(spec, render=render)
    obs = env.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        command = obs["joint_positions"] + rng.normal(0, 0.05, spec.action_dim)
        obs, *_ = env.step(command)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def render_ms(spec, frames: int) -> dict[str, float]:
    env = StackingEnv(spec, render=True)
    env.reset(seed=0)
    out = {}
    for cam in spec.camera_names:
        env.render_camera(cam)
        start = time.perf_counter()
        for _ in range(frames):
            env.render_camera(cam)
        out[cam] = 1000 * (time.perf_counter() - start) / frames
    env.close()
    return out


def expert_quality(spec, name: str, episodes: int) -> tuple[float, float]:
    env = StackingEnv(spec, render=False)
    wins, lengths = 0, []
    for seed in range(episodes):
        expert = ScriptedExpert(env, ExpertConfig.preset(name), seed=seed)
        success, steps, _ = run_expert_episode(env, expert, seed=10_000 + seed)
        wins += success
        lengths.append(steps)
    env.close()
    return wins / episodes, float(np.mean(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=30, help="seeded episodes per expert preset")
    parser.add_argument("--collect", type=int, default=20, help="episodes for the collection figure")
    args = parser.parse_args()
    spec = default_spec()
    substeps = round(spec.physics_rate_hz / spec.control_rate_hz)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"spec: control {spec.control_rate_hz:g} Hz, physics {spec.physics_rate_hz:g} Hz "
          f"({substeps} substeps), cameras {[f'{c.name} {c.width}x{c.height}' for c in spec.cameras]}")

    plain = control_steps_per_second(spec, render=False, steps=2000)
    rendered = control_steps_per_second(spec, render=True, steps=500)
    print("\n== sim speed (control steps/s; x real time at the control rate)")
    print(f"  without rendering: {plain:8.1f} steps/s  ({plain / spec.control_rate_hz:6.1f}x real time, "
          f"{plain * substeps:,.0f} physics steps/s)")
    print(f"  with rendering:    {rendered:8.1f} steps/s  ({rendered / spec.control_rate_hz:6.1f}x real time)")
    print(f"  rendering cost ratio: {plain / rendered:.2f}x")

    print("\n== render time per frame")
    for cam, ms in render_ms(spec, frames=300).items():
        print(f"  {cam:8s} {ms:6.2f} ms")

    print(f"\n== expert success ({args.episodes} seeded episodes per preset, seeds 10000+)")
    for name in PRESETS:
        rate, length = expert_quality(spec, name, args.episodes)
        print(f"  {name:8s} success {rate:6.1%}  mean length {length:6.1f} steps")

    with tempfile.TemporaryDirectory() as tmp:
        summary = collect(f"{tmp}/mixed", args.collect, "mixed", seed=0, spec=spec)
    print(f"\n== pac-ros collect --quality mixed --episodes {args.collect} (rendering + PNG + Parquet)")
    for line in summary.lines():
        print("  " + line)


if __name__ == "__main__":
    main()
