"""LeRobotDataset v3.0 export and v2.1/v3.0 import (pac_ros/data/lerobot.py)."""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pac_ros.cli import main
from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data.lerobot import export_lerobot, import_lerobot
from pac_ros.spec import Spec, default_spec

SAME_ARRAYS = ("timestamp", "joint_positions", "actions", "rewards", "is_first", "is_last", "is_terminal",
               "features")
SAME_META = ("length", "tasks", "instruction", "source", "checkpoint", "success", "terminal", "return", "seed",
             "start_stamp", "end_stamp", "duration_s", "achieved_rate_hz", "dropped", "metadata")


def png_columns(ds: Dataset, i: int) -> dict[str, list[bytes]]:
    cols = [f"observation.images.{c}" for c in ds.cameras]
    return pq.read_table(ds.episode_path(i), columns=cols).to_pydict()


def assert_same_episode(a: Dataset, i: int, b: Dataset, j: int) -> None:
    x, y = a.load_episode(i), b.load_episode(j)
    for name in SAME_ARRAYS:
        u, v = getattr(x, name), getattr(y, name)
        if u is None or v is None:
            assert u is None and v is None, name
            continue
        assert u.dtype == v.dtype and u.shape == v.shape, name
        assert u.tobytes() == v.tobytes(), f"episode {i}: {name} differs"  # bit-exact, NaN-safe
    assert x.instructions == y.instructions
    assert x.images.keys() == y.images.keys()
    for cam in x.images:
        np.testing.assert_array_equal(x.images[cam], y.images[cam])
    assert png_columns(a, i) == png_columns(b, j)  # the very same PNG bytes
    for key in SAME_META:
        assert x.meta.get(key) == y.meta.get(key), key


# ---- ours -> LeRobot v3 -> ours ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(collected, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "v3"
    # a tiny file limit, so that episodes spread over several data files
    report = export_lerobot(collected, out, data_files_size_in_mb=0.6)
    return out, report


def test_round_trip_is_bit_exact(collected, exported, tmp_path):
    out, report = exported
    src = Dataset(collected)
    assert (report.episodes, report.steps) == (len(src), src.total_steps)
    assert len(list((out / "data").glob("chunk-000/file-*.parquet"))) > 1

    back = import_lerobot(out, tmp_path / "back", src.spec)
    assert (back.episodes, back.steps) == (len(src), src.total_steps)
    ds = Dataset(tmp_path / "back", src.spec)
    assert ds.info["spec"] == src.info["spec"] and ds.has_features == src.has_features
    assert len(ds) == len(src)
    for i in range(len(src)):
        assert_same_episode(src, i, ds, i)
    assert ds.fingerprint() == src.fingerprint()  # other files (recorded_at), the same training data


