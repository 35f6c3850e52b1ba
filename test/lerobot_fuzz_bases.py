"""The small valid LeRobot datasets the fuzz cases start from (test/lerobot_fuzz.py), built once per process:
our v3.0 export with images, the same with MP4 video, that export without our ``pac_ros`` key, a hand-built
v2.1 with LeRobot robot names."""
from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pac_ros.data import DatasetWriter
from pac_ros.data.lerobot import export_lerobot
from pac_ros.spec import Spec, default_spec


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


def png(arr: np.ndarray) -> bytes:
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
                [pa.array([png(x) for x in frames], pa.binary()), pa.nulls(T, pa.string())], names=["bytes", "path"])
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

