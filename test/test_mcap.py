"""Dataset -> rosbag2/MCAP export (pac_ros/data/mcap.py), read back with rosbags."""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data import mcap as bagx
from pac_ros.spec import Spec, default_spec

COMMANDER = "/my_policy"


@pytest.fixture(scope="module")
def spec() -> Spec:
    """Two cameras of different sizes and encodings (non-square, to catch a width/height swap)."""
    d = copy.deepcopy(default_spec().to_dict())
    d["cameras"] = [
        {"name": "front", "width": 40, "height": 32, "encoding": "rgb8"},
        {"name": "wrist", "width": 24, "height": 16, "encoding": "mono8"},
    ]
    return Spec.from_dict(d)


def make_steps(spec: Spec, rng, T: int, t0: float, features: bool = True, instructions=None):
    steps = []
    for t in range(T):
        step = dict(
            timestamp=t0 + t * spec.control_period,
            joint_positions=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            images={c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
            action=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            reward=float(np.float32(rng.random())) if t < T - 1 else 0.0,
            features=rng.normal(size=spec.feature_dim).astype(np.float32) if features else None,
        )
        if instructions is not None:
            step["instruction"] = instructions[t]
        steps.append(step)
    return steps


def write_dataset(root: Path, spec: Spec, features: bool = True, t0s=(0.0, 50.0)) -> None:
    rng = np.random.default_rng(0)
    instr = spec.instructions()
    with DatasetWriter(root, spec, features=features) as w:
        ep = w.begin_episode(instr[0], source="expert", seed=7)
        for s in make_steps(spec, rng, 12, t0s[0], features):
            ep.add_step(**s)
        w.commit(ep, terminal=True)
        # a truncated policy episode whose instruction changes at row 3
        ep = w.begin_episode(instr[1], source="policy", checkpoint="pac@42")
        for s in make_steps(spec, rng, 6, t0s[1], features, [instr[1]] * 3 + [instr[2]] * 3):
            ep.add_step(**s)
        w.commit(ep, terminal=False)


def read_bag(bag: Path):
    """topic -> [(log ns, message)] in log-time order, and the list of all log times."""
    store = bagx.make_typestore()
    by_topic: dict[str, list] = defaultdict(list)
    times = []
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, ns, raw in reader.messages():
            by_topic[conn.topic].append((ns, store.deserialize_cdr(raw, conn.msgtype)))
            times.append(ns)
    return by_topic, types, times


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


def test_export_round_trip(tmp_path, spec):
    write_dataset(tmp_path / "ds", spec)
    ds = Dataset(tmp_path / "ds")
    eps = [ds.load_episode(i) for i in range(len(ds))]
    out = bagx.export_mcap(tmp_path / "ds", tmp_path / "bag", commander=COMMANDER)
    assert out == tmp_path / "bag"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bag.mcap", "metadata.yaml"] and no_leftovers(tmp_path)

    cmd_topic = COMMANDER + "/command"
    T = [len(e) for e in eps]  # 12, 6
    n, steps, trans = len(T), sum(T), sum(t - 1 for t in T)
    expected = {
        "/pac/episode_events": 3 * n, "/instruction": n + 1, "/sim/block_poses": steps,
        "/camera/front/image_raw": steps, "/camera/wrist/image_raw": steps, "/joint_states": steps,
        "/reward": trans, "/task_success": trans, "/arm_controller/commands": trans, cmd_topic: trans,
    }
    assert bagx.read_mcap_topics(out) == expected

    by_topic, types, times = read_bag(out)
    assert types == {
        "/pac/episode_events": "pac_ros/msg/EpisodeEvent", "/instruction": "std_msgs/msg/String",
        "/sim/block_poses": "geometry_msgs/msg/PoseArray",
        "/camera/front/image_raw": "sensor_msgs/msg/Image", "/camera/wrist/image_raw": "sensor_msgs/msg/Image",
        "/joint_states": "sensor_msgs/msg/JointState", "/reward": "std_msgs/msg/Float32",
        "/task_success": "std_msgs/msg/Bool", "/arm_controller/commands": "std_msgs/msg/Float64MultiArray",
        cmd_topic: "sensor_msgs/msg/JointState",
    }
    assert {k: len(v) for k, v in by_topic.items()} == expected
    assert times == sorted(times)

    # observations: log time = header stamp = the dataset's stamp (no shift: episodes are apart)
    stamps = np.concatenate([np.round(e.timestamp * 1e9).astype(np.int64) for e in eps])
    secs = np.concatenate([e.timestamp for e in eps])
    for topic in ("/joint_states", "/sim/block_poses", "/camera/front/image_raw", "/camera/wrist/image_raw"):
        assert [ns for ns, _ in by_topic[topic]] == stamps.tolist()
        assert [stamp_ns(m.header) for _, m in by_topic[topic]] == stamps.tolist()
    np.testing.assert_allclose([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                                for _, m in by_topic["/joint_states"]], secs, rtol=0, atol=1e-9)

    # images: bit-exact, with the camera's geometry and encoding
    for cam in spec.cameras:
        msgs = [m for _, m in by_topic[f"/camera/{cam.name}/image_raw"]]
        for m in msgs:
            assert (m.height, m.width, m.encoding, m.step, m.is_bigendian) == (
                cam.height, cam.width, cam.encoding, cam.width * cam.channels, 0)
            assert m.header.frame_id == cam.name
        got = np.stack([m.data.reshape(cam.shape) for m in msgs])
        np.testing.assert_array_equal(got, np.concatenate([e.images[cam.name] for e in eps]))

    # joints and block poses: float32 values carried exactly as float64
    js = [m for _, m in by_topic["/joint_states"]]
    assert all(list(m.name) == spec.joint_names for m in js)
    np.testing.assert_array_equal(np.stack([m.position for m in js]),
                                  np.concatenate([e.joint_positions for e in eps]).astype(np.float64))
    poses = np.stack([[[p.position.x, p.position.y, p.position.z, p.orientation.w, p.orientation.x,
                        p.orientation.y, p.orientation.z] for p in m.poses]
                      for _, m in by_topic["/sim/block_poses"]]).reshape(steps, -1)
    np.testing.assert_array_equal(poses, np.concatenate([e.features for e in eps]).astype(np.float64))
    assert all(m.header.frame_id == "world" for _, m in by_topic["/sim/block_poses"])

    # commands: every row but each episode's last, at the observation's stamp
    obs_stamps = np.concatenate([np.round(e.timestamp[:-1] * 1e9).astype(np.int64) for e in eps])
    actions = np.concatenate([e.actions[:-1] for e in eps]).astype(np.float64)
    arr = by_topic["/arm_controller/commands"]
    assert [ns for ns, _ in arr] == obs_stamps.tolist()
    np.testing.assert_array_equal(np.stack([m.data for _, m in arr]), actions)
    stamped = by_topic[cmd_topic]
    assert [ns for ns, _ in stamped] == [stamp_ns(m.header) for _, m in stamped] == obs_stamps.tolist()
    np.testing.assert_array_equal(np.stack([m.position for _, m in stamped]), actions)
    assert all(list(m.name) == spec.joint_names for _, m in stamped)

    # reward r_t and success follow the observation o_{t+1} they led to
    next_stamps = np.concatenate([np.round(e.timestamp[1:] * 1e9).astype(np.int64) for e in eps])
    rewards = by_topic["/reward"]
    assert [ns for ns, _ in rewards] == next_stamps.tolist()
    np.testing.assert_array_equal(np.array([m.data for _, m in rewards], np.float32),
                                  np.concatenate([e.rewards[:-1] for e in eps]))
    success = [m.data for _, m in by_topic["/task_success"]]
    assert success == [False] * 10 + [True] + [False] * 5  # episode 0 succeeded, 1 did not

    # instructions: each episode's start, and episode 1's change at row 3
    instr = spec.instructions()
    assert [(ns, m.data) for ns, m in by_topic["/instruction"]] == [
        (int(stamps[0]), instr[0]), (int(stamps[12]), instr[1]), (int(stamps[15]), instr[2])]

    # episode events
    E = bagx.make_typestore().types["pac_ros/msg/EpisodeEvent"]
    ev = [m for _, m in by_topic["/pac/episode_events"]]
    assert [(m.event, m.episode_index) for m in ev] == [
        (E.START, 0), (E.STOP, 0), (E.COMMIT, 0), (E.START, 1), (E.STOP, 1), (E.COMMIT, 1)]
    assert (E.START, E.STOP, E.COMMIT) == (0, 1, 2)
    assert [stamp_ns(m.header) for m in ev] == [stamps[0], stamps[11], stamps[11],
                                                stamps[12], stamps[17], stamps[17]]
    assert [m.source for m in ev] == ["expert"] * 3 + ["policy"] * 3
    assert [m.instruction for m in ev] == [instr[0]] * 3 + [instr[1], instr[2], instr[1]]
    assert [ev[1].detail, ev[4].detail] == ["terminal", "truncated"]
    start0, commit0, commit1 = json.loads(ev[0].detail), json.loads(ev[2].detail), json.loads(ev[5].detail)
    assert start0["seed"] == 7 and start0["stamp_offset_s"] == 0 and start0["length"] == 12
    assert commit0["success"] is True and commit0["terminal"] is True and commit0["length"] == 12
    assert commit0["sha256"] == ds.episodes[0]["sha256"]
    assert commit1["success"] is False and commit1["return"] == pytest.approx(ds.episodes[1]["return"])

    # the bag's summary
    info = bagx.describe_bag(out)
    assert info["message_count"] == sum(expected.values())
    assert info["start_ns"] == stamps[0] and info["end_ns"] == stamps[-1]
    assert info["topics"][cmd_topic] == {"type": "sensor_msgs/msg/JointState", "count": trans}
    ex = info["export"]
    assert ex["dataset_fingerprint"] == ds.fingerprint() and ex["spec"] == spec.to_dict()
    assert [(e["episode_index"], e["stamp_offset_ns"]) for e in ex["episodes"]] == [(0, 0), (1, 0)]


def test_selection_overlap_shift_and_compression(tmp_path, spec):
    """Episodes that both start at t=0 (sim clock reset, as `pac-ros collect` writes them)."""
    write_dataset(tmp_path / "ds", spec, features=False, t0s=(0.0, 0.0))
    ds = Dataset(tmp_path / "ds")
    e0, e1 = ds.load_episode(0, images=False), ds.load_episode(1, images=False)

    out = bagx.export_mcap(tmp_path / "ds", tmp_path / "auto", episodes=[1, 0], compress=True)
    counts = bagx.read_mcap_topics(out)
    assert "/sim/block_poses" not in counts and counts["/joint_states"] == 18
    assert counts["/recorder_export/command"] == 16  # the default commander
    by_topic, _, times = read_bag(out)
    assert times == sorted(times)
    js = by_topic["/joint_states"]
    assert [ns for ns, _ in js] == [stamp_ns(m.header) for _, m in js]
    first = np.round(e1.timestamp * 1e9).astype(np.int64)  # episode 1 first, unshifted
    offset = int(first[-1]) + 1_000_000_000  # then episode 0, 1 s after it
    second = np.round(e0.timestamp * 1e9).astype(np.int64) + offset
    assert [ns for ns, _ in js] == first.tolist() + second.tolist()
    ev = [m for _, m in by_topic["/pac/episode_events"]]
    assert [m.episode_index for m in ev] == [1, 1, 1, 0, 0, 0]
    assert json.loads(ev[3].detail)["stamp_offset_s"] == pytest.approx(offset * 1e-9)
    np.testing.assert_array_equal(np.stack([m.position for _, m in js[6:]]), e0.joint_positions)
    assert [e["stamp_offset_ns"] for e in bagx.describe_bag(out)["export"]["episodes"]] == [0, offset]

    # "recorded" keeps the stamps as they are, even overlapping
    out = bagx.export_mcap(tmp_path / "ds", tmp_path / "recorded", episodes=[0], timeline="recorded")
    by_topic, _, _ = read_bag(out)
    assert [ns for ns, _ in by_topic["/joint_states"]] == np.round(e0.timestamp * 1e9).astype(np.int64).tolist()

    with pytest.raises(IndexError, match="out of range"):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "bad", episodes=[2])
    with pytest.raises(ValueError, match="more than once"):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "bad", episodes=[0, 0])
    with pytest.raises(ValueError, match="timeline"):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "bad", timeline="sometimes")
    assert not (tmp_path / "bad").exists() and no_leftovers(tmp_path)


