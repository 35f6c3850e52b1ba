"""pac_ros.data: episode dataset writer/reader, format, validation, crash safety."""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pac_ros.data import Dataset, DatasetError, DatasetWriter, Episode
from pac_ros.data import format as fmt
from pac_ros.spec import Spec, default_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_helper_spec = importlib.util.spec_from_file_location("data_crash_writer", HERE / "data_crash_writer.py")
crash_writer = importlib.util.module_from_spec(_helper_spec)
_helper_spec.loader.exec_module(crash_writer)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return default_spec()


def modified_spec(spec: Spec, edit) -> Spec:
    d = copy.deepcopy(spec.to_dict())
    edit(d)
    return Spec.from_dict(d)


def scene_image(rng, shape, t):
    """Render-like image: smooth gradient, a moving block, mild noise."""
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 3 + t, y * 3, (x + y) * 2][:c], -1).astype(np.int32)
    r0 = 10 + t % 30
    img[r0:r0 + 10, 20:32] = [200, 40, 40][:c]
    return np.clip(img + rng.integers(0, 4, img.shape), 0, 255).astype(np.uint8)


def make_steps(spec, rng, T, features=True, t0=0.0):
    steps = []
    for t in range(T):
        steps.append(dict(
            timestamp=t0 + t * spec.control_period,
            joint_positions=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            images={c.name: scene_image(rng, c.shape, t) for c in spec.cameras},
            action=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            reward=float(np.float32(rng.random())) if t < T - 1 else 0.0,
            features=rng.normal(size=spec.feature_dim).astype(np.float32) if features else None,
        ))
    return steps


def write_episode(w, spec, steps, instruction=None, terminal=True, **kw):
    ep = w.begin_episode(instruction or spec.instructions()[0], **kw)
    for s in steps:
        ep.add_step(**s)
    return w.commit(ep, terminal=terminal)


def assert_steps_equal(e: Episode, steps, spec):
    assert len(e) == len(steps)
    np.testing.assert_array_equal(e.timestamp, [s["timestamp"] for s in steps])
    np.testing.assert_array_equal(e.joint_positions, np.stack([s["joint_positions"] for s in steps]))
    np.testing.assert_array_equal(e.actions, np.stack([s["action"] for s in steps]))
    np.testing.assert_array_equal(e.rewards, np.array([s["reward"] for s in steps], np.float32))
    if steps[0].get("features") is not None:
        np.testing.assert_array_equal(e.features, np.stack([s["features"] for s in steps]))
    for cam in spec.camera_names:
        np.testing.assert_array_equal(e.images[cam], np.stack([s["images"][cam] for s in steps]))
    assert e.timestamp.dtype == np.float64 and e.joint_positions.dtype == np.float32
    assert e.actions.dtype == np.float32 and e.rewards.dtype == np.float32
    assert e.task_index.dtype == np.int64 and e.is_last.dtype == bool


