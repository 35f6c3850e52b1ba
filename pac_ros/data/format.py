"""On-disk layout of a pac_ros episode dataset (see docs/dataset.md).

Shared by the writer and the reader: paths, the column schema derived from the spec,
the JSONL index files (with torn-last-line tolerance), fsync helpers and PNG coding.
No ROS, no simulator.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from pac_ros.errors import PacRosError
from pac_ros.jsonfile import read_json_object
from pac_ros.spec import POSE_NAMES, CameraSpec, Spec, SpecError  # noqa: F401  (POSE_NAMES: the columns' names)

FORMAT_NAME = "pac_ros_dataset"
FORMAT_VERSION = 1
CODEBASE_VERSION = "v2.1"  # LeRobotDataset layout version this one follows
CHUNKS_SIZE = 1000  # episodes per data/chunk-XXX directory
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
LOCK_PATH = "meta/writer.lock"
QUARANTINE_DIR = "quarantine"
TMP_SUFFIX = ".tmp"
PNG_COMPRESS_LEVEL = 1  # fast; images are small, decode cost is the same
EPISODE_META_KEY = b"pac_ros.episode"  # parquet key-value metadata: the index line

# Keys every index line must have (others are optional extras).
REQUIRED_EPISODE_KEYS = ("episode_index", "tasks", "length", "file", "sha256")
CONTENT_KEY = "content_sha256"  # index line: the episode's columns' digest (content_digest); older lines lack it


class DatasetError(PacRosError):
    """A dataset that cannot be created, opened, written or read as asked."""


def episode_file(episode_index: int) -> str:
    return DATA_PATH.format(episode_chunk=episode_index // CHUNKS_SIZE, episode_index=episode_index)


def image_column(camera: str) -> str:
    return f"observation.images.{camera}"


# ---- content digest ------------------------------------------------------------------
def content_digest(table: pa.Table) -> str:
    """sha256 of an episode's columns: their names, value types and values, in order. The same
    rows give the same digest however they are chunked, encoded or stored, and whatever the
    file's metadata says (an index line with its recording time)."""
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(f"\0{name}\0{len(table)}\0".encode())
        _digest_values(h, table.column(name).combine_chunks())
    return h.hexdigest()


def _digest_values(h, arr: pa.Array) -> None:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        h.update(b"nulls:" + arr.is_null().to_numpy(zero_copy_only=False).tobytes())
        t = arr.type
        if not pa.types.is_nested(t):
            arr = arr.fill_null(False if pa.types.is_boolean(t) else "" if pa.types.is_string(t) else
                                b"" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else 0)
    if pa.types.is_fixed_size_list(arr.type):
        h.update(f"list{arr.type.list_size}:".encode())
        _digest_values(h, arr.flatten())
    elif pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type) or pa.types.is_string(arr.type):
        values = [v if isinstance(v, bytes) else v.encode() for v in arr.to_pylist()]
        h.update(b"bytes:" + np.array([len(v) for v in values], "<i8").tobytes())
        for v in values:
            h.update(v)
    else:
        values = arr.to_numpy(zero_copy_only=False)
        h.update(f"{values.dtype.newbyteorder('<').str}:".encode())
        h.update(values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes())


# ---- schema ------------------------------------------------------------------------
def make_features(spec: Spec, with_features: bool) -> dict[str, dict[str, Any]]:
    """Column name -> {dtype, shape, names[, info]}, in column order."""
    n = spec.action_dim
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    feats: dict[str, dict[str, Any]] = {
        "timestamp": scalar("float64"),
        "frame_index": scalar("int64"),
        "episode_index": scalar("int64"),
        "index": scalar("int64"),
        "task_index": scalar("int64"),
        "observation.state": {"dtype": "float32", "shape": [n], "names": spec.joint_names},
    }
    if with_features:
        feats["observation.environment_state"] = {
            "dtype": "float32",
            "shape": [spec.feature_dim],
            "names": [f"{b}.{k}" for b in spec.blocks for k in POSE_NAMES],
        }
    for cam in spec.cameras:
        feats[image_column(cam.name)] = {
            "dtype": "image",
            "shape": list(cam.shape),
            "names": ["height", "width", "channel"],
            "info": {"storage": "binary", "format": "png", "encoding": cam.encoding,
                     "png_mode": "L" if cam.channels == 1 else "RGB"},
        }
    feats["action"] = {"dtype": "float32", "shape": [n], "names": spec.joint_names}
    feats["next.reward"] = scalar("float32")
    for flag in ("is_first", "is_last", "is_terminal"):
        feats[flag] = scalar("bool")
    return feats


def arrow_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    fields = []
    for name, f in features.items():
        if f["dtype"] == "image":
            typ = pa.binary()
        elif f["shape"] == [1]:
            typ = pa.from_numpy_dtype(np.dtype(f["dtype"]))
        else:
            typ = pa.list_(pa.from_numpy_dtype(np.dtype(f["dtype"])), f["shape"][0])
        fields.append(pa.field(name, typ, nullable=False))
    return pa.schema(fields)


def make_info(spec: Spec, with_features: bool) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "codebase_version": CODEBASE_VERSION,
        "codebase_note": "layout and column names follow LeRobotDataset v2.1; images are PNG "
        "bytes in the parquet, totals live in meta/episodes.jsonl (see docs/dataset.md)",
        "robot_type": spec.name,
        "fps": spec.control_rate_hz,
        "chunks_size": CHUNKS_SIZE,
        "data_path": DATA_PATH,
        "video_path": None,
        "cameras": [c.name for c in spec.cameras],
        "has_environment_state": bool(with_features),
        "features": make_features(spec, with_features),
        "spec": spec.to_dict(),
        "spec_fingerprint": spec.fingerprint(),
    }


