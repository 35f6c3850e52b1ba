"""Policy node latency in the closed loop: bridge + policy node + recorder in one process.

    .venv/bin/python bench/bench_policy_node.py [--checkpoint models/pac_tiny_stacking] [--ticks 1000]
                                               [--mode lockstep|realtime]

From /pac/status of every tick: input_to_command (arrival of the newest input the
model used -> command published) and the tick's own compute time, p50/p99/max, and
how many ticks held instead of acting. Also the success of the episodes it ran.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.logging import LoggingSeverity  # noqa: E402

from pac_ros.nodes.common import STATUS, init_ros  # noqa: E402
from pac_ros.nodes.launcher import GraphRunner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/pac_tiny_stacking")
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--mode", default="lockstep", choices=["lockstep", "realtime"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    init_ros(domain_id=94)
    statuses: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = GraphRunner("stacking", "policy", [
            f"recorder.dataset={tmp}/ds", f"policy.checkpoint={args.checkpoint}", f"policy.device={args.device}",
            f"mujoco_bridge.mode={args.mode}", "mujoco_bridge.seed=200000"])
        for node in runner.nodes.values():
            node.get_logger().set_level(LoggingSeverity.WARN)
        probe = rclpy.create_node("latency_probe")
        arrivals: list[float] = []

        def on_status(m):
            arrivals.append(time.monotonic())
            statuses.append({kv.key: kv.value for kv in m.values})

        probe.create_subscription(DiagnosticStatus, STATUS, on_status, 100)
        runner.executor.add_node(probe)
        start = time.perf_counter()
        runner.spin(until=lambda: len(statuses) >= args.ticks, timeout=1800)
        wall = time.perf_counter() - start
        recorder = runner.nodes["recorder"]
        recorder.abandon("benchmark done")
        recorder.flush()
        committed = list(recorder.committed)
        from pac_ros.data import Dataset

        episodes = Dataset(f"{tmp}/ds").episodes if committed else []
        runner.executor.remove_node(probe)
        probe.destroy_node()
        runner.close()
    rclpy.try_shutdown()

    ok = [s for s in statuses if s["mode"] == "ok"]
    e2e = np.array([float(s["input_to_command_ms"]) for s in ok if s.get("input_to_command_ms")])
    tick = np.array([float(s["latency_ms"]) for s in ok])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}")
    print(f"closed loop, bridge {args.mode}, {len(statuses)} ticks in {wall:.1f} s "
          f"({len(statuses) / wall:.0f} ticks/s), checkpoint {args.checkpoint}")
    for name, values in (("input -> command published", e2e), ("tick compute (act + publish)", tick)):
        print(f"  {name:30s} p50 {np.percentile(values, 50):6.2f} ms   p99 {np.percentile(values, 99):6.2f} ms"
              f"   max {values.max():6.2f} ms")
    print(f"  ticks that held instead of acting: {len(statuses) - len(ok)} of {len(statuses)}")
    if args.mode == "realtime":  # wall-clock gaps between ticks: a gap of k periods missed k - 1 ticks
        from pac_ros.spec import default_spec

        period = default_spec().control_period
        gaps = np.diff(arrivals) / period
        missed = int(np.sum(np.maximum(np.round(gaps) - 1, 0)))
        print(f"  tick interval p50 {np.percentile(gaps, 50) * period * 1e3:.1f} ms, max "
              f"{gaps.max() * period * 1e3:.1f} ms (period {period * 1e3:.0f} ms); missed ticks: {missed} "
              f"of {len(statuses) + missed} ({missed / (len(statuses) + missed):.2%})")
    if episodes:
        wins = sum(bool(m["success"]) for m in episodes)
        print(f"  episodes completed: {len(episodes)}, success {wins}/{len(episodes)}")


if __name__ == "__main__":
    main()
