"""LeRobotDataset interchange: export to v3.0, import from v2.1 or v3.0 (docs/dataset.md).

Export copies each episode's PNG bytes into LeRobot image features (struct {bytes, path})
without re-encoding, and concatenates episodes into data files of up to
``data_files_size_in_mb`` (one row group per episode). What LeRobot has no place for
(the spec, exact float64 stamps, per-episode source/seed/metadata) goes into extra keys
(``info.json["pac_ros"]``, the ``stamp`` column, ``pac_ros/*`` episode columns), so
importing an export restores the dataset exactly. Import commits episodes one by one
through DatasetWriter, like any recording. Needs pyarrow and Pillow only: no lerobot,
no pandas, no video decoder (video features are refused with a clear error).
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pac_ros.data import format as fmt
from pac_ros.data.conversion_report import ConversionReport, select_episodes
from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset, Episode
from pac_ros.data.writer import DatasetWriter
from pac_ros.jsonfile import read_json_object
from pac_ros.spec import CameraSpec, Spec, SpecError

V3 = "v3.0"
LEGACY_VERSIONS = ("v2.0", "v2.1")  # same layout: one parquet per episode, JSONL metadata
CHUNKS_SIZE = 1000  # files per chunk-XXX directory
DATA_FILES_SIZE_IN_MB = 100  # LeRobot's default limit for one data file
VIDEO_FILES_SIZE_IN_MB = 200  # written to info.json for LeRobot; we write no videos
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
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


# ==== export ===================================================================================
def export_lerobot(dataset: str | os.PathLike | Dataset, out: str | os.PathLike,
                   episodes: Sequence[int] | None = None, *,
                   data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB) -> ConversionReport:
    """Write episodes of ``dataset`` (default all) as a new LeRobotDataset v3.0 directory ``out``.

    Episodes are renumbered 0..N-1 in the order given. Raises FileExistsError if ``out``
    exists and is not an empty directory, DatasetError for an unreadable dataset,
    IndexError/ValueError for a bad selection.
    """
    t0 = time.perf_counter()
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    out = Path(out)
    selected = select_episodes(ds, episodes)
    if not data_files_size_in_mb > 0:
        raise ValueError(f"data_files_size_in_mb must be > 0, got {data_files_size_in_mb}")
    staging = _staging_dir(out)
    try:
        steps = _write_v3(ds, selected, staging, data_files_size_in_mb)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConversionReport(out, len(selected), steps, time.perf_counter() - t0)


def _staging_dir(out: Path) -> Path:
    """A private directory beside ``out``; renamed to ``out`` when complete."""
    if out.is_symlink() or (out.exists() and not (out.is_dir() and not any(out.iterdir()))):
        raise FileExistsError(f"{out}: already exists and is not an empty directory; choose a new --out")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: parent directory of the output does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(staging, 0o755)
    return staging


def _publish(staging: Path, out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out}: appeared while converting; the result is discarded")
    os.rename(staging, out)
    fmt.fsync_dir(out.parent)


def _fps(spec: Spec) -> int | float:
    """LeRobot stores fps as an int; keep a fractional rate as it is."""
    rate = spec.control_rate_hz
    return int(rate) if float(rate).is_integer() else rate


def v3_features(spec: Spec, with_environment_state: bool) -> dict[str, dict[str, Any]]:
    """info.json features of an export, in column order."""
    n = spec.action_dim
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    feats: dict[str, dict[str, Any]] = {
        "observation.state": {"dtype": "float32", "shape": [n], "names": spec.joint_names},
    }
    if with_environment_state:
        feats["observation.environment_state"] = {
            "dtype": "float32", "shape": [spec.feature_dim],
            "names": [f"{b}.{k}" for b in spec.blocks for k in fmt.POSE_NAMES]}
    for cam in spec.cameras:
        feats[fmt.image_column(cam.name)] = {"dtype": "image", "shape": list(cam.shape),
                                             "names": ["height", "width", "channels"]}
    feats["action"] = {"dtype": "float32", "shape": [n], "names": spec.joint_names}
    feats["next.reward"] = scalar("float32")
    feats["next.done"] = scalar("bool")
    feats["next.success"] = scalar("bool")
    feats["timestamp"] = scalar("float32")
    feats[STAMP] = scalar("float64")
    for name in ("frame_index", "episode_index", "index", "task_index"):
        feats[name] = scalar("int64")
    return feats


def _hf_feature(f: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face `datasets` type of a feature (parquet schema metadata)."""
    if f["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": f["dtype"], "_type": "Value"}
    return value if f["shape"] == [1] else {"feature": value, "length": f["shape"][0], "_type": "Sequence"}