# ---- round trip and format ---------------------------------------------------------------
def test_round_trip(tmp_path, spec):
    rng = np.random.default_rng(0)
    eps = [make_steps(spec, rng, 12), make_steps(spec, rng, 5, t0=50.0)]
    with DatasetWriter(tmp_path / "ds", spec, features=True) as w:
        assert write_episode(w, spec, eps[0], terminal=True, source="expert", seed=7,
                             metadata={"noise": 0.2, "wrong_block_rate": 0.0}) == 0
        ep = w.begin_episode(spec.instructions()[3], source="policy", checkpoint="pac-small@1234")
        for s in eps[1]:
            ep.add_step(**s)
        assert w.commit(ep, terminal=False, dropped=3) == 1

    ds = Dataset(tmp_path / "ds", spec)
    assert len(ds) == 2 and ds.total_steps == 17 and ds.spec == spec and ds.has_features
    for i, steps in enumerate(eps):
        e = ds.load_episode(i)
        assert_steps_equal(e, steps, spec)
        assert e.episode_index == i and e.meta == ds.episodes[i]
    m0, m1 = ds.episodes
    assert m0["source"] == "expert" and m0["checkpoint"] is None and m0["seed"] == 7
    assert m0["success"] is True and m0["terminal"] is True and m0["dropped"] == 0
    assert m0["metadata"] == {"noise": 0.2, "wrong_block_rate": 0.0}
    assert m0["return"] == pytest.approx(sum(s["reward"] for s in eps[0][:-1]))
    assert m0["length"] == 12 and m0["tasks"] == [spec.instructions()[0]] and m0["index_from"] == 0
    assert m0["duration_s"] == pytest.approx(1.1) and m0["achieved_rate_hz"] == pytest.approx(10.0)
    assert m1["source"] == "policy" and m1["checkpoint"] == "pac-small@1234" and m1["seed"] is None
    assert m1["success"] is False and m1["dropped"] == 3 and m1["index_from"] == 12
    assert m1["start_stamp"] == 50.0 and m1["file"] == "data/chunk-000/episode_000001.parquet"
    for m in ds.episodes:
        data = (tmp_path / "ds" / m["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) == m["bytes"]

    # images=False skips decoding
    assert ds.load_episode(0, images=False).images == {}

    # info.json and the parquet schema
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["format"] == "pac_ros_dataset" and info["codebase_version"] == "v2.1"
    assert info["fps"] == spec.control_rate_hz and info["spec"] == spec.to_dict()
    assert info["spec_fingerprint"] == spec.fingerprint() and info["cameras"] == ["front", "wrist"]
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [7], "names": spec.joint_names}
    assert f["observation.environment_state"]["shape"] == [21]
    assert f["observation.images.front"]["shape"] == [64, 64, 3]
    schema = pq.read_schema(tmp_path / "ds" / m0["file"])
    assert list(schema.names) == list(f)
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 7)
    assert schema.field("action").type == pa.list_(pa.float32(), 7)
    assert schema.field("timestamp").type == pa.float64()
    assert schema.field("observation.images.wrist").type == pa.binary()
    assert schema.field("is_terminal").type == pa.bool_()
    tasks = [json.loads(x) for x in (tmp_path / "ds" / "meta" / "tasks.jsonl").read_text().splitlines()]
    assert tasks == [{"task_index": 0, "task": spec.instructions()[0]},
                     {"task_index": 1, "task": spec.instructions()[3]}]


def test_flags_indices_and_instruction_change(tmp_path, spec):
    rng = np.random.default_rng(1)
    with DatasetWriter(tmp_path / "ds", spec) as w:  # features default off for a new dataset
        ep = w.begin_episode(spec.instructions()[0])
        for t, s in enumerate(make_steps(spec, rng, 6, features=False)):
            ep.add_step(**s, instruction=spec.instructions()[1] if t == 3 else None)
        w.commit(ep, terminal=False)
        write_episode(w, spec, make_steps(spec, rng, 1, features=False, t0=9.0), terminal=True)
        write_episode(w, spec, make_steps(spec, rng, 4, features=False, t0=20.0),
                      instruction=spec.instructions()[1], terminal=True)
    ds = Dataset(tmp_path / "ds")
    assert not ds.has_features and ds.tasks == spec.instructions()[:2]
    e0, e1, e2 = ds.iter_episodes(images=False)
    assert e0.features is None
    assert e0.is_first.tolist() == [True] + [False] * 5
    assert e0.is_last.tolist() == [False] * 5 + [True]
    assert not e0.is_terminal.any()  # truncated: bootstrap
    assert e0.task_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert e0.instructions == [spec.instructions()[0]] * 3 + [spec.instructions()[1]] * 3
    assert e0.meta["tasks"] == spec.instructions()[:2] and e0.meta["instruction"] == spec.instructions()[0]
    assert e1.is_first.tolist() == [True] and e1.is_last.tolist() == [True]
    assert e1.is_terminal.tolist() == [True] and e1.meta["achieved_rate_hz"] is None
    assert e2.is_terminal.tolist() == [False, False, False, True] and e2.task_index.tolist() == [1] * 4
    table = pq.read_table(ds.episode_path(2), columns=["frame_index", "episode_index", "index"])
    assert table.column("frame_index").to_pylist() == [0, 1, 2, 3]
    assert table.column("episode_index").to_pylist() == [2] * 4
    assert table.column("index").to_pylist() == [7, 8, 9, 10]