def load_info(root: Path) -> tuple[dict[str, Any], Spec]:
    path = root / INFO_PATH
    info = read_json_object(path, DatasetError, f"{root}: not a pac_ros dataset (no {INFO_PATH})", "dataset info")
    if info.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: not a {FORMAT_NAME} info file (format={info.get('format')!r})")
    version = info.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DatasetError(f"{path}: format_version {version!r} is newer than this reader "
                           f"({FORMAT_VERSION}); update pac_ros")
    try:
        spec = Spec.from_dict(info.get("spec"), source=f"{path}: spec")
    except SpecError as exc:
        raise DatasetError(str(exc)) from exc
    return info, spec


def check_spec(expected: Spec, found: Spec, root: Path) -> None:
    try:
        expected.check_compatible(found, what="dataset")
    except SpecError as exc:
        raise DatasetError(f"{root / INFO_PATH}: {exc}") from exc


# ---- JSONL index files ---------------------------------------------------------------
def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, bytes]:
    """Records, the byte length of the good prefix, and the torn tail (b"" if none).

    The last line is torn if it has no newline or is not a JSON object; any earlier
    bad line is corruption and raises DatasetError.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, b""
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    records: list[dict[str, Any]] = []
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        if end < 0:  # unterminated: the append never finished
            return records, pos, data[pos:]
        line = data[pos:end]
        last = end + 1 >= len(data)
        rec = None
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict):
                if last:
                    return records, pos, data[pos:]
                raise DatasetError(f"{path}: line {lineno} is not a JSON object (file corrupted)")
            records.append(rec)
        pos = end + 1
    return records, pos, b""


def parse_tasks(path: Path, records: list[dict[str, Any]]) -> list[str]:
    tasks: list[str] = []
    for i, rec in enumerate(records):
        if rec.get("task_index") != i or not isinstance(rec.get("task"), str):
            raise DatasetError(f"{path}: line {i + 1}: expected task_index {i} and a task string, got {rec}")
        tasks.append(rec["task"])
    return tasks


def check_episodes(path: Path, records: list[dict[str, Any]]) -> None:
    for i, rec in enumerate(records):
        missing = [k for k in REQUIRED_EPISODE_KEYS if k not in rec]
        if missing:
            raise DatasetError(f"{path}: line {i + 1}: missing {missing}")
        if rec["episode_index"] != i:
            raise DatasetError(f"{path}: line {i + 1}: episode_index {rec['episode_index']} out of "
                               f"order (expected {i})")
        f = rec["file"]
        if not isinstance(f, str) or not f.startswith("data/") or ".." in Path(f).parts:
            raise DatasetError(f"{path}: line {i + 1}: bad file path {f!r}")
        if not isinstance(rec["length"], int) or rec["length"] < 1:
            raise DatasetError(f"{path}: line {i + 1}: bad length {rec['length']!r}")


# ---- durability helpers ---------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not fsync directories
        pass
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")


def atomic_write(final: Path, data: bytes) -> None:
    """Temp file in the same dir, fsync, rename, fsync the dir."""
    tmp = tmp_name(final)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(final.parent)


def quarantine(root: Path, path: Path) -> Path:
    """Move a file out of the dataset's way into <root>/quarantine/ (never deleted); returns where."""
    qdir = root / QUARANTINE_DIR
    qdir.mkdir(exist_ok=True)
    dest = qdir / f"{path.name}.{time.time_ns()}"
    os.replace(path, dest)
    fsync_dir(path.parent)
    fsync_dir(qdir)
    return dest


# ---- images ----------------------------------------------------------------------------
def encode_png(image: np.ndarray, cam: CameraSpec) -> bytes:
    """Image in the camera's encoding -> PNG bytes (RGB or L)."""
    if cam.channels == 1:
        image = image.reshape(cam.height, cam.width)
    elif cam.encoding == "bgr8":
        image = image[..., ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_image(data: bytes, cam: CameraSpec, where: str, convertible: tuple[str, ...] = ()) -> np.ndarray:
    """Image bytes (our PNGs; PNG or JPEG from elsewhere) -> uint8[H, W, C] in the camera's encoding.
    The image's mode must be the camera's (L or RGB) or one of ``convertible`` (lossless changes only)."""
    want = "L" if cam.channels == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (cam.width, cam.height):  # before decoding: the header may claim any size
                raise DatasetError(f"{where}: image shape {(img.height, img.width, len(img.getbands()))}, "
                                   f"the spec's camera {cam.name!r} is {cam.shape}")
            if img.mode != want and img.mode not in convertible:
                raise DatasetError(f"{where}: image mode {img.mode}, the spec's camera {cam.name!r} is "
                                   f"{cam.encoding}")
            arr = np.asarray(img if img.mode == want else img.convert(want))
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise DatasetError(f"{where}: cannot decode image: {exc}") from exc
    if cam.channels == 1:
        arr = arr[..., None]
    elif cam.encoding == "bgr8":
        arr = arr[..., ::-1]
    if arr.shape != cam.shape:
        raise DatasetError(f"{where}: image shape {arr.shape}, the spec's camera {cam.name!r} is {cam.shape}")
    return arr
