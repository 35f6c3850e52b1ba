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
            assert m.header.frame_id == f"{cam.name}_camera_optical_frame"
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


# ---- import ------------------------------------------------------------------------------------
def assert_same_episodes(got: Dataset, want: Dataset, want_meta=None) -> None:
    """Every row and the index metadata the import carries. Stamps go through integer ns in a
    bag, so they match to 1 ns (the float64 of ns / 1e9). The last row's action is not a
    transition and is not in the bag: the import writes the recorder's hold command there.
    Everything else is bit-exact."""
    assert len(got) == len(want)
    assert got.has_features == want.has_features
    spec = got.spec
    for i in range(len(want)):
        a, b = want.load_episode(i), got.load_episode(i)
        assert len(a) == len(b), f"episode {i}"
        np.testing.assert_allclose(b.timestamp, a.timestamp, rtol=0, atol=1e-9)
        for field in ("joint_positions", "rewards", "is_first", "is_last", "is_terminal", "features"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=f"episode {i} {field}")
        np.testing.assert_array_equal(b.actions[:-1], a.actions[:-1])
        q = b.joint_positions[-1].astype(np.float64)
        np.testing.assert_array_equal(b.actions[-1], spec.safe_command(q, q).astype(np.float32))
        assert b.images.keys() == a.images.keys()
        for cam in a.images:
            np.testing.assert_array_equal(b.images[cam], a.images[cam])
        assert b.instructions == a.instructions
        for key in ("success", "terminal", "return", "source", "checkpoint", "seed", "length", "tasks"):
            assert b.meta[key] == a.meta[key], f"episode {i} {key}"
        assert b.meta["metadata"]["import"]["bag_episode_index"] == i


def test_import_round_trip_of_collected_episodes(collected, tmp_path):
    """Sim episodes that all start at t = 0, shifted apart by the export and back by the import."""
    bag = bagx.export_mcap(collected, tmp_path / "bag")
    report = bagx.import_mcap(bag, tmp_path / "ds", default_spec())
    want, got = Dataset(collected), Dataset(tmp_path / "ds", default_spec())
    assert (report.out, report.episodes, report.steps) == (tmp_path / "ds", len(want), want.total_steps)
    assert_same_episodes(got, want)
    assert got.episodes[0]["metadata"]["recording"]["dropped_commands"] == 0
    assert any("START/STOP" in n for n in report.notes)
    assert any("/arm_controller/commands" in n and "not carried" in n for n in report.notes)
    assert no_leftovers(tmp_path)

    # unshifted, the same episodes overlap in time and their messages interleave: refused
    bag = bagx.export_mcap(collected, tmp_path / "overlapping", timeline="recorded")
    with pytest.raises(DatasetError, match=r"episode 1 starts at 0\.\d+ s, inside the episode before it"):
        bagx.import_mcap(bag, tmp_path / "ds2", default_spec())
    assert not (tmp_path / "ds2").exists() and no_leftovers(tmp_path)


def test_import_round_trip_instruction_change_features_and_mono(tmp_path, spec):
    write_dataset(tmp_path / "src", spec)  # a policy episode with a checkpoint and an instruction change
    bag = bagx.export_mcap(tmp_path / "src", tmp_path / "bag", commander=COMMANDER)
    report = bagx.import_mcap(bag, tmp_path / "ds", spec)
    got = Dataset(tmp_path / "ds", spec)
    assert_same_episodes(got, Dataset(tmp_path / "src"))
    assert got.episodes[1]["checkpoint"] == "pac@42" and got.episodes[1]["tasks"] == spec.instructions()[1:3]
    assert got.episodes[1]["metadata"]["import"]["command_topic"] == COMMANDER + "/command"
    assert report.notes[0].startswith("episodes bounded by /pac/episode_events")


