"""Policy node latency in the closed loop: bridge + policy node + recorder in one process.

    .venv/bin/python bench/bench_policy_node.py [--checkpoint models/pac_tiny_pixels] [--ticks 1000]
        [--mode lockstep|realtime] [--device cpu|cuda|auto] [--presets base xl] [--precision fp32 bf16]
        [--real-time-factor 2] [--no-render]

From /pac/status of every tick: input_to_command (arrival of the newest input the
model used -> command published) and the tick's own compute time, p50/p99/max, and
how many ticks held instead of acting. Also the success of the episodes it ran.

Each run is one graph; runs are the checkpoint, then (``--presets``) an untrained model of
each named preset with the checkpoint's observation mode, control and robot (latency does
not depend on the weights), each at every ``--precision``; their rows print side by side.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.logging import LoggingSeverity  # noqa: E402

from pac_ros.nodes.common import STATUS, init_ros  # noqa: E402
from pac_ros.nodes.launcher import GraphRunner  # noqa: E402


def untrained_checkpoint(like: str, preset_name: str, out: Path, obs_mode: str | None = None) -> Path:
    """A deployable checkpoint of ``preset_name`` (seeded initial weights) for the robot,
    observation mode (unless ``obs_mode``) and control of the checkpoint ``like``."""
    from pac_ros.checkpoint import checkpoint_meta, read_meta, save_deployable
    from pac_ros.model import PACConfig, PACModel, preset
    from pac_ros.paths import existing_or_shared
    from pac_ros.spec import Spec

    meta = read_meta(existing_or_shared(like))
    base = PACConfig.from_dict(meta["model_config"])
    cfg = preset(preset_name, obs_mode=obs_mode or base.obs_mode, control=base.control, image_size=base.image_size,
                 max_instruction_len=base.max_instruction_len)
    torch.manual_seed(0)
    model = PACModel(cfg, Spec.from_dict(meta["spec"], "checkpoint spec"))
    return save_deployable(out / preset_name, model, meta=checkpoint_meta(model, preset_name, untrained=True))


def run_graph(args, checkpoint: str, precision: str, dataset: str) -> dict:
    statuses: list[dict] = []
    arrivals: list[float] = []
    overrides = [f"recorder.dataset={dataset}", f"policy.checkpoint={checkpoint}", f"policy.device={args.device}",
                 f"policy.precision={precision}", f"policy.cuda_graph={str(args.cuda_graph).lower()}",
                 f"mujoco_bridge.mode={args.mode}", "mujoco_bridge.seed=200000",
                 f"mujoco_bridge.real_time_factor={args.real_time_factor}"]
    if args.no_render:
        overrides.append("mujoco_bridge.render=false")
    runner = GraphRunner("stacking", "policy", overrides)
    for node in runner.nodes.values():
        node.get_logger().set_level(LoggingSeverity.WARN)
    probe = rclpy.create_node("latency_probe")

    def on_status(m):
        arrivals.append(time.monotonic())
        statuses.append({kv.key: kv.value for kv in m.values})

    probe.create_subscription(DiagnosticStatus, STATUS, on_status, 100)
    runner.executor.add_node(probe)
    start = time.perf_counter()
    runner.spin(until=lambda: len(statuses) >= args.ticks, timeout=1800)
    wall = time.perf_counter() - start
    policy = runner.nodes["policy"].policy
    recorder = runner.nodes["recorder"]
    recorder.abandon("benchmark done")
    recorder.flush()
    committed = list(recorder.committed)
    runner.executor.remove_node(probe)
    probe.destroy_node()
    runner.close()
    from pac_ros.data import Dataset

    episodes = Dataset(dataset).episodes if committed else []
    return {"statuses": statuses, "arrivals": arrivals, "wall": wall, "episodes": episodes,
            "device": str(policy.device), "graph": policy.cuda_graph, "params": policy.meta["n_parameters"]}


def summary(name: str, precision: str, run: dict, args) -> str:
    statuses = run["statuses"]
    ok = [s for s in statuses if s["mode"] == "ok"]
    e2e = np.array([float(s["input_to_command_ms"]) for s in ok if s.get("input_to_command_ms")])
    tick = np.array([float(s["latency_ms"]) for s in ok])
    pct = (lambda v, q: f"{np.percentile(v, q):.2f}") if len(ok) else (lambda v, q: "-")
    missed = "-"
    if args.mode == "realtime":  # wall-clock gaps between ticks: a gap of k periods missed k - 1 ticks
        from pac_ros.spec import default_spec

        period = default_spec().control_period / args.real_time_factor
        gaps = np.diff(run["arrivals"]) / period
        n = int(np.sum(np.maximum(np.round(gaps) - 1, 0)))
        missed = f"{n} (interval max {gaps.max() * period * 1e3:.0f} ms)"
    wins = sum(bool(m["success"]) for m in run["episodes"])
    episodes = "- (no cameras: nothing to record)" if args.no_render else f"{len(run['episodes'])} ({wins})"
    return (f"| {name} | {run['params'] / 1e6:.2f}M | {run['device']} | {precision} | "
            f"{'yes' if run['graph'] else 'no'} | {len(statuses)} in {run['wall']:.1f} s | "
            f"{pct(e2e, 50)} / {pct(e2e, 99)} / {e2e.max() if len(e2e) else float('nan'):.2f} | "
            f"{pct(tick, 50)} / {pct(tick, 99)} | {len(statuses) - len(ok)} | {missed} | "
            f"{episodes} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: policy.checkpoint in config/stacking.yaml")
    parser.add_argument("--presets", nargs="*", default=[],
                        help="also run an untrained model of each preset (figures for sizes not trained)")
    parser.add_argument("--obs-mode", default=None, choices=["pixels", "features", "pixels+features"],
                        help="observation mode of the --presets models (default: the checkpoint's)")
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--mode", default="lockstep", choices=["lockstep", "realtime"])
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="realtime mode: sim seconds per wall second (2: the 10 Hz spec ticks at 20 Hz)")
    parser.add_argument("--device", default="cpu", help="the policy node's device: cpu | cuda | auto")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--cuda-graph", default=True, action=argparse.BooleanOptionalAction,
                        help="the node's cuda_graph parameter (used on CUDA with greedy/mean decoding)")
    parser.add_argument("--no-render", action="store_true",
                        help="the bridge publishes no camera images (enough for a features-mode model)")
    args = parser.parse_args()

    if args.checkpoint is None:
        from pac_ros.nodes.graph import configured

        args.checkpoint = configured("stacking", "policy", "checkpoint")
    init_ros(domain_id=94)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [(Path(args.checkpoint).name, args.checkpoint)]
        for name in args.presets:
            t = time.perf_counter()
            label = f"{name} (untrained{', ' + args.obs_mode if args.obs_mode else ''})"
            models.append((label, str(untrained_checkpoint(args.checkpoint, name, Path(tmp), args.obs_mode))))
            print(f"built an untrained {name} checkpoint in {time.perf_counter() - t:.1f} s", flush=True)
        for i, (name, path) in enumerate(models):
            for precision in args.precision:
                run = run_graph(args, path, precision, f"{tmp}/ds{len(rows)}")
                rows.append(summary(name, precision, run, args))
                print(rows[-1], flush=True)
            if i:
                Path(path, "model.safetensors").unlink()  # free the disk before the next preset
    rclpy.try_shutdown()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    rate = f" at real-time factor {args.real_time_factor:g}" if args.mode == "realtime" else ""
    print(f"closed loop, bridge {args.mode}{rate}; times in ms: input -> command published, "
          "tick compute (act + publish)")
    print("| model | params | device | precision | CUDA graph | ticks | input -> command p50 / p99 / max "
          "| tick p50 / p99 | held | missed | episodes (success) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