def record(root, spec, episodes, **begin):
    """A dataset of ``episodes`` (lists of steps), each committed terminal and successful."""
    with DatasetWriter(root, spec, features=True) as w:
        for steps in episodes:
            ep = w.begin_episode(spec.instructions()[0], **begin)
            for s in steps:
                ep.add_step(**s)
            w.commit(ep, terminal=True, success=True)
    return Dataset(root)


def test_content_digest_is_the_columns_not_their_storage():
    table = pa.table({"a": pa.array([1.0, 2.0, 3.0], pa.float32()), "task_index": pa.array([0, 0, 1], pa.int64()),
                      "img": pa.array([b"x", b"yz", b""], pa.binary()),
                      "q": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 2)})
    digest = fmt.content_digest(table)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert chunked.column("a").num_chunks == 3 and fmt.content_digest(chunked) == digest
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata({b"k": b"v"}), sink, use_dictionary=["task_index"])
    assert fmt.content_digest(pq.read_table(pa.BufferReader(sink.getvalue()))) == digest
    for name, values in (("a", pa.array([1.0, 2.0, 3.5], pa.float32())), ("a", pa.array([1.0, 2.0, 3.0])),
                         ("img", pa.array([b"x", b"y", b"z"], pa.binary()))):
        assert fmt.content_digest(table.set_column(table.schema.get_field_index(name), name, values)) != digest
    assert fmt.content_digest(table.rename_columns(["b", "task_index", "img", "q"])) != digest


def test_fingerprint_names_the_contents_not_the_recording(tmp_path, spec):
    rng = np.random.default_rng(7)
    episodes = [make_steps(spec, rng, 3), make_steps(spec, rng, 4)]
    first = record(tmp_path / "a", spec, episodes, metadata={"take": 1})
    again = record(tmp_path / "b", spec, episodes, metadata={"take": 2})
    assert [e["sha256"] for e in first.episodes] != [e["sha256"] for e in again.episodes]  # other files
    assert first.fingerprint() == again.fingerprint()
    for e in first.episodes:  # the line names its file's columns
        assert e[fmt.CONTENT_KEY] == fmt.content_digest(pq.read_table(first.root / e["file"]))

    with DatasetWriter(tmp_path / "copy", spec, features=True) as w:  # copied file by file
        for i in range(len(first)):
            w.copy_episode(first, i)
    assert Dataset(tmp_path / "copy").fingerprint() == first.fingerprint()
    from pac_ros.data.repair import repair
    assert repair(tmp_path / "b", rebuild=True).ok  # an index rebuilt from the files
    assert Dataset(tmp_path / "b").fingerprint() == first.fingerprint()

    changed = copy.deepcopy(episodes)
    changed[1][2]["reward"] += 0.25
    assert record(tmp_path / "c", spec, changed).fingerprint() != first.fingerprint()
    assert record(tmp_path / "d", spec, episodes[::-1]).fingerprint() != first.fingerprint()
    recs = [json.loads(x) for x in (first.root / fmt.EPISODES_PATH).read_text().splitlines()]
    recs[0]["success"] = False  # a relabelled outcome is other training data
    (first.root / fmt.EPISODES_PATH).write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert Dataset(first.root).fingerprint() != again.fingerprint()


