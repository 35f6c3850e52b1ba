"""Mutated LeRobot datasets and the property every import of one must keep.

Shared by test/test_fuzz_lerobot_import.py (a bounded, seeded sample) and bench/fuzz_lerobot_import.py
(the long run). Case ``k`` of seed ``s`` is always the same input: ``make_case(random.Random(...))``.

A case is a small valid LeRobot dataset (four bases: our v3.0 export with images, the same with MP4 video,
the export without our ``pac_ros`` key, a hand-built v2.1) with one to three mutations of its metadata,
parquet files or bytes, or symlinks out of it. ``run_case`` imports it and sorts the result:

- ``clean``: the import returned and its output validates;
- ``refused``: a PacRosError with a message, nothing at ``--out``;
- anything else is a failure: ``crash`` (another exception, a refusal that left output, an output that does
  not validate, an error that hit the memory limit), ``hang`` (over the time limit), ``memory`` (peak
  resident memory over the limit), ``write_outside`` (a file outside ``--out`` created, changed or
  removed), ``read_outside`` (a clean import of a case whose paths lead outside the dataset).
"""
from __future__ import annotations

import io
import json
import os
import random
import resource
import shutil
import signal
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pac_ros.data import DatasetWriter
from pac_ros.data.lerobot import export_lerobot, import_lerobot
from pac_ros.data.validate import validate
from pac_ros.errors import PacRosError
from pac_ros.spec import Spec, default_spec

OUTSIDE = "outside"  # beside the source in a case's directory: a pristine copy of it, and a secret
SECRET = "secret.txt"
MEMORY_LIMIT = 200 << 20  # peak resident memory a case may add
ADDRESS_SPACE = 4 << 30  # address space a case may add before allocations fail (a safety net)
FAILURES = ("crash", "hang", "memory", "write_outside", "read_outside")


class Hang(BaseException):
    """Raised by the timer in a case over its time limit (a BaseException: no ``except Exception`` eats it)."""


# ---- the valid bases -------------------------------------------------------------------------------
def fuzz_spec(video: bool = False) -> Spec:
    d = default_spec().to_dict()
    d["cameras"] = [{"name": "top", "width": 10, "height": 8, "encoding": "rgb8"}]
    if not video:
        d["cameras"].append({"name": "grey", "width": 8, "height": 8, "encoding": "mono8"})
    return Spec.from_dict(d)


