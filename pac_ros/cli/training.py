"""Learning commands: ``pac-ros train`` (one run), ``pac-ros export`` (a run's deployable weights) and
``pac-ros experiment`` (BC vs PAC, end to end)."""
from __future__ import annotations

import argparse
import sys

from pac_ros.cli.common import Subcommands, add_command

WEIGHTS = ("target", "online")  # pac_ros.learning.checkpoint's, named here so --help imports no torch


def register(sub: Subcommands) -> None:
    p = add_command(sub, "train", cmd_train, "offline PAC training from a YAML config")
    p.add_argument("--config", required=True, help="training YAML (e.g. config/train_tiny.yaml)")
    p.add_argument("--data", help="dataset root (overrides data.root)")
    p.add_argument("--out", help="run directory (overrides run.out_dir)")
    p.add_argument("--steps", type=int, help="total steps (overrides run.steps)")
    p.add_argument("--device", help="auto | cpu | cuda (overrides run.device)")
    p.add_argument("--seed", type=int, help="overrides run.seed")
    p.add_argument("--init-from", help="start from this checkpoint's or run's weights, fresh optimiser "
                                       "(overrides run.init_from; fine-tuning, e.g. a DAgger round)")
    p.add_argument("--resume", default="auto",
                   help="'auto' (newest checkpoint in the run directory, if any), 'no', or a checkpoint path")
    p.add_argument("--eval-episodes", type=int, help="evaluate each checkpoint in sim (overrides run.eval_episodes)")
    p.add_argument("--no-progress", action="store_true")

    p = add_command(sub, "export", cmd_export,
                    "a deployable checkpoint (meta.json + weights, no training state) from a training checkpoint")
    p.add_argument("checkpoint", help="training checkpoint directory (or a run directory: its latest)")
    p.add_argument("--out", required=True, help="the deployable checkpoint's directory")
    p.add_argument("--weights", choices=WEIGHTS, default="target",
                   help="target: the target network's weights, under target_update polyak the online weights' "
                        "moving average over about the last 1/tau steps; online: the last step's weights")

    p = add_command(sub, "experiment", cmd_experiment,
                    "BC vs PAC on sub-optimal data: seeds, d3rlpy peers, self-improvement, report")
    p.add_argument("--config", default="config/experiment.yaml")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    p.add_argument("--report", help="also write the Markdown report here (e.g. docs/results.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="train and evaluate this many arm/seed runs at once (processes of `threads` threads each)")


def _log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from pac_ros.learning.config import TrainConfig
    from pac_ros.learning.train import train

    cfg = TrainConfig.load(args.config)
    if args.data:
        cfg.data.root = args.data
    if args.out:
        cfg.run.out_dir = args.out
    if args.steps is not None:
        cfg.run.steps = args.steps
    if args.device:
        cfg.run.device = args.device
    if args.seed is not None:
        cfg.run.seed = args.seed
    if args.init_from:
        cfg.run.init_from = args.init_from
    if args.eval_episodes is not None:
        cfg.run.eval_episodes = args.eval_episodes
    if args.no_progress:
        cfg.run.progress = False
    resume = None if args.resume in ("no", "none", "") else args.resume
    eval_fn = None
    if cfg.run.eval_episodes > 0:
        from pac_ros.evaluate import make_eval_fn  # needs the simulator; only when asked

        eval_fn = make_eval_fn(cfg.run.eval_episodes, cfg.run.eval_seed, log=_log)
    try:
        path = train(cfg, resume=resume, eval_fn=eval_fn)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pac_ros.learning import save_weights_deployable

    out = save_weights_deployable(args.checkpoint, args.out, args.weights)
    print(f"{out}: the {args.weights} weights of {args.checkpoint}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from pac_ros.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig.load(args.config)
    if args.out:
        cfg.out_dir = args.out
    command = " ".join(["pac-ros experiment --config", args.config] + (["--out", args.out] if args.out else []) +
                       (["--report", args.report] if args.report else []) +
                       (["--jobs", str(args.jobs)] if args.jobs > 1 else []))
    run_experiment(cfg, log=_log, report=args.report, command=command, jobs=args.jobs)
    return 0