def _v3_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    fields = []
    for name, f in features.items():
        if f["dtype"] == "image":
            typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        elif f["shape"] == [1]:
            typ = pa.from_numpy_dtype(np.dtype(f["dtype"]))
        else:
            typ = pa.list_(pa.from_numpy_dtype(np.dtype(f["dtype"])), f["shape"][0])
        fields.append(pa.field(name, typ))
    hf = {"info": {"features": {k: _hf_feature(f) for k, f in features.items()}}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(hf).encode()})


@dataclass
class _DataFile:
    """The data file being filled: episodes are appended until the size limit."""

    root: Path
    schema: pa.Schema
    limit_bytes: float
    compression: dict[str, str]
    chunk: int = 0
    file: int = 0
    bytes: int = 0
    writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> tuple[int, int]:
        """Append one episode (one row group); returns its (chunk_index, file_index)."""
        if self.writer is not None and self.bytes + table.nbytes > self.limit_bytes:
            self.close()
            self.chunk, self.file = (self.chunk + 1, 0) if self.file == CHUNKS_SIZE - 1 else (self.chunk, self.file + 1)
        if self.writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema, compression=self.compression,
                                           use_dictionary=["task_index", "episode_index"])
            self.bytes = 0
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _write_v3(ds: Dataset, selected: list[int], root: Path, size_mb: float) -> int:
    """Write the export into ``root``; returns the number of rows."""
    spec = ds.spec
    features = v3_features(spec, ds.has_features)
    schema = _v3_schema(features)
    image_cols = {fmt.image_column(c.name): c for c in spec.cameras}
    compression = {name: "zstd" for name in features}
    for name in image_cols:  # PNG is compressed already
        compression.update({name: "none", f"{name}.bytes": "none", f"{name}.path": "none"})
    data = _DataFile(root, schema, size_mb * 1024 * 1024, compression)
    tasks: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    episode_stats: list[dict[str, dict[str, np.ndarray]]] = []
    index = 0
    try:
        for k, i in enumerate(selected):
            e = ds.load_episode(i, images=False)
            path = ds.episode_path(i)
            try:  # the PNG bytes as stored, never re-encoded
                pngs = pq.read_table(path, columns=list(image_cols))
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise DatasetError(f"{path}: cannot read the image columns: {exc}") from exc
            cols = _episode_columns(e, k, index, tasks, pngs, image_cols)
            table = pa.Table.from_arrays([cols[name] for name in features], schema=schema)
            chunk, file = data.add(table)
            stats = _episode_stats(cols, features, pngs, path)
            episode_stats.append(stats)
            rows.append(_episode_row(e, k, i, index, chunk, file, stats))
            index += len(e)
    finally:
        data.close()
    _write_episodes(root, rows)
    _write_tasks(root, tasks)
    _write_json(root / STATS_PATH, _serialize_stats(_aggregate_stats(episode_stats)))
    info = {
        "codebase_version": V3,
        "robot_type": spec.name,
        "total_episodes": len(selected),
        "total_frames": index,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": size_mb,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": _fps(spec),
        "splits": {"train": f"0:{len(selected)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
        EXTRA_KEY: {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "spec": spec.to_dict(),
            "spec_fingerprint": spec.fingerprint(),
            "has_environment_state": bool(ds.has_features),
            "source_fingerprint": ds.fingerprint(),
            "note": "exported by pac_ros: `stamp` holds the exact observation stamps, `pac_ros/*` "
                    "episode columns the recording metadata; `pac-ros dataset import --format lerobot` "
                    "restores the dataset",
        },
    }
    _write_json(root / INFO_PATH, info)
    return index


def _episode_columns(e: Episode, k: int, start: int, tasks: dict[str, int], pngs: pa.Table,
                     image_cols: dict[str, CameraSpec]) -> dict[str, pa.Array]:
    """The v3 columns of one episode, renumbered as episode ``k`` from global row ``start``."""
    T = len(e)

    def fixed(x: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).reshape(-1)), x.shape[1])

    last = np.arange(T) == T - 1
    cols: dict[str, pa.Array] = {
        "observation.state": fixed(e.joint_positions),
        "action": fixed(e.actions),
        "next.reward": pa.array(e.rewards.astype(np.float32)),
        "next.done": pa.array(last),
        "next.success": pa.array(last & bool(e.meta.get("success", False))),
        "timestamp": pa.array((e.timestamp - e.timestamp[0]).astype(np.float32)),
        STAMP: pa.array(e.timestamp.astype(np.float64)),
        "frame_index": pa.array(np.arange(T, dtype=np.int64)),
        "episode_index": pa.array(np.full(T, k, np.int64)),
        "index": pa.array(np.arange(start, start + T, dtype=np.int64)),
        "task_index": pa.array(np.array([tasks.setdefault(s, len(tasks)) for s in e.instructions], np.int64)),
    }
    if e.features is not None:
        cols["observation.environment_state"] = fixed(e.features)
    no_path = pa.nulls(T, pa.string())
    for name in image_cols:
        blobs = pngs.column(name).combine_chunks().cast(pa.binary())
        cols[name] = pa.StructArray.from_arrays([blobs, no_path], names=["bytes", "path"])
    return cols