def test_round_trip_of_other_cameras_sources_and_instruction_changes(tmp_path):
    d = copy.deepcopy(default_spec().to_dict())
    d["cameras"] = [{"name": "front", "width": 40, "height": 32, "encoding": "bgr8"},
                    {"name": "wrist", "width": 24, "height": 16, "encoding": "mono8"}]
    spec = Spec.from_dict(d)
    rng = np.random.default_rng(1)
    instr = spec.instructions()
    with DatasetWriter(tmp_path / "src", spec, features=False) as w:
        for k, (source, checkpoint, terminal) in enumerate([("teleop", None, True), ("policy", "pac@42", False)]):
            ep = w.begin_episode(instr[k], source=source, checkpoint=checkpoint, seed=None if k else 5,
                                 metadata={"operator": "ada", "k": k})
            for t in range(7):
                ep.add_step(100.0 + 0.1 * t + 1e-9 * k, rng.uniform(spec.lower, spec.upper),
                            {c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
                            rng.uniform(spec.lower, spec.upper), float(rng.random()),
                            instruction=instr[k + (t >= 4)])
            w.commit(ep, terminal=terminal, success=not terminal, dropped=3 * k)
    export_lerobot(tmp_path / "src", tmp_path / "v3")
    import_lerobot(tmp_path / "v3", tmp_path / "back", spec)
    src, back = Dataset(tmp_path / "src"), Dataset(tmp_path / "back", spec)
    for i in range(2):
        assert_same_episode(src, i, back, i)
    info = json.loads((tmp_path / "v3/meta/info.json").read_text())
    assert info["features"]["observation.images.wrist"]["shape"] == [16, 24, 1]
    assert "observation.environment_state" not in info["features"]


# ---- what the v3.0 layout requires -------------------------------------------------------------------
def test_export_layout_follows_lerobot_v3(collected, exported):
    out, _ = exported
    src = Dataset(collected)
    spec = src.spec
    info = json.loads((out / "meta/info.json").read_text())
    for key in ("codebase_version", "robot_type", "fps", "total_episodes", "total_frames", "total_tasks",
                "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path",
                "splits", "features"):
        assert key in info, key
    assert info["codebase_version"] == "v3.0"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None
    assert info["fps"] == 10 and isinstance(info["fps"], int)
    assert (info["total_episodes"], info["total_frames"]) == (len(src), src.total_steps)
    assert info["total_tasks"] == len({t for e in src.episodes for t in e["tasks"]})
    assert info["splits"] == {"train": f"0:{len(src)}"}
    assert info["pac_ros"]["spec"] == spec.to_dict()
    feats = info["features"]
    expected = {"observation.state", "action", "observation.environment_state", "timestamp", "frame_index",
                "episode_index", "index", "task_index", "next.reward", "next.done", "next.success", "stamp",
                *(f"observation.images.{c}" for c in spec.camera_names)}
    assert set(feats) == expected
    for name, f in feats.items():
        assert set(f) >= {"dtype", "shape", "names"}, name
    assert feats["observation.state"] == {"dtype": "float32", "shape": [7], "names": spec.joint_names}
    assert feats["action"]["names"] == spec.joint_names
    assert feats["observation.images.front"] == {"dtype": "image", "shape": [64, 64, 3],
                                                 "names": ["height", "width", "channels"]}
    assert feats["timestamp"]["dtype"] == "float32" and feats["index"]["dtype"] == "int64"

    # data files: every feature is a column, images are {bytes, path} structs, one row group per episode
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in episodes] == list(range(len(src)))
    frames = 0
    for e, meta in zip(episodes, src.episodes):
        assert e["length"] == meta["length"] and e["tasks"] == meta["tasks"]
        assert (e["dataset_from_index"], e["dataset_to_index"]) == (frames, frames + e["length"])
        frames += e["length"]
        assert e["pac_ros/source"] == meta["source"] and e["pac_ros/success"] == meta["success"]
        assert e["pac_ros/seed"] == meta["seed"]
        assert json.loads(e["pac_ros/metadata"]) == meta["metadata"]
        assert len(e["stats/observation.state/mean"]) == 7 and e["stats/observation.state/count"] == [e["length"]]
    rows = 0
    for path in sorted((out / "data").glob("chunk-*/file-*.parquet")):
        file = pq.ParquetFile(path)
        assert set(file.schema_arrow.names) == set(feats)
        assert file.schema_arrow.field("observation.images.front").type == pa.struct(
            [("bytes", pa.binary()), ("path", pa.string())])
        hf = json.loads(file.schema_arrow.metadata[b"huggingface"])["info"]["features"]
        assert hf["observation.images.front"] == {"_type": "Image"}
        table = file.read()
        for g in range(file.num_row_groups):
            assert len(set(file.read_row_group(g, columns=["episode_index"]).column(0).to_pylist())) == 1
        for k in sorted(set(table.column("episode_index").to_pylist())):
            e = table.filter(pc.equal(table.column("episode_index"), k))
            assert episodes[k]["data/file_index"] == int(path.stem.split("-")[1])
            ts = e.column("timestamp").to_numpy()
            assert ts.dtype == np.float32 and ts[0] == 0.0 and np.all(np.diff(ts) > 0)
            assert e.column("frame_index").to_pylist() == list(range(e.num_rows))
            done = e.column("next.done").to_pylist()
            assert done == [False] * (e.num_rows - 1) + [True]
            assert e.column("next.success").to_pylist()[-1] == src.episodes[k]["success"]
            png = e.column("observation.images.front").to_pylist()[0]
            assert png["path"] is None and png["bytes"].startswith(b"\x89PNG")
        rows += table.num_rows
    assert rows == src.total_steps
    assert pq.read_table(out / "data/chunk-000/file-000.parquet").column("index").to_pylist()[0] == 0

    # tasks.parquet: the task string is the (pandas) index, task_index a column
    tasks = pq.read_table(out / "meta/tasks.parquet")
    assert tasks.schema.pandas_metadata["index_columns"] == ["task"]
    assert tasks.column("task_index").to_pylist() == list(range(info["total_tasks"]))

    # stats.json in LeRobot's shape
    stats = json.loads((out / "meta/stats.json").read_text())
    assert set(stats) == set(feats)
    for name, s in stats.items():
        assert set(s) == {"min", "max", "mean", "std", "count"}, name
    assert stats["observation.state"]["count"] == [src.total_steps]
    q = np.concatenate([src.load_episode(i, images=False).joint_positions for i in range(len(src))]).astype(float)
    np.testing.assert_allclose(stats["observation.state"]["mean"], q.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["observation.state"]["std"], q.std(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(stats["observation.state"]["min"], q.min(0))
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    front = stats["observation.images.front"]
    assert 0.0 <= np.min(front["min"]) <= np.max(front["max"]) <= 1.0


# ---- foreign datasets, built by hand from the format's documentation -----------------------------------
def small_spec(**changes) -> Spec:
    d = copy.deepcopy(default_spec().to_dict())
    d["cameras"] = [{"name": "top", "width": 12, "height": 8, "encoding": "rgb8"},
                    {"name": "grey", "width": 8, "height": 8, "encoding": "mono8"}]
    d.update(changes)
    return Spec.from_dict(d)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def image_struct(blobs: list[bytes]) -> pa.Array:
    return pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.nulls(len(blobs), pa.string())],
                                      names=["bytes", "path"])