def test_an_older_dataset_keeps_its_fingerprint(tmp_path, spec):
    """Lines without a digest (written before it existed) fingerprint by their files' sha256, as then."""
    ds = record(tmp_path / "old", spec, [make_steps(spec, np.random.default_rng(8), 3)] * 2)
    recs = [json.loads(x) for x in (ds.root / fmt.EPISODES_PATH).read_text().splitlines()]
    for r in recs:
        del r[fmt.CONTENT_KEY]
    (ds.root / fmt.EPISODES_PATH).write_text("".join(json.dumps(r) + "\n" for r in recs))
    h = hashlib.sha256(spec.fingerprint().encode())
    for r in recs:
        h.update(f"\n{r['episode_index']}:{r['sha256']}".encode())
    assert Dataset(ds.root).fingerprint() == h.hexdigest()[:16] != ds.fingerprint()


def test_reopen_appends(tmp_path, spec):
    rng = np.random.default_rng(2)
    first = make_steps(spec, rng, 3)
    with DatasetWriter(tmp_path / "ds", spec, features=True) as w:
        write_episode(w, spec, first)
    fp1 = Dataset(tmp_path / "ds").fingerprint()
    second = make_steps(spec, rng, 4, t0=10.0)
    with DatasetWriter(tmp_path / "ds", spec) as w:  # features=None: as created
        assert w.num_episodes == 1 and w.total_steps == 3 and w.has_features
        assert write_episode(w, spec, second, instruction=spec.instructions()[0]) == 1
    ds = Dataset(tmp_path / "ds")
    assert len(ds) == 2 and ds.tasks == [spec.instructions()[0]]  # task reused, not duplicated
    assert_steps_equal(ds.load_episode(0), first, spec)
    assert_steps_equal(ds.load_episode(1), second, spec)
    assert ds.episodes[1]["index_from"] == 3
    fp2 = ds.fingerprint()
    assert fp2 != fp1 and fp2 == Dataset(tmp_path / "ds").fingerprint()
    assert ds.size_bytes() >= sum(e["bytes"] for e in ds.episodes)
    with pytest.raises(DatasetError, match="created with features=True, writer asked for features=False"):
        DatasetWriter(tmp_path / "ds", spec, features=False)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["arm_joints"][2].update(upper=2.5), "arm_joints"),
    (lambda d: d["cameras"][0].update(width=96), "cameras"),
])
def test_spec_mismatch(tmp_path, spec, edit, field):
    with DatasetWriter(tmp_path / "ds", spec) as w:
        write_episode(w, spec, make_steps(spec, np.random.default_rng(3), 2, features=False))
    other = modified_spec(spec, edit)
    info = str(tmp_path / "ds" / "meta" / "info.json")
    for open_it in (lambda: DatasetWriter(tmp_path / "ds", other), lambda: Dataset(tmp_path / "ds", other)):
        with pytest.raises(DatasetError) as err:
            open_it()
        assert info in str(err.value) and f"{field}: dataset has" in str(err.value)
    assert len(Dataset(tmp_path / "ds", spec)) == 1  # nothing changed, lock released


def test_one_writer_at_a_time(tmp_path, spec):
    with DatasetWriter(tmp_path / "ds", spec):
        with pytest.raises(DatasetError, match="already open for writing"):
            DatasetWriter(tmp_path / "ds", spec)
    DatasetWriter(tmp_path / "ds", spec).close()


def test_not_a_dataset(tmp_path, spec):
    with pytest.raises(DatasetError, match="not a pac_ros dataset"):
        Dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter(tmp_path, spec)
    (tmp_path / "bad" / "meta").mkdir(parents=True)
    (tmp_path / "bad" / "meta" / "info.json").write_text('{"format": "something"}')
    with pytest.raises(DatasetError, match="info.json: not a pac_ros_dataset"):
        Dataset(tmp_path / "bad")