def _episodes(spec: Spec, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    out = []
    for T in (4, 3):
        out.append({"q": rng.uniform(spec.lower, spec.upper, (T, spec.action_dim)).astype(np.float32),
                    "a": rng.uniform(spec.lower, spec.upper, (T, spec.action_dim)).astype(np.float32),
                    "f": rng.uniform(-1, 1, (T, spec.feature_dim)).astype(np.float32),
                    "r": rng.random(T).astype(np.float32),
                    "images": {c.name: rng.integers(0, 256, (T, *c.shape), dtype=np.uint8) for c in spec.cameras}})
    return out


def _record(root: Path, spec: Spec) -> None:
    rng = np.random.default_rng(7)
    with DatasetWriter(root, spec, features=True) as w:
        for k, e in enumerate(_episodes(spec, rng)):
            buf = w.begin_episode(f"stack block {k}", seed=k)
            for t in range(len(e["q"])):
                buf.add_step(0.1 * t, e["q"][t], {c: e["images"][c][t] for c in e["images"]}, e["a"][t],
                             float(e["r"][t]), features=e["f"][t])
            w.commit(buf, terminal=k == 0, success=k == 0)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _build_v21(root: Path, spec: Spec) -> None:
    """A foreign v2.1 dataset: per-episode files, JSONL metadata, LeRobot robot names (``<joint>.pos``)."""
    rng = np.random.default_rng(8)
    n = spec.action_dim
    names = {"motors": [f"{j}.pos" for j in spec.joint_names]}
    features = {"observation.state": {"dtype": "float32", "shape": [n], "names": names},
                "action": {"dtype": "float32", "shape": [n], "names": names},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None},
                "next.reward": {"dtype": "float32", "shape": [1], "names": None},
                "next.success": {"dtype": "bool", "shape": [1], "names": None}}
    for c in spec.cameras:
        features[f"observation.images.{c.name}"] = {"dtype": "image", "shape": [c.height, c.width, c.channels],
                                                    "names": ["height", "width", "channel"]}
    info = {"codebase_version": "v2.1", "robot_type": "so100", "total_episodes": 2, "total_frames": 7,
            "total_tasks": 2, "total_videos": 0, "total_chunks": 1, "chunks_size": 1000,
            "fps": spec.control_rate_hz, "splits": {"train": "0:2"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    tasks = ["pick up the cube", "put it down"]
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(tasks)))
    start, lines = 0, []
    for k, e in enumerate(_episodes(spec, rng)):
        T = len(e["q"])
        cols = {"observation.state": pa.array(list(e["q"]), pa.list_(pa.float32())),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(e["a"].reshape(-1)), n),
                "timestamp": pa.array((np.arange(T) / spec.control_rate_hz).astype(np.float32)),
                "frame_index": pa.array(np.arange(T, dtype=np.int64)),
                "episode_index": pa.array(np.full(T, k, np.int64)),
                "index": pa.array(np.arange(start, start + T, dtype=np.int64)),
                "task_index": pa.array(np.full(T, k, np.int64)),
                "next.reward": pa.array(e["r"]),
                "next.success": pa.array(np.arange(T) == T - 1)}
        for c in spec.cameras:
            frames = e["images"][c.name] if c.channels == 3 else e["images"][c.name][..., 0]
            cols[f"observation.images.{c.name}"] = pa.StructArray.from_arrays(
                [pa.array([_png(x) for x in frames], pa.binary()), pa.nulls(T, pa.string())], names=["bytes", "path"])
        pq.write_table(pa.table(cols), root / f"data/chunk-000/episode_{k:06d}.parquet")
        lines.append({"episode_index": k, "tasks": [tasks[k]], "length": T})
        start += T
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@dataclass
class Base:
    name: str
    spec: Spec
    files: dict[str, bytes]  # relative path -> content


def _snapshot_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


_BASES: list[Base] = []


def bases() -> list[Base]:
    """The valid datasets every case starts from, built once per process."""
    if not _BASES:
        with tempfile.TemporaryDirectory(prefix="lerobot-fuzz-base-") as tmp:
            tmp = Path(tmp)
            for video in (False, True):
                spec = fuzz_spec(video)
                _record(tmp / f"rec{video}", spec)
                out = tmp / f"v3{video}"
                export_lerobot(tmp / f"rec{video}", out, data_files_size_in_mb=1e-6, video=video)
                _BASES.append(Base("ours-v3-video" if video else "ours-v3", spec, _snapshot_files(out)))
            ours = _BASES[0]
            info = json.loads(ours.files["meta/info.json"])
            del info["pac_ros"]
            foreign = dict(ours.files, **{"meta/info.json": json.dumps(info, indent=4).encode()})
            _BASES.append(Base("foreign-v3", ours.spec, foreign))
            _build_v21(tmp / "v21", ours.spec)
            _BASES.append(Base("foreign-v21", ours.spec, _snapshot_files(tmp / "v21")))
    return _BASES


# ---- a case ----------------------------------------------------------------------------------------
@dataclass
class Case:
    base: str
    spec: Spec
    files: dict[str, bytes | None]  # None: a directory in place of the file
    links: dict[str, str] = field(default_factory=dict)  # relative path -> target relative to the case directory
    mutations: list[str] = field(default_factory=list)
    escapes: bool = False  # some path the import reads leads outside the source

    def describe(self) -> str:
        return f"{self.base}: " + "; ".join(self.mutations or ["unmutated"])


WEIRD = [None, -1, 0, 1, 2, 3, 7, 999, 2 ** 31, 2 ** 62, -2 ** 62, 2 ** 70, 10 ** 400, 0.5, -0.0, 1e308,
         float("nan"), float("inf"), "0", "", "x" * 300, True, False, [], [1], {}, {"a": 1}]