def _episode_row(e: Episode, k: int, source_index: int, start: int, chunk: int, file: int,
                 stats: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    m = e.meta
    row: dict[str, Any] = {
        "episode_index": k,
        "tasks": list(dict.fromkeys(e.instructions)),
        "length": len(e),
        "data/chunk_index": chunk,
        "data/file_index": file,
        "dataset_from_index": start,
        "dataset_to_index": start + len(e),
        "meta/episodes/chunk_index": 0,
        "meta/episodes/file_index": 0,
    }
    for feat, s in stats.items():
        for key, value in s.items():
            row[f"stats/{feat}/{key}"] = value.tolist()
    row.update({
        EXTRA + "source_episode_index": source_index,
        EXTRA + "source": m.get("source", "expert"),
        EXTRA + "checkpoint": m.get("checkpoint"),
        EXTRA + "seed": m.get("seed"),
        EXTRA + "success": bool(m.get("success", False)),
        EXTRA + "terminal": bool(e.is_terminal[-1]),
        EXTRA + "dropped": int(m.get("dropped", 0)),
        EXTRA + "metadata": json.dumps(m.get("metadata") or {}, sort_keys=True, allow_nan=False),
        EXTRA + "recorded_at": m.get("recorded_at"),
    })
    return row


_EXTRA_TYPES = {
    "source_episode_index": pa.int64(), "source": pa.string(), "checkpoint": pa.string(), "seed": pa.int64(),
    "success": pa.bool_(), "terminal": pa.bool_(), "dropped": pa.int64(), "metadata": pa.string(),
    "recorded_at": pa.string(),
}


def _write_episodes(root: Path, rows: list[dict[str, Any]]) -> None:
    types = {"episode_index": pa.int64(), "tasks": pa.list_(pa.string()), "length": pa.int64()}
    types.update({EXTRA + k: t for k, t in _EXTRA_TYPES.items()})
    arrays = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if name.endswith("/count"):
            arrays[name] = pa.array(values, pa.list_(pa.int64()))
        elif name in types:
            arrays[name] = pa.array(values, types[name])
        elif name.startswith("stats/"):
            arrays[name] = pa.array(values)  # nested lists of float64
        else:
            arrays[name] = pa.array(values, pa.int64())
    path = root / LEROBOT_EPISODES_META.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path, compression="zstd")