# ---- validation ------------------------------------------------------------------------
BAD_STEPS = [
    (lambda s: s.update(joint_positions=np.zeros(6)), r"joint_positions: expected shape \(7,\), got \(6,\)"),
    (lambda s: s["action"].__setitem__(2, np.nan), r"action\[2\] \(elbow\): non-finite value"),
    (lambda s: s.update(action=["a"] * 7), "action: expected 7 numbers, got dtype"),
    (lambda s: s.update(reward=float("inf")), "reward: must be finite"),
    (lambda s: s.update(timestamp=0.0), "timestamp: 0.0 is not after the previous step's 0.1"),
    (lambda s: s["images"].update(top=np.zeros((64, 64, 3), np.uint8)),
     r"images: unknown camera\(s\) \['top'\]; this dataset's cameras are \['front', 'wrist'\]"),
    (lambda s: s["images"].pop("wrist"), r"images: missing camera\(s\) \['wrist'\]"),
    (lambda s: s["images"].update(front=np.zeros((64, 64), np.uint8)),
     r"images\['front'\]: expected shape \(64, 64, 3\) uint8, got \(64, 64\) uint8"),
    (lambda s: s["images"].update(wrist=np.zeros((64, 64, 3), np.float32)),
     r"images\['wrist'\]: expected shape \(64, 64, 3\) uint8, got \(64, 64, 3\) float32"),
    (lambda s: s.update(features=None), r"features: this dataset stores observation.environment_state \(21"),
    (lambda s: s.update(features=np.zeros(20)), r"features: expected shape \(21,\), got \(20,\)"),
    (lambda s: s["features"].__setitem__(0, np.inf), r"features\[0\] \(red.x\): non-finite"),
    (lambda s: s.update(instruction=""), "instruction: expected a non-empty string"),
]


@pytest.mark.parametrize("mutate, message", BAD_STEPS)
def test_bad_step_rejected_nothing_lost(tmp_path, spec, mutate, message):
    rng = np.random.default_rng(4)
    committed = make_steps(spec, rng, 3)
    steps = make_steps(spec, rng, 4)
    with DatasetWriter(tmp_path / "ds", spec, features=True) as w:
        write_episode(w, spec, committed)
        ep = w.begin_episode(spec.instructions()[0])
        ep.add_step(**steps[0])
        ep.add_step(**steps[1])
        bad = copy.deepcopy(steps[2])
        mutate(bad)
        with pytest.raises(DatasetError, match=message):
            ep.add_step(**bad)
        assert len(ep) == 2 and ep.instruction == spec.instructions()[0]
        ep.add_step(**steps[2])  # the episode goes on after a rejected step
        w.commit(ep, terminal=True)
    ds = Dataset(tmp_path / "ds")
    assert_steps_equal(ds.load_episode(0), committed, spec)
    assert_steps_equal(ds.load_episode(1), steps[:3], spec)


def test_features_rejected_without_features(tmp_path, spec):
    with DatasetWriter(tmp_path / "ds", spec, features=False) as w:
        ep = w.begin_episode(spec.instructions()[0])
        with pytest.raises(DatasetError, match="features: this dataset was created without features"):
            ep.add_step(**make_steps(spec, np.random.default_rng(5), 1)[0])


def test_episode_lifecycle_errors(tmp_path, spec):
    steps = make_steps(spec, np.random.default_rng(6), 2)
    w = DatasetWriter(tmp_path / "ds", spec, features=True)
    ep = w.begin_episode(spec.instructions()[0])
    with pytest.raises(DatasetError, match="no steps"):
        w.commit(ep, terminal=True)
    for s in steps:
        ep.add_step(**s)
    assert w.commit(ep, terminal=True) == 0
    with pytest.raises(DatasetError, match="commit: episode is committed"):
        w.commit(ep, terminal=True)
    with pytest.raises(DatasetError, match="add_step: episode is committed"):
        ep.add_step(**steps[0])
    with pytest.raises(DatasetError, match="already committed"):
        w.discard(ep)
    ep2 = w.begin_episode(spec.instructions()[0])
    ep2.add_step(**steps[0])
    w.discard(ep2)
    with pytest.raises(DatasetError, match="commit: episode is discarded"):
        w.commit(ep2, terminal=True)
    with pytest.raises(DatasetError, match="metadata\\['bad'\\]: not JSON"):
        w.begin_episode("x", metadata={"bad": object()})
    with pytest.raises(DatasetError, match="seed: expected an integer"):
        w.begin_episode("x", seed=1.5)
    w.close()
    w.close()
    with pytest.raises(DatasetError, match="writer is closed"):
        w.begin_episode("x")
    assert len(Dataset(tmp_path / "ds")) == 1  # the discarded episode left nothing


