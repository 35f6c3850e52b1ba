"""Commands that run sim episodes: collect, demo, launch, eval."""
from __future__ import annotations

import argparse
from pathlib import Path

from pac_ros.cli.common import Subcommands, UsageError, add_command, add_spec_arg, load_spec
from pac_ros.seeds import EVAL_SEED

EXPERT_KNOBS = ("noise", "wrong_block_prob", "drop_prob", "pause_prob", "swap_prob")  # ExpertConfig fields
DECODINGS = ["auto", "greedy", "mean", "sample", "q_filter"]


def register(sub: Subcommands) -> None:
    from pac_ros.collect import quality_names

    p = add_command(sub, "collect", cmd_collect, "record scripted-expert episodes in sim into a dataset")
    p.add_argument("--out", type=Path, required=True, help="dataset directory (created or appended)")
    p.add_argument("--episodes", type=int, default=50, help="number of episodes")
    p.add_argument("--quality", default="mixed", choices=quality_names(), help="expert preset or blend")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
    add_spec_arg(p)
    p.add_argument("--end-after-attempt", type=int, default=None, metavar="STEPS",
                   help="end an episode this many steps after the expert released its stack (default: "
                        "record until max_episode_steps)")
    for knob in EXPERT_KNOBS:
        p.add_argument(f"--{knob.replace('_', '-')}", dest=knob, type=float, default=None,
                       help=f"override the preset's {knob}")
    p.add_argument("--dagger", metavar="CHECKPOINT", default=None,
                   help="DAgger: this checkpoint drives, the perfect expert labels every visited state")
    p.add_argument("--beta", type=float, default=0.5,
                   help="with --dagger: probability per step that the expert drives instead (default 0.5)")
    p.add_argument("-v", "--verbose", action="store_true", help="print one line per episode")

    p = add_command(sub, "demo", cmd_demo,
                    "the simulated stacking stack closed loop with the shipped model, recorded")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the dataset and video go")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--driver", default="policy", choices=["policy", "expert"])
    p.add_argument("--checkpoint", default=None,
                   help="the policy's checkpoint (default: policy.checkpoint in config/stacking.yaml)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of the first episode (then +1 each)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many wall seconds")

    p = add_command(sub, "launch", cmd_launch,
                    "start a node graph in one process (where there is no `ros2 launch`)")
    p.add_argument("graph", choices=["stacking", "robot"],
                   help="which graph (launch/<graph>.launch.py starts the same, with the same arguments)")
    p.add_argument("--driver", default="policy", choices=["policy", "expert", "teleop"],
                   help="who commands the robot (stacking: policy|expert, robot: policy|teleop)")
    p.add_argument("--use-sim-time", default=None, choices=["true", "false"],
                   help="nodes on /clock (default: true for stacking, false for robot)")
    p.add_argument("--checkpoint", default=None, help="the policy's checkpoint (default: the parameter file's)")
    p.add_argument("--namespace", default="", help="namespace for every node and topic (/clock stays global)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter, e.g. -p recorder.dataset=outputs/run1")
    p.add_argument("--params-file", default=None,
                   help="parameter file (default: config/stacking.yaml or config/robot_nodes.yaml)")
    p.add_argument("--episodes", type=int, default=None, help="stop after the recorder committed this many")
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")

    p = add_command(sub, "eval", cmd_eval, "seeded sim episodes with a checkpoint: success rate with a 95% CI")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory (or a run directory: its latest)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="first evaluation seed")
    p.add_argument("--decoding", default="auto", choices=DECODINGS,
                   help="auto: the decoding recorded with the checkpoint (its card's), else greedy")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_spec_arg(p)
    p.add_argument("--video", type=Path, default=None, help="write a GIF of the first episodes here")
    p.add_argument("--video-episodes", type=int, default=2)
    p.add_argument("--ros", action="store_true",
                   help="run through the ROS node graph (bridge + policy node + recorder) instead of in-process")
    p.add_argument("--record", type=Path, default=None, help="with --ros: keep the recorded episodes here")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per episode")