HUGE_SHAPES = [[100000, 100000, 3], [3, 100000, 100000], [2 ** 40], [-1], [0], [], [7, 7], ["7"], [7.5],
               [1e308], None, "7", [2 ** 63, 1, 1], [6, 8, 3, 1], [6, -8, 3]]
TEMPLATES = [
    "../{OUT}/data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    "../../{OUT}/data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "{ABS}/data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    "{ABS}/data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "data/chunk-{chunk_index:03d}/../../../{OUT}/data/chunk-000/file-{file_index:03d}.parquet",
    "data/{chunk_index.__class__}/file-{file_index}.parquet", "data/{chunk_index[0]}/{file_index}.parquet",
    "data/{chunk_index!r}/{file_index}.parquet", "data/{chunk_index:>999999999}/{file_index}.parquet",
    "data/{chunk_index:0999999999d}/{file_index}.parquet", "data/{chunk_index:{file_index}}.parquet",
    "data/{chunk_index:,}/{file_index:_x}.parquet", "data/{chunk_index:s}/{file_index}.parquet",
    "data/{unknown}/{file_index}.parquet", "data/{}/{file_index}.parquet", "data/{0}.parquet",
    "data/{{chunk_index}}.parquet", "data/{chunk_index", "data/chunk_index}", "", ".", "data", "meta/info.json",
    "data/chunk-000/file-000.parquet\x00.txt", "data/" + "a" * 5000 + ".parquet", "//etc/passwd",
    "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
    "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    "../{OUT}/videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    "{ABS}/videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    "videos/{video_key.__len__}/x.mp4", "videos/{video_key:%^99999999}/x.mp4",
]


def _escaping_template(t: str) -> bool:
    return "{OUT}" in t or "{ABS}" in t or t.startswith("//")


def _json(data: bytes) -> Any:
    return json.loads(data)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()  # NaN and Infinity as Python writes them


# -- info.json
def m_info_field(rng: random.Random, case: Case) -> str:
    info = _json(case.files["meta/info.json"])
    key = rng.choice(["total_episodes", "total_frames", "total_tasks", "chunks_size", "fps", "codebase_version",
                      "data_path", "video_path", "features", "data_files_size_in_mb", "splits", "pac_ros",
                      "total_chunks", "robot_type"])
    value = rng.choice(WEIRD + ["v2.0", "v2.1", "v3.0", "v3.9", "v1.6", "v30"])
    if rng.random() < 0.3:
        info.pop(key, None)
        value = "<deleted>"
    else:
        info[key] = value
    case.files["meta/info.json"] = _dump(info)
    return f"info.json {key} = {value!r:.60}"


def m_info_template(rng: random.Random, case: Case) -> str:
    info = _json(case.files["meta/info.json"])
    key = rng.choice(["data_path", "video_path"])
    t = rng.choice(TEMPLATES)
    if _escaping_template(t) and (key == "data_path" or "video" in case.base):
        case.escapes = True
    info[key] = t
    case.files["meta/info.json"] = _dump(info)
    return f"info.json {key} = {t!r:.80}"


def m_info_feature(rng: random.Random, case: Case) -> str:
    info = _json(case.files["meta/info.json"])
    feats = info.get("features")
    name = rng.choice(sorted(feats))
    f = feats[name]
    what = rng.choice(["shape", "shape", "dtype", "names", "names_long", "delete", "info", "replace"])
    if what == "shape":
        f["shape"] = rng.choice(HUGE_SHAPES)
    elif what == "dtype":
        f["dtype"] = rng.choice(["video", "image", "float64", "int8", "string", None, 3, "bool"])
    elif what == "names":
        f["names"] = rng.choice([None, [], ["a"] * 7, {"motors": None}, {"a": [1, 2]}, "x", [[1]], {"a": [], "b": []}])
    elif what == "names_long":
        f["names"] = [f"j{i}" for i in range(rng.choice([8, 100000]))]
    elif what == "info":
        f["info"] = rng.choice([{"video.is_depth_map": True}, {"video.height": 10 ** 9, "video.width": -1}, "x"])
    elif what == "replace":
        feats[name] = rng.choice([None, [], "x", 3])
    else:
        del feats[name]
    case.files["meta/info.json"] = _dump(info)
    return f"info.json features[{name!r}] {what}"