class BagBuilder:
    """A rosbag2/MCAP written with rosbags directly (no pac_ros exporter), as `ros2 bag record` would."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.store = bagx.make_typestore()
        self.T = self.store.types
        self.writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, tuple] = {}

    def write(self, topic: str, msgtype: str, log_ns: int, msg) -> None:
        if topic not in self.conns:
            self.conns[topic] = (self.writer.add_connection(topic, msgtype, typestore=self.store), msgtype)
        conn, msgtype = self.conns[topic]
        self.writer.write(conn, log_ns, self.store.serialize_cdr(msg, msgtype))

    def header(self, ns: int, frame_id: str = ""):
        stamp = self.T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def image(self, ns: int, array: np.ndarray, encoding: str):
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(ns), height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
            step=array.shape[1] * (array.shape[2] if array.ndim == 3 else 1), data=array.reshape(-1))

    def joints(self, ns: int, names, values):
        empty = np.zeros(0)
        return self.T["sensor_msgs/msg/JointState"](header=self.header(ns), name=list(names),
                                                    position=np.asarray(values, np.float64), velocity=empty,
                                                    effort=empty)

    def close(self) -> None:
        self.writer.close()


MS = 1_000_000
WALL_NS = 1_700_000_000 * 1_000_000_000


def write_robot_bag(path: Path, spec: Spec, stamps_ns, *, instructions=None, success_tick=None, bad_image_ticks=(),
                    command_topic="/policy/command", types=None):
    """What a bridge- or robot-driven session records, tick by tick: images, joint state, the reward
    and success of the step just taken, then the stamped command (5 ms later). Log times are the
    recording machine's wall clock (from WALL_NS, one tick apart), not the stamps' clock.
    ``instructions`` maps tick -> instruction published before that tick's observation.
    Returns per tick (stamp ns, joints, images, command, reward) as written."""
    rng = np.random.default_rng(1)
    types = types or {}
    b = BagBuilder(path)
    ticks = []
    for t, stamp in enumerate(stamps_ns):
        ns = WALL_NS + t * 100 * MS  # log time; the messages carry ``stamp``
        if instructions and t in instructions:
            b.write("/instruction", "std_msgs/msg/String", ns, b.T["std_msgs/msg/String"](data=instructions[t]))
        if t == 0:
            status = b.T["diagnostic_msgs/msg/DiagnosticStatus"](level=0, name="pac", message="ok",
                                                                 hardware_id="pac@7", values=[])
            b.write("/pac/status", "diagnostic_msgs/msg/DiagnosticStatus", ns, status)
        q = rng.uniform(spec.lower, spec.upper).astype(np.float32)
        images = {c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras}
        for c in spec.cameras:
            bad = t in bad_image_ticks and c.name == spec.camera_names[0]  # no camera image has 16UC1
            b.write(f"/camera/{c.name}/image_raw", "sensor_msgs/msg/Image", ns + MS,
                    b.image(stamp, images[c.name], "16UC1" if bad else c.encoding))
        js_type = types.get("/joint_states", "sensor_msgs/msg/JointState")
        js = b.joints(stamp, spec.joint_names, q) if js_type.endswith("JointState") else b.T[js_type](data="q")
        b.write("/joint_states", js_type, ns + MS, js)
        reward = float(np.float32(t / 8))
        if t:
            b.write("/reward", "std_msgs/msg/Float32", ns + 2 * MS, b.T["std_msgs/msg/Float32"](data=reward))
            b.write("/task_success", "std_msgs/msg/Bool", ns + 2 * MS, b.T["std_msgs/msg/Bool"](data=t == success_tick))
        if t == 2 and js_type == "sensor_msgs/msg/JointState":  # an extra one the live recorder rejects
            b.write("/joint_states", js_type, ns + 3 * MS, b.joints(stamp + 3 * MS, ["nope"], [0.0]))
        command = rng.uniform(spec.lower, spec.upper).astype(np.float32)
        b.write(command_topic, "sensor_msgs/msg/JointState", ns + 5 * MS, b.joints(stamp, spec.joint_names, command))
        ticks.append((stamp, q, images, command, reward))
    b.close()
    return ticks


def test_import_bag_without_episode_events(tmp_path, spec):
    """Episodes cut as the live recorder cuts them: instruction, success, bag end; rejects counted."""
    instr = spec.instructions()
    stamps = [1_000_000_000 + t * 100 * MS for t in range(11)]  # a clock that never restarts
    ticks = write_robot_bag(tmp_path / "bag", spec, stamps, instructions={0: instr[0], 6: instr[1]},
                            success_tick=5, bad_image_ticks={8})
    report = bagx.import_mcap(tmp_path / "bag", tmp_path / "ds", spec)
    ds = Dataset(tmp_path / "ds", spec)
    assert (report.episodes, report.steps) == (2, 10) and len(ds) == 2 and not ds.has_features

    # episode 0: ticks 0..5, success at 5 (its command is not a step); reward of tick t+1 on row t
    e = ds.load_episode(0)
    rows = [ticks[t] for t in range(6)]
    np.testing.assert_allclose(e.timestamp, [ns * 1e-9 for ns, *_ in rows], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(e.joint_positions, np.stack([q for _, q, *_ in rows]))
    np.testing.assert_array_equal(e.actions[:-1], np.stack([c for *_, c, _ in rows[:-1]]))
    np.testing.assert_array_equal(e.actions[-1], spec.safe_command(rows[-1][1], rows[-1][1]).astype(np.float32))
    np.testing.assert_array_equal(e.rewards, [r for *_, r in ticks[1:6]] + [0.0])
    for cam in spec.camera_names:
        np.testing.assert_array_equal(e.images[cam], np.stack([images[cam] for _, _, images, *_ in rows]))
    meta = ds.episodes[0]
    assert meta["success"] and meta["terminal"] and meta["instruction"] == instr[0]
    assert (meta["source"], meta["checkpoint"]) == ("policy", "pac@7")  # commander name; /pac/status model
    assert meta["metadata"]["stop_reason"] == "success"

    # episode 1: ticks 6..10 without 8 (its front image could not be converted, so its command found no
    # observation); the bag's end leaves it truncated, with tick 10 the final observation
    e = ds.load_episode(1)
    kept = [6, 7, 9, 10]
    np.testing.assert_allclose(e.timestamp, [ticks[t][0] * 1e-9 for t in kept], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(e.actions[:-1], np.stack([ticks[t][3] for t in kept[:-1]]))
    meta = ds.episodes[1]
    assert not meta["success"] and not meta["terminal"] and meta["instruction"] == instr[1]
    assert meta["metadata"]["stop_reason"] == "end of the bag" and meta["dropped"] == 1

    notes = "\n".join(report.notes)
    assert "no /pac/episode_events" in notes and "commands from /policy/command" in notes
    assert ("1 of 11 messages on /camera/front/image_raw rejected, first: image encoding '16UC1' cannot be "
            "converted") in notes
    assert "1 of 12 messages on /joint_states rejected, first: joint state lacks joint(s)" in notes
    assert "dropped commands: 1" in notes


def test_import_bag_without_instructions_splits_at_clock_jumps(tmp_path, spec):
    """Two runs whose clock restarts at 0 and no instruction topic: one episode per run."""
    stamps = [t * 100 * MS for t in range(15)] + [t * 100 * MS for t in range(4)]  # back 1.4 s
    ticks = write_robot_bag(tmp_path / "bag", spec, stamps, command_topic="/teleop/command")
    with pytest.raises(DatasetError, match="no /pac/episode_events and no /instruction messages"):
        bagx.import_mcap(tmp_path / "bag", tmp_path / "ds", spec)
    report = bagx.import_mcap(tmp_path / "bag", tmp_path / "ds", spec, instruction="stack them")
    ds = Dataset(tmp_path / "ds", spec)
    # The jump shows on the joint state; the images of that tick, logged just before it, were
    # older than the newest images then and were dropped as late, as the live recorder drops
    # them, so the second run's first row is lost.
    assert [m["length"] for m in ds.episodes] == [15, 3] and report.steps == 18
    assert [m["metadata"]["stop_reason"] for m in ds.episodes] == ["clock jumped backwards", "end of the bag"]
    assert all(m["source"] == "teleop" and m["checkpoint"] is None and m["tasks"] == ["stack them"]
               for m in ds.episodes)
    np.testing.assert_array_equal(ds.load_episode(0).joint_positions, np.stack([q for _, q, *_ in ticks[:15]]))
    np.testing.assert_array_equal(ds.load_episode(1).joint_positions, np.stack([q for _, q, *_ in ticks[16:]]))
    assert "late messages: 2" in report.notes and "dropped commands: 1" in report.notes


def test_import_rejects_unusable_bags(tmp_path, spec):
    instr = {0: spec.instructions()[0]}
    stamps = [1_000_000_000 + t * 100 * MS for t in range(4)]

    def fails(name: str, match: str, **kwargs) -> None:
        bag = tmp_path / name
        write_robot_bag(bag, spec, stamps, instructions=instr, **kwargs)
        with pytest.raises(DatasetError, match=match):
            bagx.import_mcap(bag, tmp_path / f"{name}_ds", spec)
        assert not (tmp_path / f"{name}_ds").exists()

    fails("wrong_type", r"topic /joint_states has messages of type std_msgs/msg/String; the import reads "
          r"sensor_msgs/msg/JointState", types={"/joint_states": "std_msgs/msg/String"})
    fails("no_command", r"no stamped command topic", command_topic="/policy/commands")

    # every front image unconvertible: the import names the first problem
    write_robot_bag(tmp_path / "depth", spec, stamps, instructions=instr, bad_image_ticks=range(len(stamps)))
    with pytest.raises(DatasetError, match=r"all 4 messages on /camera/front/image_raw were rejected, e\.g\. "
                       r"image encoding '16UC1' cannot be converted"):
        bagx.import_mcap(tmp_path / "depth", tmp_path / "x", spec)

    # a spec whose front camera is bigger than the bag's: images are resized to it
    d = copy.deepcopy(spec.to_dict())
    d["cameras"][0]["width"] = 64
    write_robot_bag(tmp_path / "small_images", spec, stamps, instructions=instr)
    wide = Spec.from_dict(d)
    bagx.import_mcap(tmp_path / "small_images", tmp_path / "wide", wide)
    assert Dataset(tmp_path / "wide", wide).load_episode(0).images["front"].shape[1:] == (32, 64, 3)

    # a camera topic missing
    d = copy.deepcopy(spec.to_dict())
    d["cameras"].append({"name": "side", "width": 8, "height": 8, "encoding": "rgb8"})
    with pytest.raises(DatasetError, match=r"required topic /camera/side/image_raw \(sensor_msgs/msg/Image, an "
                       r"observation input\) is missing; topics: "):
        bagx.import_mcap(tmp_path / "small_images", tmp_path / "x", Spec.from_dict(d))

    with pytest.raises(DatasetError, match="no such rosbag2 directory"):
        bagx.import_mcap(tmp_path / "nope", tmp_path / "x", spec)
    (tmp_path / "notabag").mkdir()
    with pytest.raises(DatasetError, match="not a readable rosbag2 bag"):
        bagx.import_mcap(tmp_path / "notabag", tmp_path / "x", spec)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="already exists and is not an empty directory"):
        bagx.import_mcap(tmp_path / "small_images", tmp_path / "taken", spec)
    assert not (tmp_path / "x").exists() and no_leftovers(tmp_path)


def test_import_counts_undecodable_messages(tmp_path, spec, monkeypatch):
    """A message whose bytes do not deserialise is skipped and counted, like one lost on the wire."""
    from rosbags.rosbag2 import Writer

    real_write = Writer.write

    def garble(self, conn, ns, data):  # the rewards from tick 4 on lose all but 3 bytes
        return real_write(self, conn, ns, data[:3] if conn.topic == "/reward" and ns > WALL_NS + 350 * MS else data)

    monkeypatch.setattr(Writer, "write", garble)
    write_robot_bag(tmp_path / "bag", spec, [1_000_000_000 + t * 100 * MS for t in range(6)],
                    instructions={0: spec.instructions()[0]})
    monkeypatch.undo()
    report = bagx.import_mcap(tmp_path / "bag", tmp_path / "ds", spec)
    assert report.episodes == 1 and report.steps == 6
    assert "2 messages on /reward could not be deserialised and were skipped" in report.notes
    np.testing.assert_array_equal(Dataset(tmp_path / "ds").load_episode(0).rewards, [1 / 8, 2 / 8, 3 / 8, 0, 0, 0])


def test_cli_import(collected, tmp_path, capsys):
    from pac_ros.cli import main

    bagx.export_mcap(collected, tmp_path / "bag")
    assert main(["dataset", "import", str(tmp_path / "bag"), "--format", "mcap", "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'ds'}: 4 episodes" in out and "note: episodes bounded by" in out
    assert_same_episodes(Dataset(tmp_path / "ds"), Dataset(collected))
    assert main(["dataset", "import", str(tmp_path / "nope"), "--format", "mcap", "--out", str(tmp_path / "x")]) == 2
    assert "no such rosbag2 directory" in capsys.readouterr().err