def test_refuses_existing_out_dir(tmp_path, spec):
    write_dataset(tmp_path / "ds", spec, features=False)
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "bag")
    assert [p.name for p in (tmp_path / "bag").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "empty")
    assert not any((tmp_path / "empty").iterdir()) and no_leftovers(tmp_path)


def test_missing_or_empty_dataset(tmp_path, spec):
    with pytest.raises(DatasetError, match="no such dataset directory"):
        bagx.export_mcap(tmp_path / "nope", tmp_path / "bag")
    (tmp_path / "notds").mkdir()
    with pytest.raises(DatasetError, match="not a pac_ros dataset"):
        bagx.export_mcap(tmp_path / "notds", tmp_path / "bag")
    with DatasetWriter(tmp_path / "empty", spec):
        pass
    with pytest.raises(DatasetError, match="no committed episodes"):
        bagx.export_mcap(tmp_path / "empty", tmp_path / "bag")
    assert not (tmp_path / "bag").exists() and no_leftovers(tmp_path)


def test_failure_midway_leaves_no_bag(tmp_path, spec, monkeypatch):
    write_dataset(tmp_path / "ds", spec, features=False)
    real = Dataset.load_episode

    def flaky(self, i, *a, **kw):
        if i == 1:
            raise DatasetError("episode 1: simulated corruption")
        return real(self, i, *a, **kw)

    monkeypatch.setattr(Dataset, "load_episode", flaky)
    with pytest.raises(DatasetError, match="simulated"):
        bagx.export_mcap(tmp_path / "ds", tmp_path / "bag")
    assert not (tmp_path / "bag").exists() and no_leftovers(tmp_path)