def lerobot_features(spec: Spec, chw: bool = False) -> dict:
    n = spec.action_dim
    f = {
        "observation.state": {"dtype": "float32", "shape": [n], "names": {"motors": spec.joint_names}},
        "action": {"dtype": "float32", "shape": [n], "names": {"motors": spec.joint_names}},
        "observation.velocity": {"dtype": "float32", "shape": [n], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
    }
    for cam in spec.cameras:
        h, w, c = cam.shape
        f[f"observation.images.{cam.name}"] = (
            {"dtype": "image", "shape": [c, h, w], "names": ["channels", "height", "width"]} if chw
            else {"dtype": "image", "shape": [h, w, c], "names": ["height", "width", "channel"]})
    return f


def episode_data(spec: Spec, k: int, T: int, start: int, task_index: list[int], success: bool, rng) -> dict:
    """One episode: its columns (as a LeRobot recording has them) and the arrays to expect back."""
    n = spec.action_dim
    q = rng.uniform(spec.lower, spec.upper, (T, n)).astype(np.float32)
    a = rng.uniform(spec.lower, spec.upper, (T, n)).astype(np.float32)
    r = rng.random(T).astype(np.float32)
    ts = (np.arange(T) / spec.control_rate_hz).astype(np.float32)
    images = {c.name: rng.integers(0, 256, (T, *c.shape), dtype=np.uint8) for c in spec.cameras}
    cols = {
        "observation.state": pa.array(list(q), pa.list_(pa.float32())),  # variable lists, as HF Sequence writes
        "action": pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), n),
        "observation.velocity": pa.array(list(np.zeros((T, n), np.float32)), pa.list_(pa.float32())),
        "timestamp": pa.array(ts),
        "frame_index": pa.array(np.arange(T, dtype=np.int64)),
        "episode_index": pa.array(np.full(T, k, np.int64)),
        "index": pa.array(np.arange(start, start + T, dtype=np.int64)),
        "task_index": pa.array(np.array(task_index, np.int64)),
        "next.reward": pa.array(r),
        "next.done": pa.array(np.arange(T) == T - 1),
        "next.success": pa.array((np.arange(T) == T - 1) & success),
    }
    for cam in spec.cameras:
        frames = images[cam.name] if cam.channels == 3 else images[cam.name][..., 0]
        cols[f"observation.images.{cam.name}"] = image_struct([png(x) for x in frames])
    return {"cols": cols, "q": q, "a": a, "r": r, "ts": ts, "images": images}


TASKS = ["pick up the cube", "put the cube in the bowl"]


