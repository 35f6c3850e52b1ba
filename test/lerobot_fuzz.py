"""Mutated LeRobot datasets, one generator shared by test/test_fuzz_lerobot_import.py (a bounded, seeded
sample) and bench/fuzz_lerobot_import.py (the long run). Case ``k`` of seed ``s`` is always the same input:
``make_case(case_rng(s, k))``.

A case is one of the valid bases (lerobot_fuzz_bases.py) with up to three mutations of its info.json,
episode and task metadata, parquet files or bytes, or symlinks out of it; lerobot_fuzz_run.py imports it
and sorts the result.
"""
from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from lerobot_fuzz_bases import bases, png
from PIL import Image

from pac_ros.spec import Spec

OUTSIDE = "outside"  # beside the source in a case's directory: a pristine copy of it, and a secret


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
    return png(np.zeros((9, 7, 3), np.uint8))


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