def test_commit_from_worker_threads(tmp_path, spec):
    rng = np.random.default_rng(7)
    episodes = [make_steps(spec, rng, 3, t0=10.0 * k) for k in range(6)]
    with DatasetWriter(tmp_path / "ds", spec, features=True) as w:
        buffers = []
        for k, steps in enumerate(episodes):
            ep = w.begin_episode(spec.instructions()[k % 6], metadata={"k": k})
            for s in steps:
                ep.add_step(**s)
            buffers.append(ep)
        results = {}
        threads = [threading.Thread(target=lambda e=e: results.__setitem__(e.metadata["k"], w.commit(e, True)))
                   for e in buffers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results.values()) == list(range(6))
    ds = Dataset(tmp_path / "ds")
    for i in range(6):
        e = ds.load_episode(i)
        k = e.meta["metadata"]["k"]
        assert results[k] == i and e.instruction == spec.instructions()[k % 6]
        assert_steps_equal(e, episodes[k], spec)
    assert [m["index_from"] for m in ds.episodes] == [0, 3, 6, 9, 12, 15]


def test_mono_and_bgr_cameras(tmp_path, spec):
    other = modified_spec(spec, lambda d: d.update(cameras=[
        {"name": "gray", "width": 16, "height": 12, "encoding": "mono8"},
        {"name": "cv", "width": 8, "height": 8, "encoding": "bgr8"}]))
    rng = np.random.default_rng(8)
    gray = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    cv = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with DatasetWriter(tmp_path / "ds", other) as w:
        ep = w.begin_episode("look")
        ep.add_step(0.0, np.zeros(7), {"gray": gray, "cv": cv}, np.zeros(7))
        ep.add_step(0.1, np.zeros(7), {"gray": gray[..., None], "cv": cv}, np.zeros(7))
        w.commit(ep, terminal=False)
    ds = Dataset(tmp_path / "ds", other)
    e = ds.load_episode(0)
    assert e.images["gray"].shape == (2, 12, 16, 1)
    np.testing.assert_array_equal(e.images["gray"][0, ..., 0], gray)
    np.testing.assert_array_equal(e.images["cv"][1], cv)  # back in the camera's (BGR) order
    blob = pq.read_table(ds.episode_path(0)).column("observation.images.cv")[0].as_py()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(blob))), cv[..., ::-1])  # PNG is RGB


# ---- damaged datasets ----------------------------------------------------------------------
def _two_episode_dataset(root, spec, seed=9):
    rng = np.random.default_rng(seed)
    eps = [make_steps(spec, rng, 3), make_steps(spec, rng, 2, t0=5.0)]
    with DatasetWriter(root, spec, features=True) as w:
        for steps in eps:
            write_episode(w, spec, steps)
    return eps


