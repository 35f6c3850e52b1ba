"""The ``pac-ros`` command: the offline side of the package (no ROS needed)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


EXPERT_KNOBS = ("noise", "wrong_block_prob", "drop_prob", "pause_prob", "swap_prob")  # ExpertConfig fields

def _add_collect_args(p: argparse.ArgumentParser, episodes: int, quality: str) -> None:
    from pac_ros.collect import quality_names

    p.add_argument("--out", type=Path, required=True, help="dataset directory (created or appended)")
    p.add_argument("--episodes", type=int, default=episodes, help="number of episodes")
    p.add_argument("--quality", default=quality, choices=quality_names(), help="expert preset or blend")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
    p.add_argument("--spec", type=Path, default=None, help="robot/task spec YAML (default config/robot.yaml)")
    p.add_argument("--end-after-attempt", type=int, default=None, metavar="STEPS",
                   help="end an episode this many steps after the expert released its stack (default: "
                        "record until max_episode_steps)")
    for knob in EXPERT_KNOBS:
        p.add_argument(f"--{knob.replace('_', '-')}", dest=knob, type=float, default=None,
                       help=f"override the preset's {knob}")


def cmd_collect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pac_ros.collect import collect
    from pac_ros.spec import Spec, default_spec

    spec = Spec.load(args.spec) if args.spec else default_spec()
    overrides = {k: getattr(args, k) for k in EXPERT_KNOBS if getattr(args, k) is not None}
    if args.episodes < 1:
        print("error: --episodes must be >= 1", file=sys.stderr)
        return 2
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

    try:
        episodes = run_closed_loop(dataset, args.episodes, args.driver, args.checkpoint if args.driver == "policy"
                                   else None, args.seed, on_episode=report, timeout=args.timeout)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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

    try:
        return launch(args.graph, args.driver, args.param, args.episodes, args.duration, args.params_file,
                      args.use_sim_time, args.checkpoint or "", args.namespace)
    except (ValueError, FileNotFoundError) as exc:  # a driver the graph lacks, a missing parameter file, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2


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


def cmd_eval(args: argparse.Namespace) -> int:
    if args.ros:
        return _eval_through_ros(args)
    from pac_ros.evaluate import evaluate
    from pac_ros.learning.checkpoint import CheckpointError
    from pac_ros.policy import Policy
    from pac_ros.sim.video import write_gif
    from pac_ros.spec import Spec, SpecError, default_spec

    spec = Spec.load(args.spec) if args.spec else default_spec()
    try:
        policy = Policy.load(args.checkpoint, spec=spec, device=args.device, decoding=args.decoding,
                             seed=args.seed)
    except (CheckpointError, SpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

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


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.info import format_summary, summarize

    summary = summarize(Dataset(args.dataset))
    print(json.dumps(summary, indent=2) if args.json else "\n".join(format_summary(summary)))
    return 0


def cmd_dataset_validate(args: argparse.Namespace) -> int:
    from pac_ros.data.validate import validate

    report = validate(args.dataset, images=not args.no_images)
    for problem in report.problems:
        print(problem)
    per_k = report.seconds / max(report.steps, 1) * 1000
    print(f"{report.root}: {report.episodes} episodes, {report.steps} steps checked in {report.seconds:.2f} s "
          f"({per_k:.3f} s per 1000 steps): " + ("OK" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


def cmd_dataset_repair(args: argparse.Namespace) -> int:
    from pac_ros.data.repair import repair

    report = repair(args.dataset, rebuild=args.rebuild_index)
    for action in report.actions:
        print(action)
    v = report.validation
    print(f"{report.root}: " + ("nothing to repair; " if not report.actions else "")
          + f"{v.episodes} episodes, {v.steps} steps: "
          + ("valid" if v.ok else f"{len(v.problems)} problem(s) repair cannot mend:"))
    for problem in v.problems:
        print(f"  {problem}")
    return 0 if report.ok else 1


def _write_selection(out: Path, parts) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.select import write_selection

    n = write_selection(out, parts)
    ds = Dataset(out)
    print(f"{out}: {n} episodes, {ds.total_steps} steps, "
          f"{sum(bool(e['success']) for e in ds.episodes)} successes")
    return 0


def cmd_dataset_filter(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.select import select

    ds = Dataset(args.dataset)
    success = {"success": True, "failure": False, None: None}[args.outcome]
    picked = select(ds, success, args.source, args.instruction, args.start, args.stop)
    if not picked:
        print(f"error: no episode of {args.dataset} matches", file=sys.stderr)
        return 2
    return _write_selection(args.out, [(ds, picked)])


def cmd_dataset_merge(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset

    sources = [Dataset(d) for d in args.datasets]
    return _write_selection(args.out, [(ds, list(range(len(ds)))) for ds in sources])


def cmd_dataset_split(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.select import split_indices

    try:
        ds = Dataset(args.dataset)
        train, val = split_indices(len(ds), args.val_fraction, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not val:
        print(f"error: {args.dataset} has {len(ds)} episode(s); a split needs at least 2", file=sys.stderr)
        return 2
    return _write_selection(args.train, [(ds, train)]) or _write_selection(args.val, [(ds, val)])


def cmd_dataset_stats(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.stats import compute_stats, write_stats

    try:
        ds = Dataset(args.dataset)
        stats = compute_stats(ds)
        if not args.dry_run:
            print(f"wrote {write_stats(ds, stats)}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, d in stats["features"].items():
        print(f"{name} ({d['count']} rows)")
        for key in ("min", "max", "mean", "std", "q01", "q99"):
            print(f"  {key:5s} " + " ".join(f"{v:9.4f}" for v in d[key]))
    return 0


def cmd_dataset_plot(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.plots import plot_dataset

    try:
        paths = plot_dataset(Dataset(args.dataset), args.out, args.episode)
    except (ValueError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_dataset_video(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.plots import episode_frames
    from pac_ros.sim.video import write_gif

    try:
        ds = Dataset(args.dataset)
        frames = episode_frames(ds, args.episode)
    except (ValueError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(f"episode_{args.episode:06d}.gif")
    print(f"wrote {write_gif(frames, out, ds.spec.control_rate_hz)} ({len(frames)} frames)")
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:

    if args.format == "lerobot":
        from pac_ros.data.lerobot import export_lerobot

        try:
            report = export_lerobot(args.dataset, args.out, episodes=args.episodes)
        except (FileExistsError, FileNotFoundError, IndexError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for note in report.notes:
            print(f"note: {note}")
        print(report.summary())
        return 0
    if args.format != "mcap":
        print(f"error: export format {args.format!r} is not available yet", file=sys.stderr)
        return 2
    from pac_ros.data.mcap import describe_bag, export_mcap

    try:
        bag = export_mcap(args.dataset, args.out, episodes=args.episodes, commander=args.commander,
                          timeline=args.timeline, compress=args.compress)
    except (FileExistsError, FileNotFoundError, IndexError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = describe_bag(bag)
    print(f"wrote {bag}: {info['message_count']} messages over {info['duration_s']:.1f} s")
    for topic, t in sorted(info["topics"].items()):
        print(f"  {topic:32s} {t['type']:32s} {t['count']:6d}")
    return 0


IMPORTERS = {  # --format -> (module, function(source, out, spec) -> ConversionReport)
    "lerobot": ("pac_ros.data.lerobot", "import_lerobot"),
    "mcap": ("pac_ros.data.mcap", "import_mcap"),
}


def cmd_dataset_import(args: argparse.Namespace) -> int:
    import importlib

    from pac_ros.spec import Spec, default_spec

    module, function = IMPORTERS[args.format]
    convert = getattr(importlib.import_module(module), function)
    spec = Spec.load(args.spec) if args.spec else default_spec()
    report = convert(args.source, args.out, spec)
    for note in report.notes:
        print(f"note: {note}")
    print(report.summary())
    return 0


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        from pac_ros.learning.train import main as train_main
    except ImportError as exc:
        print(f"error: training is not available: {exc}", file=sys.stderr)
        return 2
    return int(train_main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pac-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="record scripted-expert episodes in sim into a dataset")
    _add_collect_args(p, episodes=50, quality="mixed")
    p.add_argument("-v", "--verbose", action="store_true", help="print one line per episode")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("demo", help="the simulated stacking stack closed loop with the shipped model, recorded")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where the dataset and video go")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--driver", default="policy", choices=["policy", "expert"])
    p.add_argument("--checkpoint", default=None,
                   help="the policy's checkpoint (default: policy.checkpoint in config/stacking.yaml)")
    p.add_argument("--seed", type=int, default=100_000, help="seed of the first episode (then +1 each)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many wall seconds")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("launch", help="start a node graph in one process (where there is no `ros2 launch`)")
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
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("eval", help="seeded sim episodes with a checkpoint: success rate with a 95% CI")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory (or a run directory: its latest)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=100_000, help="first evaluation seed")
    p.add_argument("--decoding", default="auto", choices=["auto", "greedy", "mean", "sample", "q_filter"],
                   help="auto: the decoding recorded with the checkpoint (its card's), else greedy")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--spec", type=Path, default=None, help="robot/task spec YAML (default config/robot.yaml)")
    p.add_argument("--video", type=Path, default=None, help="write a GIF of the first episodes here")
    p.add_argument("--video-episodes", type=int, default=2)
    p.add_argument("--ros", action="store_true",
                   help="run through the ROS node graph (bridge + policy node + recorder) instead of in-process")
    p.add_argument("--record", type=Path, default=None, help="with --ros: keep the recorded episodes here")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per episode")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("dataset", help="look after and convert episode datasets")
    dsub = p.add_subparsers(dest="dataset_command", required=True)

    def dataset_command(name: str, help: str, func, what: str = "dataset directory") -> argparse.ArgumentParser:
        q = dsub.add_parser(name, help=help)
        q.add_argument("dataset", type=Path, help=what)
        q.set_defaults(func=func)
        return q

    i = dataset_command("info", "episodes, steps, success, returns, sources, instructions, rates, size",
                        cmd_dataset_info)
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    v = dataset_command("validate", "check every committed episode against the index and spec (exit 1 listing "
                        "the problems)", cmd_dataset_validate)
    v.add_argument("--no-images", action="store_true", help="skip decoding the camera images")
    r = dataset_command("repair", "cut torn index lines, clear temp files, quarantine orphans, rebuild an "
                        "unreadable index from the episode files; never deletes an episode", cmd_dataset_repair)
    r.add_argument("--rebuild-index", action="store_true",
                   help="rebuild meta/episodes.jsonl and meta/tasks.jsonl from the episode files even if readable")
    f = dataset_command("filter", "a new dataset of the episodes that match (all criteria given)",
                        cmd_dataset_filter, "source dataset")
    f.add_argument("--out", type=Path, required=True, help="new dataset directory")
    f.add_argument("--outcome", choices=["success", "failure"], default=None)
    f.add_argument("--source", default=None, help="e.g. expert, policy, teleop")
    f.add_argument("--instruction", default=None, help="episodes that used this instruction")
    f.add_argument("--start", type=int, default=0, help="first episode index considered")
    f.add_argument("--stop", type=int, default=None, help="episode index where the range ends (exclusive)")
    m = dsub.add_parser("merge", help="one dataset of all episodes of several with the same spec")
    m.add_argument("datasets", type=Path, nargs="+", help="source datasets, copied in this order")
    m.add_argument("--out", type=Path, required=True, help="new dataset directory")
    m.set_defaults(func=cmd_dataset_merge)
    sp = dataset_command("split", "training and validation datasets, split by episode (seeded)",
                         cmd_dataset_split, "source dataset")
    sp.add_argument("--train", type=Path, required=True, help="new training dataset directory")
    sp.add_argument("--val", type=Path, required=True, help="new validation dataset directory")
    sp.add_argument("--val-fraction", type=float, default=0.1)
    sp.add_argument("--seed", type=int, default=0)
    st = dataset_command("stats", "per-feature statistics (min/max/mean/std/quantiles) into meta/stats.json, "
                         "which training uses for input standardisation", cmd_dataset_stats)
    st.add_argument("--dry-run", action="store_true", help="print them without writing meta/stats.json")
    pl = dataset_command("plot", "PNGs: success by source, length and return histograms, an episode's joints",
                         cmd_dataset_plot)
    pl.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    pl.add_argument("--episode", type=int, default=0, help="episode whose joint trajectories are plotted")
    vi = dataset_command("video", "a GIF of an episode's cameras with instruction and reward written on",
                         cmd_dataset_video)
    vi.add_argument("--episode", type=int, default=0)
    vi.add_argument("--out", type=Path, default=None, help="GIF path (default episode_<i>.gif)")
    e = dataset_command("export", "write episodes in another format (mcap: a rosbag2 MCAP directory)",
                        cmd_dataset_export)
    e.add_argument("--format", default="mcap", choices=["mcap", "lerobot"])
    e.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    e.add_argument("--episodes", type=int, nargs="+", default=None, help="episode indices (default all)")
    e.add_argument("--commander", default="/recorder_export",
                   help="node namespace of the stamped command topic (<commander>/command)")
    e.add_argument("--timeline", default="auto", choices=["auto", "recorded"],
                   help="auto shifts episodes whose stamps overlap the previous one")
    e.add_argument("--compress", action="store_true", help="zstd-compress the MCAP chunks")
    im = dsub.add_parser("import", help="a new dataset from another format (lerobot: a LeRobotDataset v2.1/v3.0 "
                         "directory; mcap: a rosbag2 MCAP recording of the standard topics)")
    im.add_argument("source", type=Path, help="LeRobot dataset directory or rosbag2 directory")
    im.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    im.add_argument("--out", type=Path, required=True, help="new dataset directory (must not exist or be empty)")
    im.add_argument("--spec", type=Path, default=None, help="robot/task spec YAML (default config/robot.yaml)")
    im.set_defaults(func=cmd_dataset_import)

    p = sub.add_parser("train", help="offline PAC training (see --help of the subcommand)", add_help=False)
    p.set_defaults(func=None)
    p = sub.add_parser("experiment", help="BC vs PAC on sub-optimal data, seeds, self-improvement, report "
                       "(see --help of the subcommand)", add_help=False)
    p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        return cmd_train(argparse.Namespace(), argv[1:])
    if argv and argv[0] == "experiment":
        from pac_ros.experiment import main as experiment_main

        return int(experiment_main(argv[1:]) or 0)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from pac_ros.data import DatasetError

        if isinstance(exc, DatasetError):  # bad or missing dataset: the message names it
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