def _write_tasks(root: Path, tasks: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes a frame indexed by task: pd.read_parquet restores the index."""
    names = list(tasks)
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    table = pa.Table.from_arrays([pa.array([tasks[t] for t in names], pa.int64()), pa.array(names, pa.string())],
                                 schema=schema)
    pq.write_table(table, root / TASKS_PATH)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, allow_nan=False) + "\n")


# ---- statistics in LeRobot's shape ----------------------------------------------------------------
def _describe(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column min/max/mean/std (population, as LeRobot) of [rows, d] values, and the row count."""
    x = x.astype(np.float64)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def _episode_stats(cols: dict[str, pa.Array], features: dict[str, dict[str, Any]], pngs: pa.Table,
                   path: Path) -> dict[str, dict[str, np.ndarray]]:
    stats = {}
    for name, f in features.items():
        if f["dtype"] == "image":
            stats[name] = _image_stats(pngs.column(name).to_pylist(), f"{path}: {name}")
        elif f["shape"] == [1]:
            stats[name] = _describe(cols[name].to_numpy(zero_copy_only=False).reshape(-1, 1))
        else:
            flat = cols[name].flatten().to_numpy(zero_copy_only=False)
            stats[name] = _describe(flat.reshape(len(cols[name]), -1))
    return stats


def _image_stats(blobs: list[bytes], where: str) -> dict[str, np.ndarray]:
    """Per-channel stats of evenly spaced frames, as RGB in [0, 1], shaped (3, 1, 1) like LeRobot's."""
    picks = np.unique(np.round(np.linspace(0, len(blobs) - 1, min(len(blobs), IMAGE_STATS_FRAMES))).astype(int))
    frames = []
    for t in picks:
        try:
            with Image.open(io.BytesIO(blobs[t])) as img:
                frames.append(np.asarray(img.convert("RGB")))
        except Exception as exc:  # PIL raises many types for bad data
            raise DatasetError(f"{where}[{t}]: cannot decode PNG: {exc}") from exc
    channels = np.stack(frames).reshape(-1, 3).T  # [3, pixels] uint8
    levels = np.arange(256) / 255.0
    s: dict[str, list[float]] = {"min": [], "max": [], "mean": [], "std": []}
    for pixels in channels:  # from the histogram: exact, and far faster than reducing the pixels
        hist = np.bincount(pixels, minlength=256).astype(np.float64)
        used = np.flatnonzero(hist)
        mean = hist @ levels / hist.sum()
        s["min"].append(levels[used[0]])
        s["max"].append(levels[used[-1]])
        s["mean"].append(mean)
        s["std"].append(math.sqrt(hist @ (levels - mean) ** 2 / hist.sum()))
    return {**{k: np.array(v).reshape(3, 1, 1) for k, v in s.items()}, "count": np.array([len(frames)])}


def _aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Dataset stats from episode stats: weighted mean, pooled (population) variance."""
    out = {}
    for name in per_episode[0]:
        ss = [s[name] for s in per_episode]
        counts = np.array([s["count"][0] for s in ss], np.float64)
        shape = (-1,) + (1,) * ss[0]["mean"].ndim
        w = counts.reshape(shape)
        means = np.stack([s["mean"] for s in ss])
        mean = (means * w).sum(0) / counts.sum()
        var = ((np.stack([s["std"] for s in ss]) ** 2 + (means - mean) ** 2) * w).sum(0) / counts.sum()
        out[name] = {"min": np.min([s["min"] for s in ss], axis=0), "max": np.max([s["max"] for s in ss], axis=0),
                     "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())])}
    return out


def _serialize_stats(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {name: {k: v.tolist() for k, v in s.items()} for name, s in stats.items()}


# ==== import ===================================================================================
@dataclass
class _Plan:
    """How a source maps onto the spec, decided from its info.json alone."""

    version: str
    source: str  # the source directory, for the imported episodes' metadata
    ours: bool  # exported by pac_ros: extras restore the episodes exactly
    has_environment_state: bool
    image_columns: dict[str, CameraSpec]
    notes: list[str] = field(default_factory=list)


@dataclass
class _SourceEpisode:
    index: int
    file: Path
    table: pa.Table  # this episode's rows, in frame order
    meta: dict[str, Any]  # its episodes.jsonl line or meta/episodes row


def import_lerobot(source: str | os.PathLike, out: str | os.PathLike, spec: Spec) -> ConversionReport:
    """Write the LeRobotDataset (v2.x or v3.x) directory ``source`` as a new dataset ``out`` of ``spec``.

    The source is checked against the spec first (joints, cameras, image shapes, fps);
    a mismatch raises DatasetError naming the file and every difference.
    """
    t0 = time.perf_counter()
    root = Path(source)
    out = Path(out)
    info_path = root / INFO_PATH
    info = read_json_object(info_path, DatasetError, f"{root}: not a LeRobot dataset (no {INFO_PATH})",
                            "LeRobot dataset info")
    plan = _plan(root, info, spec)
    reader = _V3Source(root, info) if plan.version.startswith("v3.") else _V2Source(root, info)
    try:
        staging = _staging_dir(out)
    except (FileExistsError, FileNotFoundError) as exc:
        raise DatasetError(str(exc)) from exc
    episodes = steps = 0
    try:
        dest = staging / "dataset"
        with DatasetWriter(dest, spec, features=plan.has_environment_state) as writer:
            for ep in reader.episodes():
                steps += _import_episode(writer, ep, spec, plan, reader.tasks)
                episodes += 1
        if episodes == 0:
            raise DatasetError(f"{root}: the LeRobot dataset has no episodes")
        _publish(dest, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConversionReport(out, episodes, steps, time.perf_counter() - t0, plan.notes)


def _feature_names(f: dict[str, Any]) -> list[str] | None:
    """A feature's per-dimension names: a list, or v2-style {"motors": [...]}."""
    names = f.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and all(isinstance(x, str) for x in names):
        return names
    return None


def _image_shape(f: dict[str, Any]) -> tuple[int, ...] | None:
    """(H, W, C) of an image feature whose shape is HWC or, by its names, CHW."""
    shape, names = f.get("shape"), f.get("names")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        return None
    if isinstance(names, list) and names and str(names[0]).lower() in ("c", "channel", "channels"):
        return (shape[1], shape[2], shape[0])
    return tuple(shape)


def _plan(root: Path, info: dict[str, Any], spec: Spec) -> _Plan:
    info_path = root / INFO_PATH
    version = info.get("codebase_version")
    if not (isinstance(version, str) and (version.startswith("v3.") or version in LEGACY_VERSIONS)):
        raise DatasetError(f"{info_path}: codebase_version {version!r} is not supported "
                           f"(LeRobotDataset v2.0, v2.1 or v3.x)")
    features = info.get("features")
    if not isinstance(features, dict):
        raise DatasetError(f"{info_path}: no 'features' object")
    videos = sorted(k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") == "video")
    if videos:
        raise DatasetError(f"{info_path}: {', '.join(videos)} stored as MP4 video ({info.get('video_path')}); "
                           f"decoding video needs PyAV, which pac_ros does not depend on. Convert the dataset "
                           f"to image features (dtype 'image') first")

    problems: list[str] = []
    extra = info.get(EXTRA_KEY)
    ours = isinstance(extra, dict) and "spec" in extra
    if ours:
        try:
            spec.check_compatible(Spec.from_dict(extra["spec"], source=f"{info_path}: {EXTRA_KEY}.spec"),
                                  what="LeRobot export")
        except SpecError as exc:
            problems.append(str(exc))

    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isclose(
            fps, spec.control_rate_hz, rel_tol=1e-9):
        problems.append(f"fps {fps!r}, the spec's control_rate_hz is {spec.control_rate_hz}")
    n = spec.action_dim
    for key in ("observation.state", "action"):
        f = features.get(key)
        if not isinstance(f, dict):
            problems.append(f"{key}: missing (needs {n} joint values: {spec.joint_names})")
            continue
        if list(f.get("shape", [])) != [n]:
            problems.append(f"{key}: shape {f.get('shape')}, the spec has {n} joints {spec.joint_names}")
            continue
        names = _feature_names(f)
        if names is not None and names != spec.joint_names:
            problems.append(f"{key}: joint names {names}, the spec's are {spec.joint_names}")

    image_columns: dict[str, CameraSpec] = {}
    cams = {c.name: c for c in spec.cameras}
    for key, f in features.items():
        if not (isinstance(f, dict) and (f.get("dtype") == "image" or key.startswith(IMAGE_PREFIX))):
            continue
        cam = cams.get(key[len(IMAGE_PREFIX):]) if key.startswith(IMAGE_PREFIX) else None
        if cam is None:
            problems.append(f"{key}: no such camera in the spec (cameras {spec.camera_names})")
            continue
        if f.get("dtype") != "image":
            problems.append(f"{key}: dtype {f.get('dtype')!r}, expected 'image'")
            continue
        shape = _image_shape(f)
        if shape != cam.shape:
            problems.append(f"{key}: image shape {list(f.get('shape', []))} (H, W, C = {shape}), "
                            f"the spec's camera {cam.name!r} is {cam.shape} {cam.encoding}")
        image_columns[key] = cam
    for cam in spec.cameras:
        if fmt.image_column(cam.name) not in features:
            problems.append(f"{fmt.image_column(cam.name)}: missing (spec camera {cam.name!r})")
    if problems:
        raise DatasetError(f"{info_path}: the LeRobot dataset does not match the spec:\n  " + "\n  ".join(problems))

    notes: list[str] = []
    env = features.get("observation.environment_state")
    has_env = False
    if ours:
        has_env = bool(extra.get("has_environment_state"))
    elif isinstance(env, dict):
        has_env = list(env.get("shape", [])) == [spec.feature_dim]
        if not has_env:
            notes.append(f"observation.environment_state not carried over: shape {env.get('shape')}, "
                         f"the spec's block poses have {spec.feature_dim} values")
    dropped = sorted(k for k in features if k not in KNOWN_COLUMNS and k not in image_columns)
    if dropped:
        notes.append(f"features not carried over: {dropped}")
    if not ours:
        notes.append("not a pac_ros export: source 'lerobot', success = next.success on the last frame, "
                     "terminal = success (with terminate_on_success), stamps = timestamp")
    return _Plan(version, str(root), ours, has_env, image_columns, notes)


def _read_table(path: Path, wanted: set[str] | None = None) -> pa.Table:
    try:
        if wanted is None:
            return pq.read_table(path)
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[c for c in names if c in wanted])
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (named by the dataset's metadata)") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc


class _V3Source:
    """meta/tasks.parquet, meta/episodes/*/*.parquet, episodes concatenated in data files."""

    def __init__(self, root: Path, info: dict[str, Any]):
        self.root = root
        self.data_path = info.get("data_path") or DATA_PATH
        self.wanted = KNOWN_COLUMNS | {k for k in info["features"] if k.startswith(IMAGE_PREFIX)}
        self.tasks = self._tasks()
        self.meta = self._episodes()

    def _tasks(self) -> dict[int, str]:
        path = self.root / TASKS_PATH
        table = _read_table(path)
        pandas_meta = table.schema.pandas_metadata or {}
        candidates = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
        candidates += ["task", "__index_level_0__"]
        text = next((c for c in candidates if c in table.column_names), None)
        if text is None or "task_index" not in table.column_names:
            raise DatasetError(f"{path}: expected a task_index column and the task strings (as the index "
                               f"or a 'task' column), found {table.column_names}")
        return dict(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist()))

    def _episodes(self) -> list[dict[str, Any]]:
        paths = sorted((self.root / EPISODES_DIR).glob("*/*.parquet"))
        if not paths:
            raise DatasetError(f"{self.root / EPISODES_DIR}: no episode metadata files (chunk-*/file-*.parquet)")
        rows = []
        for path in paths:
            names = pq.read_schema(path).names
            table = _read_table(path, {c for c in names if not c.startswith("stats/")})
            for required in ("episode_index", "data/chunk_index", "data/file_index"):
                if required not in table.column_names:
                    raise DatasetError(f"{path}: missing column {required!r}")
            rows += table.to_pylist()
        return sorted(rows, key=lambda r: r["episode_index"])

    def episodes(self) -> Iterator[_SourceEpisode]:
        loaded: tuple[Path, pa.Table, np.ndarray] | None = None
        for m in self.meta:
            path = self.root / self.data_path.format(chunk_index=m["data/chunk_index"], file_index=m["data/file_index"])
            if loaded is None or loaded[0] != path:
                table = _read_table(path, self.wanted)
                if "episode_index" not in table.column_names:
                    raise DatasetError(f"{path}: no episode_index column")
                loaded = (path, table, table.column("episode_index").to_numpy())
            rows = np.flatnonzero(loaded[2] == m["episode_index"])
            if not rows.size:
                raise DatasetError(f"{path}: no rows of episode {m['episode_index']}, which meta/episodes places here")
            contiguous = rows[-1] - rows[0] + 1 == rows.size
            table = loaded[1].slice(rows[0], rows.size) if contiguous else loaded[1].take(pa.array(rows))
            yield _SourceEpisode(m["episode_index"], path, table, m)


class _V2Source:
    """meta/tasks.jsonl, meta/episodes.jsonl, one parquet per episode."""

    def __init__(self, root: Path, info: dict[str, Any]):
        self.root = root
        self.info_path = root / INFO_PATH
        self.data_path = info.get("data_path")
        if not isinstance(self.data_path, str):
            raise DatasetError(f"{self.info_path}: no data_path template")
        self.chunks_size = info.get("chunks_size") or CHUNKS_SIZE
        self.wanted = KNOWN_COLUMNS | {k for k in info["features"] if k.startswith(IMAGE_PREFIX)}
        self.tasks = {r["task_index"]: r["task"] for r in self._jsonl(LEGACY_TASKS_PATH, ("task_index", "task"))}
        self.meta = sorted(self._jsonl(LEGACY_EPISODES_PATH, ("episode_index",)), key=lambda r: r["episode_index"])

    def _jsonl(self, rel: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        path = self.root / rel
        if not path.exists():
            raise DatasetError(f"{path}: missing")
        records, _, torn = fmt.read_jsonl(path)
        if torn:
            raise DatasetError(f"{path}: last line is incomplete")
        for i, rec in enumerate(records):
            missing = [k for k in keys if k not in rec]
            if missing:
                raise DatasetError(f"{path}: line {i + 1}: missing {missing}")
        return records

    def episodes(self) -> Iterator[_SourceEpisode]:
        for m in self.meta:
            i = m["episode_index"]
            try:
                rel = self.data_path.format(episode_chunk=i // self.chunks_size, episode_index=i)
            except (KeyError, IndexError, ValueError) as exc:
                raise DatasetError(f"{self.info_path}: bad data_path {self.data_path!r}: {exc}") from exc
            path = self.root / rel
            yield _SourceEpisode(i, path, _read_table(path, self.wanted), m)


# ---- one episode --------------------------------------------------------------------------------
def _column(ep: _SourceEpisode, name: str, width: int, dtype: str) -> np.ndarray:
    """Column ``name`` as [T] (width 0) or [T, width] values."""
    T = ep.table.num_rows
    try:
        arr = ep.table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            arr = arr.flatten()
        out = arr.to_numpy(zero_copy_only=False)
    except KeyError:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} missing") from None
    except (pa.ArrowException, ValueError) as exc:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r}: {exc}") from exc
    want = T * max(width, 1)
    if out.size != want:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} has {out.size} values, "
                           f"expected {want} ({T} rows x {max(width, 1)})")
    if out.dtype == object:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} has missing values")
    return out.astype(dtype).reshape(T, width) if width else out.astype(dtype)