def test_reader_ignores_orphan_and_torn_line_writer_recovers(tmp_path, spec, caplog):
    root = tmp_path / "ds"
    eps = _two_episode_dataset(root, spec)
    chunk = root / "data" / "chunk-000"
    (chunk / "episode_000002.parquet").write_bytes((chunk / "episode_000001.parquet").read_bytes())
    (chunk / ".episode_000003.parquet.123.456.tmp").write_bytes(b"PAR1 partial")
    index = root / "meta" / "episodes.jsonl"
    good = index.read_bytes()
    line = json.dumps({"episode_index": 2, "tasks": ["x"], "length": 2,
                       "file": "data/chunk-000/episode_000002.parquet", "sha256": "0" * 64})
    index.write_bytes(good + line[: len(line) // 2].encode())
    tasks_file = root / "meta" / "tasks.jsonl"
    tasks_file.write_bytes(tasks_file.read_bytes() + b'{"task_index": 1, "ta')

    ds = Dataset(root, spec)
    assert len(ds) == 2 and ds.tasks == [spec.instructions()[0]]
    assert_steps_equal(ds.load_episode(1), eps[1], spec)
    with pytest.raises(IndexError):
        ds.load_episode(2)

    with caplog.at_level(logging.WARNING, logger="pac_ros.data"):
        w = DatasetWriter(root, spec)
    log = caplog.text
    assert "episodes.jsonl: removed a torn last line" in log and "tasks.jsonl: removed a torn last line" in log
    assert "unfinished temp file" in log and "episode_000002.parquet: holds episode 1, which belongs at" in log
    assert index.read_bytes() == good
    assert sorted(p.name for p in chunk.iterdir()) == ["episode_000000.parquet", "episode_000001.parquet"]
    assert len(list((root / "quarantine").iterdir())) == 1
    new = make_steps(spec, np.random.default_rng(10), 2, t0=30.0)
    assert write_episode(w, spec, new, instruction="a new task") == 2
    w.close()
    ds = Dataset(root, spec)
    assert len(ds) == 3 and ds.tasks == [spec.instructions()[0], "a new task"]
    assert_steps_equal(ds.load_episode(2), new, spec)


def test_corrupted_episode_file(tmp_path, spec):
    root = tmp_path / "ds"
    _two_episode_dataset(root, spec)
    path = root / "data" / "chunk-000" / "episode_000001.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = Dataset(root)
    with pytest.raises(DatasetError, match=f"{path}: sha256 does not match"):
        ds.load_episode(1)
    with pytest.raises(DatasetError, match=f"{path}: not a readable parquet file"):
        ds.load_episode(1, verify=False)
    path.unlink()
    with pytest.raises(DatasetError, match=f"{path}: cannot read episode 1"):
        ds.load_episode(1)
    ds.load_episode(0)
    # a bad line that is not the last one is corruption, not a torn append
    index = root / "meta" / "episodes.jsonl"
    lines = index.read_bytes().split(b"\n")
    index.write_bytes(b"\n".join([b"{garbage"] + lines[1:]))
    with pytest.raises(DatasetError, match="episodes.jsonl: line 1 is not a JSON object"):
        Dataset(root)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=3),
                min_size=1, max_size=5), st.data())
def test_jsonl_any_truncation_is_a_prefix(tmp_path_factory, records, data):
    blob = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    cut = data.draw(st.integers(0, len(blob)))
    path = tmp_path_factory.mktemp("jsonl") / "x.jsonl"
    path.write_bytes(blob[:cut])
    got, good, torn = fmt.read_jsonl(path)
    n_full = blob[:cut].count(b"\n")
    assert got == records[:n_full] and good + len(torn) == cut
    assert blob[:good].count(b"\n") == n_full


# ---- reading without pac_ros (the docs/dataset.md example) ----------------------------
def test_plain_pyarrow_pil_reading(tmp_path, spec):
    root = tmp_path / "ds"
    eps = _two_episode_dataset(root, spec)
    # as in docs/dataset.md
    info = json.loads((root / "meta/info.json").read_text())
    lines = (root / "meta/episodes.jsonl").read_text().split("\n")
    episodes = [json.loads(x) for x in lines[:-1]]  # last piece: "" or a torn line
    table = pq.read_table(root / episodes[1]["file"])
    state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
    front = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in table["observation.images.front"].to_pylist()])
    assert info["features"]["observation.state"]["shape"] == [state.shape[1]]
    np.testing.assert_array_equal(state, np.stack([s["joint_positions"] for s in eps[1]]))
    np.testing.assert_array_equal(front, np.stack([s["images"]["front"] for s in eps[1]]))


# ---- crash safety (a real writer process, SIGKILLed) ------------------------------------------
def _spawn(root, seed, *crash):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, str(HERE / "data_crash_writer.py"), str(root), str(seed), *map(str, crash)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)


