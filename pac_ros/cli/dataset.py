"""``pac-ros dataset ...``: look after and convert episode datasets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pac_ros.cli.common import Subcommands, UsageError, add_command, add_group, add_spec_arg, load_spec


def register(sub: Subcommands) -> None:
    dsub = add_group(sub, "dataset", "look after and convert episode datasets")

    def command(name: str, handler, help: str, what: str = "dataset directory") -> argparse.ArgumentParser:
        q = add_command(dsub, name, handler, help)
        q.add_argument("dataset", type=Path, help=what)
        return q

    p = command("info", cmd_info, "episodes, steps, success, returns, sources, instructions, rates, size")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = command("validate", cmd_validate,
                "check every committed episode against the index and spec (exit 1 listing the problems)")
    p.add_argument("--no-images", action="store_true", help="skip decoding the camera images")
    p.add_argument("--strict", action="store_true",
                   help="also what a dataset from someone else needs: files and links confined to the dataset, "
                        "no unexpected files, info and index fields (types, sizes, stamps, row numbering) as on "
                        "disk, PNG images always decoded, meta/stats.json as recomputed")
    p = command("repair", cmd_repair, "cut torn index lines, clear temp files, quarantine orphans, rebuild an "
                "unreadable index from the episode files; never deletes an episode")
    p.add_argument("--rebuild-index", action="store_true",
                   help="rebuild meta/episodes.jsonl and meta/tasks.jsonl from the episode files even if readable")
    p = command("filter", cmd_filter, "a new dataset of the episodes that match (all criteria given)",
                "source dataset")
    p.add_argument("--out", type=Path, required=True, help="new dataset directory")
    p.add_argument("--outcome", choices=["success", "failure"], default=None)
    p.add_argument("--source", default=None, help="e.g. expert, policy, teleop")
    p.add_argument("--instruction", default=None, help="episodes that used this instruction")
    p.add_argument("--quality", default=None, help="collected by this expert quality: perfect, noisy, swapped, ...")
    p.add_argument("--start", type=int, default=0, help="first episode index considered")
    p.add_argument("--stop", type=int, default=None, help="episode index where the range ends (exclusive)")
    p = add_command(dsub, "merge", cmd_merge, "one dataset of all episodes of several with the same spec")
    p.add_argument("datasets", type=Path, nargs="+", help="source datasets, copied in this order")
    p.add_argument("--out", type=Path, required=True, help="new dataset directory")
    p = command("split", cmd_split, "training and validation datasets, split by episode (seeded)",
                "source dataset")
    p.add_argument("--train", type=Path, required=True, help="new training dataset directory")
    p.add_argument("--val", type=Path, required=True, help="new validation dataset directory")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p = command("stats", cmd_stats, "per-feature statistics (min/max/mean/std/quantiles) into meta/stats.json, "
                "which training uses for input standardisation")
    p.add_argument("--dry-run", action="store_true", help="print them without writing meta/stats.json")
    p = command("plot", cmd_plot, "PNGs: success by source, length and return histograms, an episode's joints")
    p.add_argument("--out", type=Path, required=True, help="directory for the PNG files")
    p.add_argument("--episode", type=int, default=0, help="episode whose joint trajectories are plotted")
    p = command("video", cmd_video, "a GIF of an episode's cameras with instruction and reward written on")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="GIF path (default episode_<i>.gif)")
    p = command("export", cmd_export, "write episodes in another format (mcap: a rosbag2 MCAP directory; "
                "lerobot: a LeRobotDataset v3.0 directory)")
    p.add_argument("--format", default="mcap", choices=list(EXPORTERS))
    p.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    p.add_argument("--episodes", type=int, nargs="+", default=None, help="episode indices (default all)")
    p.add_argument("--commander", default="/recorder_export",
                   help="mcap: node namespace of the stamped command topic (<commander>/command)")
    p.add_argument("--timeline", default="auto", choices=["auto", "recorded"],
                   help="mcap: auto shifts episodes whose stamps overlap the previous one")
    p.add_argument("--compress", action="store_true", help="mcap: zstd-compress the MCAP chunks")
    p.add_argument("--video", action="store_true",
                   help="lerobot: cameras as lossless MP4 video features (H.264, PyAV) instead of PNG images")
    p = add_command(dsub, "import", cmd_import, "a new dataset from another format (lerobot: a LeRobotDataset "
                    "v2.1/v3.0 directory; mcap: a rosbag2 MCAP recording of the standard topics)")
    p.add_argument("source", type=Path, help="LeRobot dataset directory or rosbag2 directory")
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    p.add_argument("--out", type=Path, required=True, help="new dataset directory (must not exist or be empty)")
    p.add_argument("--joint-map", nargs="+", default=[], metavar="ROBOT:SPEC",
                   help="lerobot: source joint name -> spec joint name, e.g. elbow_flex.pos:elbow "
                        "(names <joint>.pos match the spec's <joint> without it)")
    p.add_argument("--joint-map-file", type=Path, default=None, metavar="FILE",
                   help="lerobot: a YAML or JSON mapping of source joint names to spec joint names")
    add_spec_arg(p)


def cmd_info(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.info import format_summary, summarize

    summary = summarize(Dataset(args.dataset))
    print(json.dumps(summary, indent=2) if args.json else "\n".join(format_summary(summary)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pac_ros.data.validate import validate

    if args.strict and args.no_images:
        raise UsageError("--strict decodes every image; drop --no-images")
    report = validate(args.dataset, images=not args.no_images, strict=args.strict)
    for problem in report.problems:
        print(problem)
    per_k = report.seconds / max(report.steps, 1) * 1000
    print(f"{report.root}: {report.episodes} episodes, {report.steps} steps checked in {report.seconds:.2f} s "
          f"({per_k:.3f} s per 1000 steps): " + ("OK" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


def cmd_repair(args: argparse.Namespace) -> int:
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


def cmd_filter(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.select import select

    ds = Dataset(args.dataset)
    success = {"success": True, "failure": False, None: None}[args.outcome]
    picked = select(ds, success, args.source, args.instruction, args.start, args.stop, args.quality)
    if not picked:
        raise UsageError(f"no episode of {args.dataset} matches")
    return _write_selection(args.out, [(ds, picked)])


def cmd_merge(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset

    sources = [Dataset(d) for d in args.datasets]
    return _write_selection(args.out, [(ds, list(range(len(ds)))) for ds in sources])


def cmd_split(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.select import split_indices

    ds = Dataset(args.dataset)
    train, val = split_indices(len(ds), args.val_fraction, args.seed)
    if not val:
        raise UsageError(f"{args.dataset} has {len(ds)} episode(s); a split needs at least 2")
    return _write_selection(args.train, [(ds, train)]) or _write_selection(args.val, [(ds, val)])


def cmd_stats(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.stats import compute_stats, write_stats

    ds = Dataset(args.dataset)
    stats = compute_stats(ds)
    if not args.dry_run:
        print(f"wrote {write_stats(ds, stats)}")
    for name, d in stats["features"].items():
        print(f"{name} ({d['count']} rows)")
        for key in ("min", "max", "mean", "std", "q01", "q99"):
            print(f"  {key:5s} " + " ".join(f"{v:9.4f}" for v in d[key]))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.plots import plot_dataset

    for path in plot_dataset(Dataset(args.dataset), args.out, args.episode):
        print(f"wrote {path}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from pac_ros.data import Dataset
    from pac_ros.data.plots import episode_frames
    from pac_ros.sim.video import write_gif

    ds = Dataset(args.dataset)
    frames = episode_frames(ds, args.episode)
    out = args.out or Path(f"episode_{args.episode:06d}.gif")
    print(f"wrote {write_gif(frames, out, ds.spec.control_rate_hz)} ({len(frames)} frames)")
    return 0


def _export_mcap(args: argparse.Namespace) -> None:
    from pac_ros.data.mcap import describe_bag, export_mcap

    bag = export_mcap(args.dataset, args.out, episodes=args.episodes, commander=args.commander,
                      timeline=args.timeline, compress=args.compress)
    info = describe_bag(bag)
    print(f"wrote {bag}: {info['message_count']} messages over {info['duration_s']:.1f} s")
    for topic, t in sorted(info["topics"].items()):
        print(f"  {topic:32s} {t['type']:32s} {t['count']:6d}")


def _export_lerobot(args: argparse.Namespace) -> None:
    from pac_ros.data.lerobot import export_lerobot

    report = export_lerobot(args.dataset, args.out, episodes=args.episodes, video=args.video)
    for note in report.notes:
        print(f"note: {note}")
    print(report.summary())


EXPORTERS = {"mcap": _export_mcap, "lerobot": _export_lerobot}  # --format -> writer (the first is the default)

IMPORTERS = {  # --format -> (module, function(source, out, spec) -> ConversionReport)
    "lerobot": ("pac_ros.data.lerobot", "import_lerobot"),
    "mcap": ("pac_ros.data.mcap", "import_mcap"),
}


def _joint_map(pairs: list[str], path: Path | None) -> dict[str, str]:
    """--joint-map-file (YAML/JSON {robot: spec}) updated by the --joint-map ROBOT:SPEC pairs."""
    import yaml

    mapping: dict[str, str] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: cannot read the joint map: {exc}") from exc
        if not (isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())):
            raise UsageError(f"{path}: a joint map is a mapping of source joint names to spec joint names")
        mapping.update(data)
    for pair in pairs:
        robot, sep, spec = pair.rpartition(":")
        if not (sep and robot and spec):
            raise UsageError(f"--joint-map {pair!r}: expected ROBOT_NAME:SPEC_NAME")
        mapping[robot] = spec
    return mapping


def cmd_export(args: argparse.Namespace) -> int:
    if args.video and args.format != "lerobot":
        raise UsageError("--video applies to --format lerobot only")
    EXPORTERS[args.format](args)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import importlib

    module, function = IMPORTERS[args.format]
    convert = getattr(importlib.import_module(module), function)
    options = {}
    if args.joint_map or args.joint_map_file:
        if args.format != "lerobot":
            raise UsageError("--joint-map and --joint-map-file apply to --format lerobot only")
        options["joint_map"] = _joint_map(args.joint_map, args.joint_map_file)
    report = convert(args.source, args.out, load_spec(args.spec), **options)
    for note in report.notes:
        print(f"note: {note}")
    print(report.summary())
    return 0
