"""Checks of what a LeRobotDataset declares, made before import reads or allocates by it.

A source is untrusted input: its counts, shapes, lengths, indices and types must be of the
right type, within sane limits, and agree with each other and with the files, or import
raises DatasetError naming the file and the field. Paths are checked by lerobot_layout.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from pac_ros.data.format import DatasetError

MAX_EPISODES = 10_000_000
MAX_FRAMES = 1 << 31  # in a dataset; far beyond any LeRobot dataset, small enough to rule out absurd claims
MAX_EPISODE_FRAMES = 10_000_000
MAX_FILE_INDEX = 1_000_000  # chunk and file indices, chunks_size
MAX_FEATURE_DIM = 1 << 20  # one dimension of a non-image feature's shape
MAX_IMAGE_SIDE = 4096  # as a spec's cameras
MAX_VIDEO_SECONDS = 1e7  # an episode's start in its video file
MAX_TASKS = 10_000_000


def integer(value: Any, where: str, name: str, lo: int = 0, hi: int = MAX_FRAMES) -> int:
    """``value`` as an int in [lo, hi]; DatasetError naming ``where`` and ``name`` otherwise (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise DatasetError(f"{where}: {name} {_short(value)}: expected an integer in [{lo}, {hi}]")
    return int(value)


def seconds(value: Any, where: str, name: str) -> float:
    """``value`` as seconds in [0, MAX_VIDEO_SECONDS] (NaN and infinities refused by the comparison)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= MAX_VIDEO_SECONDS:
        raise DatasetError(f"{where}: {name} {_short(value)}: expected seconds in [0, {MAX_VIDEO_SECONDS:g}]")
    return float(value)


def _short(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10 ** 30:  # repr of a 10**5000 raises
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_info(info: dict[str, Any], info_path: Path) -> None:
    """The counts and feature shapes of info.json: integers within limits, shapes lists of positive sizes."""
    integer(info.get("total_episodes"), str(info_path), "total_episodes", 1, MAX_EPISODES)
    integer(info.get("total_frames"), str(info_path), "total_frames", 1, MAX_FRAMES)
    if info.get("chunks_size") is not None:
        integer(info["chunks_size"], str(info_path), "chunks_size", 1, MAX_FILE_INDEX)
    for key, f in info["features"].items():
        where = f"{info_path}: features[{key!r}]"
        if not isinstance(f, dict):
            raise DatasetError(f"{where}: expected an object with dtype and shape, got {_short(f)}")
        shape = f.get("shape")
        image = f.get("dtype") in ("image", "video")
        if not isinstance(shape, list) or not shape or len(shape) > (3 if image else 4):
            raise DatasetError(f"{where}: shape {_short(shape)}: expected a list of "
                               + ("3 sizes" if image else "at most 4 sizes"))
        for size in shape:
            integer(size, where, "shape size", 1, MAX_IMAGE_SIDE if image else MAX_FEATURE_DIM)
        if image and len(shape) != 3:
            raise DatasetError(f"{where}: shape {shape}: an image feature is [H, W, C] or [C, H, W]")


def check_episodes(records: list[dict[str, Any]], where: str, info: dict[str, Any], info_path: Path,
                   columns: dict[str, str]) -> list[dict[str, Any]]:
    """Episode metadata records sorted by episode_index, after checking each and their totals.

    ``columns`` names the fields each record must have and their kind: ``index`` (a
    non-negative integer), ``length`` (frames, at least 1), ``seconds`` (a video start),
    ``tasks`` (a list of strings; may be absent).
    """
    seen: set[int] = set()
    frames = 0
    for i, rec in enumerate(records):
        at = f"{where}: episode record {i}"
        if not isinstance(rec, dict):
            raise DatasetError(f"{at}: expected an object, got {_short(rec)}")
        for name, kind in columns.items():
            value = rec.get(name)
            if kind == "tasks":
                if value is not None and not (isinstance(value, list) and value
                                              and all(isinstance(t, str) and t.strip() for t in value)):
                    raise DatasetError(f"{at}: {name} {_short(value)}: expected a list of task strings")
            elif kind == "seconds":
                seconds(value, at, name)
            elif kind == "length":
                integer(value, at, name, 1, MAX_EPISODE_FRAMES)
            else:
                integer(value, at, name, 0, MAX_EPISODES if name == "episode_index" else MAX_FILE_INDEX)
        k = rec["episode_index"]
        if k in seen:
            raise DatasetError(f"{at}: episode_index {k} appears twice")
        seen.add(k)
        frames += rec["length"]
    if len(records) != info["total_episodes"]:
        raise DatasetError(f"{info_path}: total_episodes {info['total_episodes']}, but {where} has "
                           f"{len(records)} episode(s)")
    if frames != info["total_frames"]:
        raise DatasetError(f"{info_path}: total_frames {info['total_frames']}, but the episodes' lengths in "
                           f"{where} sum to {frames}")
    return sorted(records, key=lambda r: r["episode_index"])


def check_tasks(pairs: Iterable[tuple[Any, Any]], where: str) -> dict[int, str]:
    """task_index -> task string, each index a unique integer and each task a non-empty string."""
    tasks: dict[int, str] = {}
    for index, text in pairs:
        if len(tasks) >= MAX_TASKS:
            raise DatasetError(f"{where}: more than {MAX_TASKS} tasks")
        i = integer(index, where, "task_index", 0, MAX_TASKS)
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where}: task {i}: {_short(text)} is not a task string")
        if i in tasks:
            raise DatasetError(f"{where}: task_index {i} appears twice")
        tasks[i] = text
    return tasks


def check_total_tasks(info: dict[str, Any], info_path: Path, tasks: dict[int, str], where: str) -> None:
    """info.json's total_tasks, where given, must be the number of tasks."""
    if info.get("total_tasks") is not None and info["total_tasks"] != len(tasks):
        raise DatasetError(f"{info_path}: total_tasks {_short(info['total_tasks'])}, but {where} has "
                           f"{len(tasks)} task(s)")


# The type each column import reads must have: integers, floating point (integers accepted), booleans.
COLUMN_KINDS = {"frame_index": "int", "episode_index": "int", "index": "int", "task_index": "int",
                "timestamp": "float", "stamp": "float", "observation.state": "float", "action": "float",
                "observation.environment_state": "float", "next.reward": "float", "next.success": "bool",
                "next.done": "bool"}


def check_column_type(typ: pa.DataType, name: str, where: str) -> None:
    """DatasetError unless ``typ`` (a list's values for list columns) is of ``name``'s kind."""
    kind = COLUMN_KINDS.get(name)
    value = typ.value_type if pa.types.is_list(typ) or pa.types.is_large_list(typ) or \
        pa.types.is_fixed_size_list(typ) else typ
    ok = {"int": pa.types.is_integer, "bool": pa.types.is_boolean,
          "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)}.get(kind, lambda t: True)(value)
    if not ok:
        raise DatasetError(f"{where}: column {name!r} has type {typ}, expected {kind} values")