def m_info_spec(rng: random.Random, case: Case) -> str:
    """Our export's embedded spec (info.json pac_ros.spec) changed: a field, a joint's or a camera's."""
    info = _json(case.files["meta/info.json"])
    spec = info.get("pac_ros", {}).get("spec") if isinstance(info.get("pac_ros"), dict) else None
    if not isinstance(spec, dict):
        return m_info_field(rng, case)
    key = rng.choice(sorted(spec))
    target, where = spec, key
    if isinstance(spec[key], list) and spec[key] and isinstance(spec[key][0], dict) and rng.random() < 0.7:
        target = rng.choice(spec[key])
        where = rng.choice(sorted(target))
    elif isinstance(spec[key], dict) and rng.random() < 0.7:
        target, where = spec[key], rng.choice(sorted(spec[key]))
    target[where] = rng.choice(WEIRD + ["{top}", "{x.__class__}", [{"name": "x"}]])
    case.files["meta/info.json"] = _dump(info)
    return f"info.json pac_ros.spec {key}/{where} changed"


def m_info_json(rng: random.Random, case: Case) -> str:
    what = rng.choice(["nested", "list", "nan_fps", "bom", "dup_keys", "not_utf8"])
    data = case.files["meta/info.json"]
    if what == "nested":
        data = b"[" * 200000 + b"]" * 200000
    elif what == "list":
        data = b"[1, 2]"
    elif what == "nan_fps":
        info = _json(data)
        info["fps"] = rng.choice([float("nan"), float("inf"), -10.0, 1e-300])
        data = _dump(info)
    elif what == "bom":
        data = b"\xef\xbb\xbf" + data
    elif what == "dup_keys":
        data = data.replace(b'"codebase_version"', b'"codebase_version": "v9.9", "codebase_version"', 1)
    else:
        data = data.replace(b'"fps"', b'"f\xff\xfe"', 1)
    case.files["meta/info.json"] = data
    return f"info.json {what}"


# -- episode metadata
def m_episodes_jsonl(rng: random.Random, case: Case) -> str:
    path = "meta/episodes.jsonl"
    if path not in case.files or case.files[path] is None:
        return m_episodes_parquet(rng, case) if any(p.startswith("meta/episodes/") for p in case.files) else "none"
    lines = case.files[path].decode("utf-8", "replace").splitlines()
    i = rng.randrange(len(lines))
    what = rng.choice(["field", "field", "drop", "dup", "garbage", "not_object", "blank"])
    if what == "field":
        rec = json.loads(lines[i]) if lines[i].startswith("{") else {}
        key = rng.choice(["episode_index", "length", "tasks"])
        rec[key] = rng.choice(WEIRD + [[None], ["t"] * 3, [5]])
        lines[i] = json.dumps(rec)
    elif what == "drop":
        del lines[i]
    elif what == "dup":
        lines.insert(i, lines[i])
    elif what == "garbage":
        lines[i] = "{\"episode_index\": 0, " + "x" * rng.randrange(1, 50)
    elif what == "not_object":
        lines[i] = rng.choice(["[]", "3", "null", "\"s\""])
    else:
        lines[i] = ""
    case.files[path] = ("\n".join(lines) + ("\n" if rng.random() < 0.9 else "")).encode()
    return f"episodes.jsonl line {i + 1} {what}"


def m_tasks(rng: random.Random, case: Case) -> str:
    if "meta/tasks.jsonl" in case.files and case.files["meta/tasks.jsonl"] is not None:
        lines = case.files["meta/tasks.jsonl"].decode().splitlines()
        i = rng.randrange(len(lines))
        rec = json.loads(lines[i])
        key = rng.choice(["task_index", "task"])
        rec[key] = rng.choice(WEIRD)
        lines[i] = json.dumps(rec)
        case.files["meta/tasks.jsonl"] = ("\n".join(lines) + "\n").encode()
        return f"tasks.jsonl line {i + 1} {key}"
    return _mutate_table(rng, case, "meta/tasks.parquet")


