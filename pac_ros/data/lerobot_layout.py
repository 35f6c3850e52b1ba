"""LeRobotDataset layout shared by export and import: paths, keys, staging of the output.

Paths a dataset names through its ``info.json`` templates (``data_path``, ``video_path``)
are built by ``template_path``, which allows only the documented fields and refuses any
result outside the dataset root.
"""
from __future__ import annotations

import json
import os
import re
import string
import tempfile
from pathlib import Path
from typing import Any

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.spec import Spec

V3 = "v3.0"
LEGACY_VERSIONS = ("v2.0", "v2.1")  # same layout: one parquet per episode, JSONL metadata
CHUNKS_SIZE = 1000  # files per chunk-XXX directory
DATA_FILES_SIZE_IN_MB = 100  # LeRobot's default limit for one data file
VIDEO_FILES_SIZE_IN_MB = 200  # LeRobot's default limit for one video file
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_DIR = "meta/episodes"
LEROBOT_EPISODES_META = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
EXTRA_KEY = "pac_ros"  # info.json: our spec and where the export came from
EXTRA = "pac_ros/"  # prefix of the episode columns LeRobot has no equivalent for
STAMP = "stamp"  # exact float64 observation stamps; `timestamp` is relative float32
IMAGE_PREFIX = "observation.images."
IMAGE_STATS_FRAMES = 10  # frames per episode decoded for the image statistics

# Columns import understands; anything else in a source is reported as not carried over.
KNOWN_COLUMNS = {"timestamp", STAMP, "frame_index", "episode_index", "index", "task_index",
                 "observation.state", "action", "observation.environment_state",
                 "next.reward", "next.done", "next.success"}

# The fields each template may use, by LeRobot's documentation of v2.x and v3.0.
V3_DATA_FIELDS = ("chunk_index", "file_index")
V3_VIDEO_FIELDS = ("video_key", "chunk_index", "file_index")
V2_DATA_FIELDS = ("episode_chunk", "episode_index")
V2_VIDEO_FIELDS = ("episode_chunk", "video_key", "episode_index")
SIMPLE_SPEC = r"0?[1-9]?[0-9]?d?"  # a template field's format: none, or a width up to 99 (":03d")


def video_meta_key(video_key: str, name: str) -> str:
    """An episode-metadata column of a video feature, e.g. ``videos/<key>/from_timestamp``."""
    return f"videos/{video_key}/{name}"


def check_template(template: Any, key: str, fields: tuple[str, ...], info_path: Path) -> str:
    """A path template of info.json that uses only ``fields``, plain, with simple format specs."""
    where = f"{info_path}: {key} {template!r}"
    if not isinstance(template, str) or not template:
        raise DatasetError(f"{where}: expected a path template string")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetError(f"{where}: not a valid template: {exc}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in fields or conversion or not re.fullmatch(SIMPLE_SPEC, spec or ""):
            raise DatasetError(f"{where}: field {{{name}{'!' + conversion if conversion else ''}"
                               f"{':' + spec if spec else ''}}} is not allowed; a {key} may use only "
                               f"{', '.join('{' + f + '}' for f in fields)}, plain or zero-padded "
                               f"({{{fields[-1]}:03d}})")
    if Path(template).is_absolute() or ".." in Path(template).parts:
        raise DatasetError(f"{where}: must be a path inside the dataset (no absolute path, no '..')")
    return template


def template_path(root: Path, template: str, key: str, info_path: Path, **values: Any) -> Path:
    """``root / template.format(**values)``, resolved; DatasetError if it is not inside ``root``."""
    try:
        rel = template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise DatasetError(f"{info_path}: bad {key} {template!r}: {exc}") from exc
    return inside(root, rel, f"{info_path}: {key} {template!r} with {values}")


def inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` resolved (symlinks followed); DatasetError unless it stays inside ``root``."""
    if "\0" in rel:
        raise DatasetError(f"{where}: the path {rel!r} has a NUL character; refused")
    try:
        path = (root / rel).resolve()
        base = root.resolve()
    except (OSError, RuntimeError) as exc:  # too long, a symlink loop
        raise DatasetError(f"{where}: the path {rel!r} cannot be resolved: {exc}") from exc
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.is_relative_to(base):
        raise DatasetError(f"{where}: the path {rel!r} leads outside the dataset {root}; refused")
    return path


def staging_dir(out: Path) -> Path:
    """A private directory beside ``out``; renamed to ``out`` when complete."""
    if out.is_symlink() or (out.exists() and not (out.is_dir() and not any(out.iterdir()))):
        raise FileExistsError(f"{out}: already exists and is not an empty directory; choose a new --out")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: parent directory of the output does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(staging, 0o755)
    return staging


def publish(staging: Path, out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out}: appeared while converting; the result is discarded")
    os.rename(staging, out)
    fmt.fsync_dir(out.parent)


def lerobot_fps(spec: Spec) -> int | float:
    """LeRobot stores fps as an int; keep a fractional rate as it is."""
    rate = spec.control_rate_hz
    return int(rate) if float(rate).is_integer() else rate


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, allow_nan=False) + "\n")
