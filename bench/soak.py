"""Soak: the full sim stack for N minutes, then memory growth, missed ticks and the episodes.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 20] [--mode realtime|lockstep]
                                   [--checkpoint models/pac_tiny_pixels] [--out DIR] [-p NODE.PARAM=VALUE]

Bridge + policy node (the shipped model) + recorder in one process on one executor, as
`pac-ros launch stacking` runs them (pac_ros/nodes/graph.py). ``--rate`` is control ticks
per wall-clock second: the spec's control rate is 10 Hz and the shipped model only loads
with that spec, so 20 Hz runs the realtime bridge at real_time_factor 2 (the policy node
ticks on sim time). ``--mode lockstep`` steps the sim on each command as fast as the loop
goes, and runs ``minutes * 60 * rate`` ticks: the same work in less wall time.

Prints: resident memory at the end of the first minute (of ticks; of the first half in
a run under two minutes) and at the end; missed
ticks, i.e. sim steps taken without a new command since the step before (in lockstep,
watchdog steps), as a share of all steps; ticks the policy held instead of acting;
episodes run (bridge resets) and committed; and `validate` of the recorded dataset.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

ROOT = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(minutes: float, out: str | Path, rate_hz: float = 20.0, mode: str = "realtime",
         checkpoint: str | Path | None = None, device: str = "cpu", seed: int = 300_000,
         overrides: list[str] = (), progress: bool = False) -> dict:
    """Run the stack for ``minutes`` (of ticks at ``rate_hz``), recording into the dataset ``out``,
    with NODE.PARAM=VALUE ``overrides``; rclpy must be initialised. Returns the figures."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.logging import LoggingSeverity

    from pac_ros.data.validate import validate
    from pac_ros.nodes.common import STATUS
    from pac_ros.nodes.launcher import GraphRunner
    from pac_ros.spec import default_spec

    spec = default_spec()
    if checkpoint is None:  # the graph's own: policy.checkpoint in config/stacking.yaml
        from pac_ros.nodes.graph import configured

        checkpoint = configured("stacking", "policy", "checkpoint")
    ticks = int(round(minutes * 60 * rate_hz))
    first_minute = min(int(round(60 * rate_hz)), ticks // 2)  # the first half of a run under two minutes
    out = Path(out)
    runner = GraphRunner("stacking", "policy", [
        f"recorder.dataset={out}", f"policy.checkpoint={checkpoint}", f"policy.device={device}",
        f"mujoco_bridge.mode={mode}", f"mujoco_bridge.real_time_factor={rate_hz / spec.control_rate_hz}",
        f"mujoco_bridge.seed={seed}", *overrides])
    bridge, policy, recorder = (runner.nodes[n] for n in ("mujoco_bridge", "policy", "recorder"))
    for node in runner.nodes.values():
        node.get_logger().set_level(LoggingSeverity.WARN)
    counts = {"steps": 0, "missed": 0, "status": 0, "holds": 0}
    step = bridge._step

    def counted_step():  # a step without a new command since the last one is a missed tick
        if not bridge.pending_reset:
            counts["steps"] += 1
            counts["missed"] += not bridge.new_command
        step()

    bridge._step = counted_step

    def on_status(msg):
        counts["status"] += 1
        counts["holds"] += msg.message != "acting"

    probe = rclpy.create_node("soak_probe")
    probe.create_subscription(DiagnosticStatus, STATUS, on_status, 100)
    runner.executor.add_node(probe)
    rss = {"start": rss_mib()}
    start = time.perf_counter()
    try:
        runner.spin(until=lambda: counts["steps"] >= first_minute, timeout=3600 * 24)
        rss["first_minute"] = rss_mib()
        last_report = time.perf_counter()
        while counts["steps"] < ticks:
            runner.executor.spin_once(timeout_sec=0.05)
            if progress and time.perf_counter() - last_report > 60:
                last_report = time.perf_counter()
                print(f"  {counts['steps']}/{ticks} ticks, RSS {rss_mib():.1f} MiB, "
                      f"{len(recorder.committed)} episodes committed", flush=True)
        wall = time.perf_counter() - start
        rss["end"] = rss_mib()
        recorder.abandon("soak done")  # the episode in progress is cut short: not committed
        recorder.flush()
        episodes_run = bridge.episode  # the last one cut short by the end of the soak
        committed, failed = len(recorder.committed), recorder.failed
    finally:
        runner.executor.remove_node(probe)
        probe.destroy_node()
        runner.close()
    report = validate(out)
    return {
        "ticks": counts["steps"], "wall_s": wall, "ticks_per_s": counts["steps"] / wall, "mode": mode,
        "rate_hz": rate_hz, "rss_start_mib": rss["start"], "rss_first_minute_mib": rss["first_minute"],
        "first_minute_ticks": first_minute,
        "rss_end_mib": rss["end"], "rss_growth_mib": rss["end"] - rss["first_minute"],
        "missed": counts["missed"], "missed_pct": 100.0 * counts["missed"] / max(1, counts["steps"]),
        "statuses": counts["status"], "holds": counts["holds"], "episodes_run": episodes_run,
        "committed": committed, "commit_failures": failed, "valid": report.ok, "problems": report.problems[:5],
        "validated_episodes": report.episodes, "validated_steps": report.steps, "dataset": str(out),
    }


def describe(r: dict) -> str:
    return "\n".join([
        f"{r['ticks']} ticks in {r['wall_s']:.1f} s ({r['ticks_per_s']:.1f}/s, bridge {r['mode']}, "
        f"asked for {r['rate_hz']:g} Hz)",
        f"  resident memory: {r['rss_first_minute_mib']:.1f} MiB after the first minute "
        f"({r['first_minute_ticks']} ticks), {r['rss_end_mib']:.1f} MiB at the end: growth "
        f"{r['rss_growth_mib']:+.1f} MiB (at start {r['rss_start_mib']:.1f} MiB)",
        f"  missed ticks: {r['missed']} of {r['ticks']} steps ({r['missed_pct']:.2f}%); "
        f"policy held {r['holds']} of {r['statuses']} ticks",
        f"  episodes: {r['episodes_run']} run (the last cut short), {r['committed']} committed "
        f"({r['commit_failures']} failed commits); "
        f"validate: {'OK' if r['valid'] else r['problems']} ({r['validated_episodes']} episodes, "
        f"{r['validated_steps']} steps) in {r['dataset']}",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="control ticks per wall-clock second")
    parser.add_argument("--mode", default="realtime", choices=["realtime", "lockstep"])
    parser.add_argument("--checkpoint", default=None, help="default: policy.checkpoint in config/stacking.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="dataset directory to keep (default: a temporary one)")
    parser.add_argument("-p", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="a node parameter, e.g. -p policy.threads=0")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pac_ros.nodes.common import init_ros

    init_ros(domain_id=93)
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        try:
            result = soak(args.minutes, args.out or Path(tmp) / "ds", args.rate, args.mode, args.checkpoint,
                          args.device, overrides=args.overrides, progress=True)
        finally:
            import rclpy

            rclpy.try_shutdown()
        print(describe(result))
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