def _image_blobs(ep: _SourceEpisode, name: str) -> list[bytes]:
    col = ep.table.column(name).combine_chunks()
    if pa.types.is_struct(col.type):
        blobs = col.field("bytes").to_pylist()
        paths = col.field("path").to_pylist() if col.type.get_field_index("path") >= 0 else [None] * len(blobs)
    else:
        blobs, paths = col.to_pylist(), [None] * len(col)
    for t, (blob, rel) in enumerate(zip(blobs, paths)):
        if blob is None:  # an image kept as a file beside the parquet
            candidates = [ep.file.parent / rel, Path(rel)] if rel else []
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise DatasetError(f"{ep.file}: {name}[{t}]: no image bytes and no readable image path ({rel!r})")
            blobs[t] = found.read_bytes()
    return blobs


def _decode(blob: bytes, cam: CameraSpec, where: str) -> np.ndarray:
    """Image bytes (PNG, JPEG, …) -> uint8[H, W, C] in the camera's encoding; only lossless mode changes."""
    want = "L" if cam.channels == 1 else "RGB"
    lossless = {"RGB": ("RGB", "P", "L"), "L": ("L",)}[want]
    try:
        with Image.open(io.BytesIO(blob)) as img:
            if img.mode not in lossless:
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


def _import_episode(writer: DatasetWriter, ep: _SourceEpisode, spec: Spec, plan: _Plan,
                    tasks: dict[int, str]) -> int:
    where = f"{ep.file}: episode {ep.index}"
    T = ep.table.num_rows
    if T == 0:
        raise DatasetError(f"{where}: no rows")
    if ep.meta.get("length", T) != T:
        raise DatasetError(f"{where}: {T} rows, its metadata says length {ep.meta['length']}")
    if "frame_index" in ep.table.column_names:
        frames = _column(ep, "frame_index", 0, "int64")
        if np.any(np.diff(frames) < 0):  # rows out of order: put them in frame order
            order = np.argsort(frames, kind="stable")
            ep.table, frames = ep.table.take(pa.array(order)), frames[order]
        if not np.array_equal(frames, np.arange(T)):
            raise DatasetError(f"{where}: frame_index is not 0..{T - 1}")
    n = spec.action_dim
    q = _column(ep, "observation.state", n, "float32")
    a = _column(ep, "action", n, "float32")
    stamps = _column(ep, STAMP if plan.ours and STAMP in ep.table.column_names else "timestamp", 0, "float64")
    rewards = (_column(ep, "next.reward", 0, "float32") if "next.reward" in ep.table.column_names
               else np.zeros(T, np.float32))
    env = _column(ep, "observation.environment_state", spec.feature_dim, "float32") if plan.has_environment_state \
        else None
    if "task_index" in ep.table.column_names:
        ids = _column(ep, "task_index", 0, "int64")
        unknown = sorted({int(t) for t in ids if int(t) not in tasks})
        if unknown:
            raise DatasetError(f"{where}: task_index {unknown} not in the dataset's tasks")
        instructions = [tasks[int(t)] for t in ids]
    elif ep.meta.get("tasks"):
        instructions = [ep.meta["tasks"][0]] * T
    else:
        raise DatasetError(f"{where}: no task_index column and no tasks in its metadata")
    images = {name: _image_blobs(ep, name) for name in plan.image_columns}

    m = ep.meta
    if plan.ours:
        source, checkpoint, seed = m.get(EXTRA + "source") or "expert", m.get(EXTRA + "checkpoint"), m.get(EXTRA + "seed")
        try:
            metadata = json.loads(m.get(EXTRA + "metadata") or "{}")
        except ValueError as exc:
            raise DatasetError(f"{where}: {EXTRA}metadata is not JSON: {exc}") from exc
        success, terminal = bool(m.get(EXTRA + "success")), bool(m.get(EXTRA + "terminal"))
        dropped = int(m.get(EXTRA + "dropped") or 0)
    else:
        source, checkpoint, seed = "lerobot", None, None
        metadata = {"lerobot": {"dataset": plan.source, "codebase_version": plan.version,
                                "episode_index": ep.index}}
        success = bool(_column(ep, "next.success", 0, "bool")[-1]) if "next.success" in ep.table.column_names \
            else False
        terminal = success and spec.terminate_on_success
        dropped = 0

    buf = writer.begin_episode(instructions[0], source=source, checkpoint=checkpoint, seed=seed, metadata=metadata)
    for t in range(T):
        frame = {cam.name: _decode(images[name][t], cam, f"{where}: {name}[{t}]")
                 for name, cam in plan.image_columns.items()}
        try:
            buf.add_step(stamps[t], q[t], frame, a[t], float(rewards[t]),
                         features=None if env is None else env[t], instruction=instructions[t])
        except DatasetError as exc:
            raise DatasetError(f"{where}, frame {t}: {exc}") from exc
    writer.commit(buf, terminal=terminal, success=success, dropped=dropped)
    return T