def cmd_collect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pac_ros.collect import collect, collect_dagger

    if args.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    spec = load_spec(args.spec)
    overrides = {k: getattr(args, k) for k in EXPERT_KNOBS if getattr(args, k) is not None}
    bar = tqdm(total=args.episodes, unit="ep", disable=None)
    successes = 0

    def progress(result):
        nonlocal successes
        successes += result.success
        bar.update(1)
        bar.set_postfix(success=f"{successes}/{bar.n}")
        if args.verbose:
            tqdm.write(f"episode {result.episode_index:4d} seed {result.seed:5d} {result.quality:8s} "
                       f"{'SUCCESS' if result.success else 'fail   '} {result.length:3d} steps  "
                       f"'{result.instruction}'")

    if args.dagger:
        summary = collect_dagger(args.dagger, args.out, args.episodes, args.seed, args.beta, spec=spec,
                                 progress=progress)
    else:
        summary = collect(args.out, args.episodes, args.quality, args.seed, spec,
                          overrides=overrides, progress=progress, end_after_attempt=args.end_after_attempt)
    bar.close()
    print(f"dataset:          {args.out}")
    for line in summary.lines():
        print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: the simulated stacking stack, closed loop through ROS, recorded."""
    import numpy as np

    from pac_ros.data import Dataset
    from pac_ros.evaluate import wilson_interval
    from pac_ros.nodes.closed_loop import run_closed_loop
    from pac_ros.nodes.graph import configured
    from pac_ros.sim.video import write_gif
    from pac_ros.spec import default_spec

    dataset = args.out / "dataset"
    checkpoint = args.checkpoint or configured("stacking", "policy", "checkpoint")
    print(f"stacking in sim: mujoco_bridge (lock-step) + {args.driver}"
          + (f" ({checkpoint})" if args.driver == "policy" else "") + f" + recorder -> {dataset}")

    def report(meta):
        print(f"  episode {meta['episode_index']:3d}: {'SUCCESS' if meta['success'] else 'fail   '} "
              f"in {meta['length'] - 1:3d} steps  '{meta['instruction']}'", flush=True)

    episodes = run_closed_loop(dataset, args.episodes, args.driver,
                               args.checkpoint if args.driver == "policy" else None, args.seed,
                               on_episode=report, timeout=args.timeout)
    wins = sum(bool(m["success"]) for m in episodes)
    lo, hi = wilson_interval(wins, len(episodes))
    print(f"success rate: {wins}/{len(episodes)} = {wins / len(episodes):.0%} (95% CI {lo:.0%} - {hi:.0%})")
    ds = Dataset(dataset)
    first = ds.load_episode(episodes[0]["episode_index"])
    spec = default_spec()
    frames = [np.concatenate([first.images[c][t] for c in spec.camera_names], axis=1)
              for t in range(len(first.timestamp))]
    gif = write_gif(frames, args.out / f"episode_{episodes[0]['episode_index']:06d}.gif", spec.control_rate_hz)
    print(f"recorded episodes: {dataset} ({len(ds)} in the dataset)\nvideo: {gif}")
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from pac_ros.nodes.launcher import launch

    return launch(args.graph, args.driver, args.param, args.episodes, args.duration, args.params_file,
                  args.use_sim_time, args.checkpoint or "", args.namespace)


def cmd_eval(args: argparse.Namespace) -> int:
    return _eval_through_ros(args) if args.ros else _eval_in_process(args)


def _eval_in_process(args: argparse.Namespace) -> int:
    from pac_ros.evaluate import evaluate
    from pac_ros.policy import Policy
    from pac_ros.sim.video import write_gif

    spec = load_spec(args.spec)
    policy = Policy.load(args.checkpoint, spec=spec, device=args.device, decoding=args.decoding, seed=args.seed)

    def progress(i, success, steps):
        if args.verbose:
            print(f"episode {i:4d} seed {args.seed + i}: {'SUCCESS' if success else 'fail'} in {steps} steps")

    result = evaluate(policy, args.episodes, args.seed, spec, record_frames=args.video_episodes if args.video else 0,
                      progress=progress)
    print(f"checkpoint:    {args.checkpoint} ({policy.model.config.obs_mode}, {policy.decoding}, {policy.device})")
    for line in result.lines():
        print(line)
    if args.video and result.frames:
        frames = [f for episode in result.frames for f in episode]
        print(f"video:         {write_gif(frames, args.video, spec.control_rate_hz)}")
    return 0


def _eval_through_ros(args: argparse.Namespace) -> int:
    import tempfile

    from pac_ros.evaluate import EvalResult
    from pac_ros.nodes.closed_loop import run_closed_loop

    def report(meta):
        if args.verbose:
            print(f"episode {meta['episode_index']:4d}: {'SUCCESS' if meta['success'] else 'fail'} "
                  f"in {meta['length'] - 1} steps")

    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.record or Path(tmp) / "eval"
        episodes = run_closed_loop(dataset, args.episodes, "policy", str(args.checkpoint), args.seed,
                                   overrides=[f"policy.decoding={args.decoding}"], on_episode=report)
    result = EvalResult(seeds=[args.seed + i for i in range(len(episodes))],
                        successes=[bool(m["success"]) for m in episodes],
                        returns=[float(m["return"]) for m in episodes],
                        lengths=[int(m["length"]) - 1 for m in episodes])
    print(f"checkpoint:    {args.checkpoint} (through the ROS node graph, lock-step)")
    for line in result.lines()[:-1]:
        print(line)
    if args.record:
        print(f"recorded:      {args.record}")
    return 0
