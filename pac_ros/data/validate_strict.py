"""What `pac-ros dataset validate --strict` checks beyond the normal validation: a dataset received
from someone else, before training on it.

- the tree: nothing outside the dataset reached through a link, no unexpected files or directories
  (staging leftovers, quarantined files, anything unknown), no writer still holding the lock;
- meta/info.json says what the spec says (cameras, fps, features, data path, fingerprint, ...);
- every index line has its fields with their types (finite numbers), names its file at the
  canonical path inside the root, and agrees with the file: size in bytes, columns' digest,
  global row index, frame indices, first/last stamps, duration and rate, tasks, instruction,
  terminal flag;
- each episode file's columns have exactly the schema's types, and every image is a PNG
  (images are always decoded in strict mode, at the spec's shape and encoding);
- meta/tasks.jsonl has no duplicated task; meta/stats.json, if present, matches a recomputation.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset, Episode
from pac_ros.data.stats import STATS_PATH, compute_stats

try:
    import fcntl
except ImportError:  # not POSIX: no writer lock to probe
    fcntl = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STATS_RTOL, STATS_ATOL = 1e-5, 1e-6
KNOWN_META = (fmt.INFO_PATH, fmt.EPISODES_PATH, fmt.TASKS_PATH, STATS_PATH, fmt.LOCK_PATH)
INFO_KEYS = ("format", "format_version", "codebase_version", "codebase_note", "robot_type", "fps", "chunks_size",
             "data_path", "video_path", "cameras", "has_environment_state", "features", "spec", "spec_fingerprint")


def _int(lo: int = 0) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


_SHA256 = (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a sha256 (64 hex)")
# every index line's fields: (check, what it must be)
LINE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "episode_index": (_int(0), "an integer >= 0"),
    "tasks": (lambda v: isinstance(v, list) and bool(v) and all(map(_str, v)), "a non-empty list of strings"),
    "length": (_int(1), "an integer >= 1"),
    "instruction": (_str, "a string"),
    "file": (_str, "a string"),
    "index_from": (_int(0), "an integer >= 0"),
    "source": (_str, "a string"),
    "checkpoint": (lambda v: v is None or _str(v), "a string or null"),
    "success": (lambda v: isinstance(v, bool), "true/false"),
    "terminal": (lambda v: isinstance(v, bool), "true/false"),
    "return": (_number, "a finite number"),
    "seed": (lambda v: v is None or _int(-2 ** 63)(v), "an integer or null"),
    "start_stamp": (_number, "a finite number"),
    "end_stamp": (_number, "a finite number"),
    "duration_s": (lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    "achieved_rate_hz": (lambda v: v is None or (_number(v) and v > 0), "a finite number > 0 or null"),
    "dropped": (_int(0), "an integer >= 0"),
    "metadata": (lambda v: v is None or isinstance(v, dict), "a mapping or null"),
    "recorded_at": (_str, "a string"),
    "sha256": _SHA256,
    "bytes": (_int(0), "an integer >= 0"),
}
# fields a line may lack (written by older versions), checked when present
OPTIONAL_LINE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {fmt.CONTENT_KEY: _SHA256}


def dataset_problems(ds: Dataset) -> list[str]:
    """The strict checks of the whole dataset (per episode: ``line_problems``)."""
    return tree_problems(ds) + info_problems(ds) + tasks_problems(ds) + stats_problems(ds)


def _target(path: Path) -> Path:
    """Where ``path`` leads (links followed; a link loop does not raise)."""
    return Path(os.path.realpath(path))


def _inside(root: Path, path: Path) -> bool:
    return _target(path).is_relative_to(_target(root))


def tree_problems(ds: Dataset) -> list[str]:
    """Links out of the root, files and directories that are no part of the dataset, a held writer lock."""
    root, out = ds.root, []
    named = {e["file"] for e in ds.episodes}
    data_dirs = {str(Path(f).parent) for f in named}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        for name in sorted(dirnames):
            d = base / name
            rel = f"{rel_dir}/{name}" if rel_dir != "." else name
            if d.is_symlink():
                out.append(f"{d}: a link to {_target(d)}" + ("" if _inside(root, d) else ", outside the dataset"))
            elif rel not in ("meta", "data") and rel not in data_dirs:
                n = sum(len(fs) for _, _, fs in os.walk(d))
                why = "quarantined by `dataset repair`" if rel == fmt.QUARANTINE_DIR else "not part of the dataset"
                out.append(f"{d}: unexpected directory ({n} file(s)), {why}")
                dirnames.remove(name)
        for name in sorted(filenames):
            f = base / name
            rel = f"{rel_dir}/{name}" if rel_dir != "." else name
            if f.is_symlink():
                out.append(f"{f}: a link to {_target(f)}" + ("" if _inside(root, f) else ", outside the dataset"))
            elif not f.is_file():
                out.append(f"{f}: not a regular file")
            elif rel_dir == "data" or rel_dir.startswith("data/"):
                continue  # unindexed files under data/ are the normal check's orphans
            elif rel not in KNOWN_META:
                why = "a staging leftover of an interrupted write" if fmt.TMP_SUFFIX in name or ".replaced-" in name \
                    else "not part of the dataset"
                out.append(f"{f}: unexpected file, {why}")
    lock = root / fmt.LOCK_PATH
    if fcntl is not None and lock.is_file() and not lock.is_symlink():
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            out.append(f"{lock}: held by a writer: the dataset is being written")
        finally:
            os.close(fd)
    return out


def info_problems(ds: Dataset) -> list[str]:
    """meta/info.json must say exactly what the spec and the format say."""
    path, info = ds.root / fmt.INFO_PATH, ds.info
    expected = fmt.make_info(ds.spec, ds.has_features)
    out = [f"{path}: {key}: unexpected key" for key in sorted(set(info) - set(INFO_KEYS))]
    if not isinstance(info.get("has_environment_state"), bool):
        out.append(f"{path}: has_environment_state: expected true/false, got {info.get('has_environment_state')!r}")
    for key in INFO_KEYS:
        if key in ("spec", "codebase_note", "has_environment_state"):
            continue  # the spec is what the rest is compared with
        if key == "codebase_version":
            if not isinstance(info.get(key), str):
                out.append(f"{path}: {key}: expected a string, got {info.get(key)!r}")
        elif info.get(key) != expected[key]:
            shown = json.dumps(info.get(key))[:160]
            out.append(f"{path}: {key}: {shown}, the spec and format say {json.dumps(expected[key])[:160]}")
    return out


def tasks_problems(ds: Dataset) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, task in enumerate(ds.tasks):
        if task in seen:
            out.append(f"{ds.root / fmt.TASKS_PATH}: line {i + 1}: task {task!r} duplicates line {seen[task] + 1}")
        seen.setdefault(task, i)
    return out


def line_problems(ds: Dataset, i: int, line: dict[str, Any], index_from: int, ep: Episode | None) -> list[str]:
    """Index line ``i``: its fields' types, its file's path, and (``ep`` loaded) what the file holds."""
    where = f"{ds.root / fmt.EPISODES_PATH}: line {i + 1}"
    fields = LINE_FIELDS | OPTIONAL_LINE_FIELDS
    out = [f"{where}: {key}: missing" for key in LINE_FIELDS if key not in line]
    mistyped = [key for key, (ok, _) in fields.items() if key in line and not ok(line[key])]
    out += [f"{where}: {key}: expected {fields[key][1]}, got {json.dumps(line[key])[:80]}" for key in mistyped]
    out += [f"{where}: {key}: unexpected key" for key in sorted(set(line) - set(fields))]
    rel = line["file"]
    path = ds.root / rel
    canonical = fmt.episode_file(i)
    if rel != canonical:
        out.append(f"{where}: file: {rel!r}, the episode's path is {canonical!r}")
    if not _inside(ds.root, path) or any((ds.root / p).is_symlink() for p in _prefixes(rel)):
        out.append(f"{where}: file: {rel!r} is reached through a link" +
                   ("" if _inside(ds.root, path) else f" to {_target(path)}, outside the dataset"))
    if line.get("index_from") != index_from and _int(0)(line.get("index_from")):
        out.append(f"{where}: index_from: {line['index_from']}, the earlier episodes' lengths sum to {index_from}")
    if ep is None:
        return out  # unreadable: the normal check says why
    if _int(0)(line.get("bytes")) and path.stat().st_size != line["bytes"]:
        out.append(f"{where}: bytes: {line['bytes']}, {path} has {path.stat().st_size}")
    digest = line.get(fmt.CONTENT_KEY) if fmt.CONTENT_KEY not in mistyped else None
    out += file_problems(ds, path, ep, index_from, digest, where)
    T, ts = len(ep), ep.timestamp
    agree = {"start_stamp": ts[0], "end_stamp": ts[-1], "duration_s": ts[-1] - ts[0],
             "achieved_rate_hz": (T - 1) / (ts[-1] - ts[0]) if ts[-1] > ts[0] else None,
             "tasks": list(dict.fromkeys(ep.instructions)), "instruction": ep.instructions[0],
             "terminal": bool(ep.is_terminal[-1])}
    for key, value in agree.items():
        found = line.get(key)
        same = found == value if not isinstance(value, float) else \
            _number(found) and math.isclose(found, value, rel_tol=1e-9, abs_tol=1e-9)
        if key in line and key not in mistyped and not same:
            out.append(f"{where}: {key}: {json.dumps(found)[:80]}, {path} holds {json.dumps(value)[:80]}")
    return out


def _prefixes(rel: str) -> list[str]:
    parts = Path(rel).parts
    return [str(Path(*parts[:n])) for n in range(1, len(parts) + 1)]


def file_problems(ds: Dataset, path: Path, ep: Episode, index_from: int, digest: str | None = None,
                  where: str = "") -> list[str]:
    """An episode file's columns' digest (against ``digest``, its index line's, named by ``where``),
    schema, row numbering and image encoding."""
    out = []
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return [f"{path}: cannot read: {exc}"]
    if digest is not None and (found := fmt.content_digest(table)) != digest:
        out.append(f"{where}: {fmt.CONTENT_KEY}: {digest}, the columns of {path} digest to {found}")
    schema = table.schema
    expected = fmt.arrow_schema(fmt.make_features(ds.spec, ds.has_features))  # info's own: info_problems
    found = {f.name: f.type for f in schema}
    for f in expected:
        if f.name in found and found[f.name] != f.type:
            out.append(f"{path}: column {f.name!r}: type {found[f.name]}, the schema says {f.type}")
    extra = sorted(set(found) - set(expected.names))
    if extra:
        out.append(f"{path}: unexpected column(s) {extra}")
    T = len(ep)
    try:
        frames = table.column("frame_index").to_numpy(zero_copy_only=False)
        rows = table.column("index").to_numpy(zero_copy_only=False)
    except (KeyError, ValueError, pa.ArrowException) as exc:
        return out + [f"{path}: {exc}"]
    if not np.array_equal(frames, np.arange(T)):
        out.append(f"{path}: frame_index is not 0..{T - 1}")
    if not np.array_equal(rows, np.arange(index_from, index_from + T)):
        out.append(f"{path}: index is not {index_from}..{index_from + T - 1} (the rows before it number {index_from})")
    for cam in ds.spec.camera_names:
        blobs = table.column(fmt.image_column(cam)).to_pylist()
        bad = [t for t, b in enumerate(blobs) if not (isinstance(b, bytes) and b.startswith(PNG_SIGNATURE))]
        if bad:
            out.append(f"{path}: {fmt.image_column(cam)}: {len(bad)} image(s) not PNG (lossless), first row {bad[0]}")
    return out


def stats_problems(ds: Dataset) -> list[str]:
    """meta/stats.json, if there is one, must be what `dataset stats` computes from these episodes."""
    path = ds.root / STATS_PATH
    if not path.exists():
        return []
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        return [f"{path}: not readable JSON: {exc}"]
    if not isinstance(stored, dict):
        return [f"{path}: expected a JSON object"]
    try:
        fresh = compute_stats(ds)
    except (DatasetError, ValueError) as exc:
        return [f"{path}: cannot recompute the statistics: {exc}"]
    out = [f"{path}: {key}: {json.dumps(stored.get(key))[:80]}, the episodes give {fresh[key]!r}"
           for key in ("fingerprint", "episodes", "steps") if stored.get(key) != fresh[key]]
    feats = stored.get("features")
    if not isinstance(feats, dict):
        return out + [f"{path}: features: expected a mapping"]
    out += [f"{path}: features: {name!r} missing" for name in fresh["features"] if name not in feats]
    out += [f"{path}: features: {name!r} unexpected" for name in feats if name not in fresh["features"]]
    for name, want in fresh["features"].items():
        got = feats.get(name)
        if not isinstance(got, dict):
            continue
        for key, value in want.items():
            try:
                have = np.asarray(got.get(key), dtype=np.float64)
                same = have.shape == np.shape(value) and np.allclose(have, value, rtol=STATS_RTOL, atol=STATS_ATOL)
            except (TypeError, ValueError):
                same = False
            if not same:
                out.append(f"{path}: features.{name}.{key}: {json.dumps(got.get(key))[:80]} differs from the "
                           f"recomputed {json.dumps(value)[:80]}")
    return out