def build_v21(root: Path, spec: Spec, video: bool = False) -> list[dict]:
    """A LeRobotDataset v2.1 directory: meta/*.jsonl, data/chunk-000/episode_XXXXXX.parquet."""
    rng = np.random.default_rng(3)
    eps = [episode_data(spec, 0, 5, 0, [0] * 5, True, rng),
           episode_data(spec, 1, 4, 5, [1, 1, 0, 0], False, rng)]
    features = lerobot_features(spec)
    if video:
        features["observation.images.top"]["dtype"] = "video"
    info = {"codebase_version": "v2.1", "robot_type": "so100", "total_episodes": 2, "total_frames": 9,
            "total_tasks": 2, "total_videos": 0, "total_chunks": 1, "chunks_size": 1000, "fps": 10,
            "splits": {"train": "0:2"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features}
    (root / "meta").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(TASKS)))
    lines = [{"episode_index": 0, "tasks": [TASKS[0]], "length": 5},
             {"episode_index": 1, "tasks": [TASKS[1], TASKS[0]], "length": 4}]
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for k, e in enumerate(eps):
        pq.write_table(pa.table(e["cols"]), root / f"data/chunk-000/episode_{k:06d}.parquet")
    return eps


def pandas_tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes a frame with an unnamed index of task strings."""
    meta = {"index_columns": ["__index_level_0__"], "column_indexes": [],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                         "numpy_type": "object", "metadata": None}]}
    schema = pa.schema([("task_index", pa.int64()), ("__index_level_0__", pa.string())],
                       metadata={b"pandas": json.dumps(meta).encode()})
    return pa.Table.from_arrays([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks)], schema=schema)


def build_v30(root: Path, spec: Spec) -> list[dict]:
    """A LeRobotDataset v3.0 directory without our extra keys: episodes 0 and 1 share a data file."""
    rng = np.random.default_rng(4)
    eps = [episode_data(spec, 0, 3, 0, [1] * 3, False, rng),
           episode_data(spec, 1, 6, 3, [0] * 6, True, rng),
           episode_data(spec, 2, 2, 9, [1, 1], False, rng)]
    info = {"codebase_version": "v3.0", "robot_type": None, "total_episodes": 3, "total_frames": 11,
            "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
            "fps": 10, "splits": {"train": "0:3"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": None, "features": lerobot_features(spec, chw=True)}
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pq.write_table(pandas_tasks_table(TASKS), root / "meta/tasks.parquet")
    files = [(0, [0, 1]), (1, [2])]
    rows = []
    for file_index, members in files:
        table = pa.concat_tables([pa.table(eps[k]["cols"]) for k in members])
        pq.write_table(table, root / f"data/chunk-000/file-{file_index:03d}.parquet")
        for k in members:
            T = len(eps[k]["ts"])
            start = eps[k]["cols"]["index"][0].as_py()
            rows.append({"episode_index": k, "tasks": [TASKS[eps[k]["cols"]["task_index"][0].as_py()]],
                         "length": T, "data/chunk_index": 0, "data/file_index": file_index,
                         "dataset_from_index": start, "dataset_to_index": start + T,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                         "stats/action/mean": eps[k]["a"].mean(0).astype(float).tolist()})
    rows.reverse()  # the reader sorts by episode_index
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    return eps


def check_imported(out: Path, spec: Spec, eps: list[dict], instructions: list[list[str]], success: list[bool]):
    ds = Dataset(out, spec)
    assert len(ds) == len(eps) and not ds.has_features
    for k, e in enumerate(eps):
        got = ds.load_episode(k)
        np.testing.assert_array_equal(got.joint_positions, e["q"])
        np.testing.assert_array_equal(got.actions, e["a"])
        np.testing.assert_array_equal(got.rewards, e["r"])
        np.testing.assert_array_equal(got.timestamp, e["ts"].astype(np.float64))
        for cam in spec.camera_names:
            np.testing.assert_array_equal(got.images[cam], e["images"][cam])
        assert got.instructions == instructions[k]
        assert got.meta["source"] == "lerobot" and got.meta["success"] is success[k]
        assert got.is_terminal[-1] == success[k]  # terminal: success with terminate_on_success
        assert got.meta["metadata"]["lerobot"]["episode_index"] == k


def test_import_hand_built_v21(tmp_path):
    spec = small_spec()
    eps = build_v21(tmp_path / "v21", spec)
    report = import_lerobot(tmp_path / "v21", tmp_path / "ours", spec)
    assert (report.episodes, report.steps) == (2, 9)
    assert any("observation.velocity" in note for note in report.notes)
    check_imported(tmp_path / "ours", spec, eps, [[TASKS[0]] * 5, [TASKS[1]] * 2 + [TASKS[0]] * 2],
                   [True, False])


def test_import_hand_built_v30(tmp_path):
    spec = small_spec()
    eps = build_v30(tmp_path / "v30", spec)
    report = import_lerobot(tmp_path / "v30", tmp_path / "ours", spec)
    assert (report.episodes, report.steps) == (3, 11)
    check_imported(tmp_path / "ours", spec, eps, [[TASKS[1]] * 3, [TASKS[0]] * 6, [TASKS[1]] * 2],
                   [False, True, False])


# ---- mismatches and refusals ----------------------------------------------------------------------
def test_spec_mismatch_names_the_file_and_the_difference(tmp_path, exported):
    spec = small_spec()
    build_v21(tmp_path / "v21", spec)
    info = tmp_path / "v21/meta/info.json"

    fewer = copy.deepcopy(spec.to_dict())
    fewer["arm_joints"] = fewer["arm_joints"][:4]
    with pytest.raises(DatasetError, match=r"info\.json.*\n(.|\n)*observation\.state: shape \[7\], the spec has 5"):
        import_lerobot(tmp_path / "v21", tmp_path / "a", Spec.from_dict(fewer))

    cams = copy.deepcopy(spec.to_dict())
    cams["cameras"][0]["width"] = 16
    with pytest.raises(DatasetError, match=r"observation\.images\.top: image shape \[8, 12, 3\]") as err:
        import_lerobot(tmp_path / "v21", tmp_path / "b", Spec.from_dict(cams))
    assert str(info) in str(err.value)

    with pytest.raises(DatasetError, match=r"fps 10, the spec's control_rate_hz is 20\.0"):
        import_lerobot(tmp_path / "v21", tmp_path / "c", small_spec(control_rate_hz=20.0))
    with pytest.raises(DatasetError, match=r"observation\.images\.grey: no such camera"):
        import_lerobot(tmp_path / "v21", tmp_path / "d", small_spec(cameras=[spec.to_dict()["cameras"][0]]))
    assert not any((tmp_path / x).exists() for x in "abcd")

    # our own export carries its spec: any difference is named
    out, _ = exported
    other = copy.deepcopy(default_spec().to_dict())
    other["gripper"]["upper"] = 0.05
    with pytest.raises(DatasetError, match=r"LeRobot export was made for a different spec(.|\n)*gripper"):
        import_lerobot(out, tmp_path / "e", Spec.from_dict(other))


def test_bad_rows_name_file_episode_and_frame(tmp_path):
    spec = small_spec()
    build_v21(tmp_path / "v21", spec)
    path = tmp_path / "v21/data/chunk-000/episode_000001.parquet"
    table = pq.read_table(path)
    blobs = table.column("observation.images.top").to_pylist()
    blobs[2]["bytes"] = png(np.zeros((8, 10, 3), np.uint8))  # the wrong width
    i = table.schema.get_field_index("observation.images.top")
    pq.write_table(table.set_column(i, "observation.images.top",
                                    image_struct([b["bytes"] for b in blobs])), path)
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: episode 1: observation\.images\.top\[2\]: "
                                           r"image shape \(8, 10, 3\)"):
        import_lerobot(tmp_path / "v21", tmp_path / "out", spec)
    assert not (tmp_path / "out").exists()


def test_outputs_must_be_new(collected, exported, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        export_lerobot(collected, tmp_path / "full")
    with pytest.raises(DatasetError, match="not an empty directory"):
        import_lerobot(exported[0], tmp_path / "full", default_spec())
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        import_lerobot(collected / "data", tmp_path / "new", default_spec())
    with pytest.raises(IndexError, match="out of range"):
        export_lerobot(collected, tmp_path / "new", episodes=[99])


# ---- command line -------------------------------------------------------------------------------
def test_cli_export_and_import(collected, tmp_path, capsys):
    out, back = tmp_path / "lerobot", tmp_path / "back"
    assert main(["dataset", "export", str(collected), "--format", "lerobot", "--out", str(out),
                 "--episodes", "2", "0"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((out / "meta/info.json").read_text())["total_episodes"] == 2
    assert main(["dataset", "import", str(out), "--format", "lerobot", "--out", str(back)]) == 0
    assert "2 episodes" in capsys.readouterr().out
    src, ds = Dataset(collected), Dataset(back)
    assert_same_episode(src, 2, ds, 0)
    assert_same_episode(src, 0, ds, 1)
    assert main(["dataset", "export", str(collected), "--format", "lerobot", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