def _wait_ready(proc):
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"writer child failed: {line!r} {proc.stderr.read()}"


def _check_episodes(root, spec, seed):
    """Every indexed episode loads, matches its sha256 and its synthetic content; returns how many."""
    ds = Dataset(root, spec)
    for i in range(len(ds)):
        e = ds.load_episode(i)  # verifies sha256
        steps = crash_writer.synthetic_episode(spec, seed, i)["steps"]
        assert_steps_equal(e, steps, spec)  # whole episode, never a partial one
        assert e.meta["metadata"] == {"k": i}
    return ds


def _check_and_recover(root, spec, seed, caplog):
    """Check what a reader sees; then a writer reopens (recovering a commit that died after
    its file's rename), cleans up and appends. Returns (episodes after recovery, log)."""
    n = len(_check_episodes(root, spec, seed))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pac_ros.data"):
        w = DatasetWriter(root, spec)
    assert w.num_episodes in (n, n + 1)
    n = w.num_episodes
    ds = _check_episodes(root, spec, seed)
    assert len(ds) == n
    text = (root / "meta" / "episodes.jsonl").read_bytes()
    assert text == b"" or text.endswith(b"\n")
    assert (root / "meta" / "tasks.jsonl").read_bytes()[-1:] in (b"", b"\n")
    indexed = {m["file"] for m in ds.episodes}
    on_disk = {p.relative_to(root).as_posix() for p in (root / "data").rglob("*") if p.is_file()}
    assert on_disk == indexed, "temp files / orphans left after recovery"
    assert not list((root / "meta").glob("*.tmp"))
    assert crash_writer.record(w, spec, seed, n) == n
    w.close()
    ds = Dataset(root, spec)
    assert len(ds) == n + 1
    assert_steps_equal(ds.load_episode(n), crash_writer.synthetic_episode(spec, seed, n)["steps"], spec)
    return n, caplog.text


def test_crash_safety_sigkill(tmp_path, spec, caplog):
    start = time.monotonic()
    rng = np.random.default_rng(11)
    # injected kills inside a commit: each step of the commit order (episodes left after
    # recovery: the killed commit's file is indexed once it was renamed into place)
    recovered = "recovered episode(s)"
    cases = [("before_rename", 2, 1, ["unfinished temp file"]),
             ("torn_tmp", 3, 2, ["unfinished temp file"]),
             ("after_rename", 2, 2, [recovered]),
             ("torn_index", 3, 3, ["episodes.jsonl: removed a torn last line", recovered]),
             ("torn_task", 2, 1, ["tasks.jsonl: removed a torn last line"])]
    procs = {point: _spawn(tmp_path / point, 100 + i, point, at) for i, (point, at, _, _) in enumerate(cases)}
    try:
        for i, (point, at, left, expect) in enumerate(cases):
            proc = procs[point]
            _wait_ready(proc)
            assert proc.wait(timeout=60) == -signal.SIGKILL
            n, log = _check_and_recover(tmp_path / point, spec, 100 + i, caplog)
            assert n == left and all(e in log for e in expect), (point, log)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # kills from outside at chosen moments, twice into the same dataset; the child's
    # fsyncs sleep 3 ms (a slow disk) so many kills land inside a commit
    recovered = 0
    for i, delay in enumerate([0.01, 0.05, 0.1, 0.2, 0.35]):
        root = tmp_path / f"delay{i}"
        for _ in range(2):
            proc = _spawn(root, 7, "slow_fsync", 3)
            _wait_ready(proc)
            time.sleep(delay + float(rng.uniform(0, 0.01)))
            proc.kill()
            assert proc.wait(timeout=30) == -signal.SIGKILL
            recovered += bool(_check_and_recover(root, spec, 7, caplog)[1])
    print(f"crash test: {time.monotonic() - start:.1f}s, {recovered}/10 timed kills left something to recover")