def _table(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def _to_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _set_column(table: pa.Table, name: str, values: list[Any]) -> pa.Table:
    """Column ``name`` replaced by ``values``, typed as the column if they fit, else as their own type,
    else as strings."""
    i = table.schema.get_field_index(name)
    for typ in (table.schema.field(name).type, None):
        try:
            arr = pa.array(values, type=typ)
            break
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            continue
    else:
        arr = pa.array([None if v is None else str(v) for v in values], pa.string())
    return table.set_column(i, pa.field(name, arr.type), arr)


def _mutate_table(rng: random.Random, case: Case, path: str) -> str:
    data = case.files.get(path)
    if data is None:
        return "none"
    try:
        table = _table(data)
    except (pa.ArrowException, OSError):
        return "none"
    if table.num_columns == 0 or table.num_rows == 0:
        return "none"
    name = rng.choice(table.column_names)
    col = table.column(name).to_pylist()
    what = rng.choice(["drop", "rename", "strings", "null", "value", "value", "value", "rows_drop", "rows_dup",
                       "rows_reverse", "list_width", "big", "binary_garbage", "schema_meta"])
    r = rng.randrange(len(col))
    if what == "drop":
        table = table.drop_columns([name])
    elif what == "rename":
        table = table.rename_columns([rng.choice(["x", name + " ", name.upper(), "episode_index", "timestamp"])
                                      if c == name else c for c in table.column_names])
    elif what == "strings":
        table = _set_column(table, name, [None if v is None else str(v) for v in col])
    elif what == "null":
        col[r] = None
        table = _set_column(table, name, col)
    elif what in ("value", "big"):
        v = col[r]
        if isinstance(v, list) and v:
            v = list(v)
            v[rng.randrange(len(v))] = rng.choice([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 3.5])
        elif isinstance(v, dict):
            v = dict(v, bytes=rng.choice([b"", b"\x89PNG\r\n\x1a\n", b"garbage", _bomb_png(), _wrong_png(),
                                          _mode_png(rng), None]),
                     path=rng.choice([None, "../../../outside/secret.txt", "/etc/hostname", "missing.png",
                                      "", ".", "../" + OUTSIDE]))
        else:
            v = rng.choice(WEIRD + [-5, 10 ** 6, 2 ** 63 - 1, -2 ** 63]) if what == "value" else \
                rng.choice([1e30, -1e30, 2 ** 62, float("nan")])
        col[r] = v
        table = _set_column(table, name, col)
    elif what == "rows_drop":
        table = table.take(pa.array([i for i in range(table.num_rows) if i != r]))
    elif what == "rows_dup":
        table = table.take(pa.array(list(range(table.num_rows)) + [r]))
    elif what == "rows_reverse":
        table = table.take(pa.array(list(range(table.num_rows))[::-1]))
    elif what == "list_width":
        v = col[r]
        col[r] = (list(v) + [0.0] * rng.choice([1, 3]) if rng.random() < 0.5 else list(v)[:-1]) \
            if isinstance(v, list) else [0.0] * 8
        table = _set_column(table, name, col)
    elif what == "binary_garbage":
        table = _set_column(table, name, [rng.randbytes(rng.randrange(1, 20)) for _ in col])
    else:
        table = table.replace_schema_metadata({b"pandas": b"{not json", b"huggingface": b"[1,"})
    case.files[path] = _to_bytes(table)
    return f"{path} column {name!r} {what}"


_BOMB: list[bytes] = []


def _bomb_png() -> bytes:
    """A valid PNG whose header claims 9000 x 9000 RGB (243 MB decoded), a few hundred kB compressed."""
    if not _BOMB:
        buf = io.BytesIO()
        Image.new("RGB", (9000, 9000)).save(buf, format="PNG", compress_level=9)
        _BOMB.append(buf.getvalue())
    return _BOMB[0]


def _wrong_png() -> bytes:
    return _png(np.zeros((9, 7, 3), np.uint8))


def _mode_png(rng: random.Random) -> bytes:
    mode, form = rng.choice(["LA", "RGBA", "I;16", "1", "CMYK"]), rng.choice(["PNG", "TIFF"])
    buf = io.BytesIO()
    Image.new(mode, (10, 8)).save(buf, format="TIFF" if mode == "CMYK" else form)
    return buf.getvalue()


def m_episodes_parquet(rng: random.Random, case: Case) -> str:
    paths = sorted(p for p in case.files if p.startswith("meta/episodes/") and p.endswith(".parquet"))
    return _mutate_table(rng, case, rng.choice(paths)) if paths else m_episodes_jsonl(rng, case)


def m_data_parquet(rng: random.Random, case: Case) -> str:
    paths = sorted(p for p in case.files if p.startswith("data/") and p.endswith(".parquet"))
    return _mutate_table(rng, case, rng.choice(paths))


def m_data_semantic(rng: random.Random, case: Case) -> str:
    """A targeted lie in a data file: a per-row column changed consistently."""
    paths = sorted(p for p in case.files if p.startswith("data/") and p.endswith(".parquet"))
    path = rng.choice(paths)
    if case.files[path] is None:
        return "none"
    table = _table(case.files[path])
    T = table.num_rows
    what = rng.choice(["frame_shuffle", "frame_dup", "ts_flat", "ts_back", "ts_huge", "episode_other",
                       "task_out", "state_out", "action_out", "state_nan", "reward_nan", "env_inf"])
    cols = table.column_names
    if what.startswith("frame") and "frame_index" in cols:
        f = list(range(T))
        rng.shuffle(f) if what == "frame_shuffle" else f.__setitem__(rng.randrange(T), f[0])
        table = _set_column(table, "frame_index", f)
    elif what.startswith("ts") and "timestamp" in cols:
        ts = table.column("timestamp").to_pylist()
        i = rng.randrange(T)
        ts[i] = {"ts_flat": ts[i - 1] if i else ts[0], "ts_back": -1.0, "ts_huge": 1e38}[what]
        table = _set_column(table, "timestamp", ts)
    elif what == "episode_other" and "episode_index" in cols:
        table = _set_column(table, "episode_index", [rng.choice([5, -1, 2 ** 40])] * T)
    elif what == "task_out" and "task_index" in cols:
        table = _set_column(table, "task_index", [rng.choice([-1, 2, 2 ** 40])] * T)
    elif what in ("state_out", "action_out", "state_nan") or what == "env_inf":
        name = {"state_out": "observation.state", "state_nan": "observation.state", "action_out": "action",
                "env_inf": "observation.environment_state"}[what]
        if name in cols:
            v = table.column(name).to_pylist()
            i = rng.randrange(T)
            v[i] = list(v[i])
            v[i][rng.randrange(len(v[i]))] = {"state_out": 50.0, "action_out": -50.0, "state_nan": float("nan"),
                                              "env_inf": float("inf")}[what]
            table = _set_column(table, name, v)
    elif what == "reward_nan" and "next.reward" in cols:
        r = table.column("next.reward").to_pylist()
        r[rng.randrange(T)] = float("nan")
        table = _set_column(table, "next.reward", r)
    case.files[path] = _to_bytes(table)
    return f"{path} {what}"


# -- bytes and the file tree
def m_bytes(rng: random.Random, case: Case) -> str:
    path = rng.choice(sorted(p for p in case.files if case.files[p] is not None))
    data = case.files[path]
    what = rng.choice(["truncate", "flip", "garbage", "empty", "delete", "directory", "tail_garbage"])
    if what == "truncate":
        data = data[:rng.randrange(len(data) + 1)]
    elif what == "flip":
        b = bytearray(data)
        for _ in range(rng.choice([1, 4, 32])):
            if b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
    elif what == "garbage":
        data = rng.randbytes(rng.choice([1, 8, 100, 5000]))
    elif what == "empty":
        data = b""
    elif what == "tail_garbage":
        data = data + rng.randbytes(64)
    if what == "delete":
        del case.files[path]
    elif what == "directory":
        case.files[path] = None
    else:
        case.files[path] = data
    return f"{path} {what}"


def m_video_bytes(rng: random.Random, case: Case) -> str:
    """Damage an MP4: flipped bits in its header boxes or anywhere, a cut, a swapped box name."""
    videos = sorted(p for p in case.files if p.endswith(".mp4") and case.files[p] is not None)
    if not videos:
        return m_bytes(rng, case)
    path = rng.choice(videos)
    b = bytearray(case.files[path])
    what = rng.choice(["flip_header", "flip", "cut", "box"])
    if what == "flip_header":
        for _ in range(rng.choice([1, 2, 8])):
            b[rng.randrange(min(len(b), 2048))] ^= 1 << rng.randrange(8)
    elif what == "flip":
        for _ in range(rng.choice([1, 16])):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif what == "cut":
        b = b[:rng.randrange(len(b))]
    else:
        for box in (b"moov", b"mdat", b"stsd", b"stts", b"stco", b"avcC", b"trak"):
            if box in b and rng.random() < 0.4:
                b = b.replace(box, bytes(rng.randrange(97, 123) for _ in range(4)), 1)
    case.files[path] = bytes(b)
    return f"{path} {what}"


READ_PREFIXES = ("meta/info.json", "meta/tasks", "meta/episodes", "data/", "videos/")


def m_link_out(rng: random.Random, case: Case) -> str:
    """A file or directory the import reads becomes a symlink to the same thing outside the source."""
    read = sorted(p for p in case.files if p.startswith(READ_PREFIXES))
    path = rng.choice(read)
    if rng.random() < 0.4 and "/" in path:
        path = path.rsplit("/", 1)[0] if rng.random() < 0.5 else path.split("/", 1)[0]
    if path == "meta":  # meta/info.json leads out with it
        path = "meta/info.json"
    for p in [p for p in case.files if p == path or p.startswith(path + "/")]:
        del case.files[p]
    case.links[path] = f"{OUTSIDE}/{path}"
    case.escapes = True
    return f"{path} -> symlink out of the dataset"


def m_link_in(rng: random.Random, case: Case) -> str:
    """A file becomes a symlink to another file inside the source (allowed, though maybe the wrong file)."""
    files = sorted(p for p in case.files if case.files[p] is not None)
    path, target = rng.choice(files), rng.choice(files)
    del case.files[path]
    case.links[path] = f"src/{target}"
    return f"{path} -> symlink to {target}"


MUTATIONS: list[tuple[Callable[[random.Random, Case], str], int]] = [  # (mutation, weight)
    (m_info_field, 6), (m_info_template, 5), (m_info_feature, 6), (m_info_spec, 2), (m_info_json, 2),
    (m_episodes_jsonl, 5), (m_episodes_parquet, 5), (m_tasks, 2), (m_data_parquet, 10), (m_data_semantic, 8),
    (m_bytes, 6), (m_video_bytes, 2), (m_link_out, 2), (m_link_in, 1)]


def base_case(name: str) -> Case:
    """An unmutated case of the base ``name``, for a test to edit."""
    base = next(b for b in bases() if b.name == name)
    return Case(base.name, base.spec, dict(base.files))


def edit_info(case: Case, change: Callable[[dict[str, Any]], Any]) -> None:
    info = _json(case.files["meta/info.json"])
    change(info)
    case.files["meta/info.json"] = _dump(info)


def edit_table(case: Case, path: str, change: Callable[[pa.Table], pa.Table]) -> None:
    case.files[path] = _to_bytes(change(_table(case.files[path])))


def make_case(rng: random.Random) -> Case:
    """One mutated dataset; everything drawn from ``rng``."""
    base = rng.choice(bases())
    case = Case(base.name, base.spec, dict(base.files))
    k = rng.choices([0, 1, 2, 3], weights=[1, 12, 5, 2])[0]
    funcs, weights = zip(*MUTATIONS)
    for _ in range(k):
        m = rng.choices(funcs, weights=weights)[0]
        try:
            case.mutations.append(m(rng, case))
        except Exception:  # the file is too broken for this mutation: it stays as it is
            case.mutations.append(f"{m.__name__} skipped (earlier mutation)")
    return case


def case_rng(seed: int, k: int) -> random.Random:
    return random.Random(f"lerobot-fuzz:{seed}:{k}")


# ---- running one -----------------------------------------------------------------------------------
def materialize(case: Case, work: Path) -> Path:
    """Write the case under ``work``: ``src`` (the mutated dataset) and ``outside`` (the base, untouched, and
    a secret). Returns ``src``."""
    src, outside = work / "src", work / OUTSIDE
    base = next(b for b in bases() if b.name == case.base)
    for rel, data in base.files.items():
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(data)
    (outside / SECRET).write_text("not part of any dataset\n")
    for rel, data in case.files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            p.mkdir()
        else:
            p.write_bytes(_fill(data, work))
    for rel, target in case.links.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(work / target, p.parent), p)
    return src


def _fill(data: bytes, work: Path) -> bytes:
    """Templates name the case's own outside copy: ``{ABS}`` absolutely, ``{OUT}`` relative to the source."""
    return data.replace(b"{ABS}", str(work / OUTSIDE).encode()).replace(b"{OUT}", OUTSIDE.encode())


def tree(root: Path, skip: Path) -> dict[str, tuple]:
    """Everything under ``root`` but ``skip``: path -> (kind, size, mtime, content hash for small files)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@dataclass
class Outcome:
    kind: str  # clean | refused | one of FAILURES
    detail: str
    seconds: float

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _memory_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def run_case(case: Case, work: Path, time_limit: float = 20.0) -> Outcome:
    """Import the case from ``work/src`` into ``work/out`` and sort the result (see the module's docstring)."""
    import time

    work.mkdir(parents=True, exist_ok=True)
    src = materialize(case, work)
    out = work / "out"
    before = tree(work, out)
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + ADDRESS_SPACE
    if old_limit[1] != resource.RLIM_INFINITY:
        limit = min(limit, old_limit[1])
    _reset_peak()
    base_rss = _rss()

    def alarm(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    t0 = time.perf_counter()
    kind, detail = "clean", ""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, old_limit[1]))
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            import_lerobot(src, out, case.spec)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            resource.setrlimit(resource.RLIMIT_AS, old_limit)
    except Hang:
        kind, detail = "hang", f"over {time_limit} s"
    except PacRosError as exc:
        kind, detail = "refused", str(exc)
        if _memory_error(exc):
            kind = "crash"
            detail = f"hit the memory limit: {exc}"
        elif not detail.strip():
            kind, detail = "crash", f"{type(exc).__name__} without a message"
        elif out.exists() or out.is_symlink():
            kind, detail = "crash", f"refused but left {out}: {exc}"
    except BaseException as exc:  # noqa: BLE001 - sorting every other exception is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        kind = "crash"
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    finally:
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - t0
    peak = _peak_rss() - base_rss
    if kind == "clean":
        report = validate(out)
        if not report.ok:
            kind, detail = "crash", "imported, but the output does not validate: " + "; ".join(report.problems[:3])
        elif case.escapes:
            kind, detail = "read_outside", "imported although a path leads outside the dataset"
    after = tree(work, out)
    if before != after and kind not in ("crash", "hang"):
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        kind, detail = "write_outside", f"changed outside --out: {changed[:5]}"
    if kind in ("clean", "refused") and peak > MEMORY_LIMIT:
        kind, detail = "memory", f"peak resident memory +{peak / 2 ** 20:.0f} MiB"
    return Outcome(kind, detail, seconds)


def fresh(work: Path) -> None:
    """Empty ``work`` for the next case (symlinks removed, never followed)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
