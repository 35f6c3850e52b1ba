"""Fault suite: crashes, full disks, sensor dropouts, malformed input, adversarial
model outputs, bad files, clock jumps and a soak. Seeded and deterministic.

Covered elsewhere and only referenced here:
- the writer SIGKILLed at each commit step and at timed moments: test_data.py::test_crash_safety_sigkill;
  the whole launched graph SIGKILLed: test_nodes.py::test_sigkill_of_recording_process_loses_no_committed_episode
- a camera missing for one or two frames: test_policy_node.py::test_holds_within_a_period_when_the_camera_stops_and_recovers
- malformed messages through real ROS transport: test_nodes.py::test_recorder_rejects_malformed_input_and_keeps_running,
  test_policy_node.py::test_malformed_joint_state_holds_and_says_why
- corrupted checkpoint files (truncated, flipped bytes, bad meta.json, missing):
  test_policy.py::test_corrupted_checkpoint_is_a_clear_error; a checkpoint of another spec:
  test_policy.py::test_wrong_spec_is_a_clear_error and the policy node in
  test_policy_node.py::test_checkpoint_swap_at_run_time_and_bad_checkpoints
- a truncated or changed episode file: test_data.py::test_corrupted_episode_file; invalid spec fields:
  test_spec.py::test_invalid_specs_name_the_problem; unknown training config keys:
  test_learning.py::test_config_yaml_and_unknown_keys
"""
from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fake_msgs
from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data import format as fmt
from pac_ros.data.messages import stamp_seconds
from pac_ros.data.recording import RecorderCore, commit_episode
from pac_ros.data.validate import validate
from pac_ros.policy import DECODING
from pac_ros.spec import default_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEC = default_spec()
DT = SPEC.control_period


def replay(events, spec=SPEC, **kw):
    """The episodes a RecorderCore hands over for ``events`` (nothing written)."""
    episodes = []
    core = RecorderCore(spec, episodes.append, features=True, max_steps=None, **kw)
    for event in events:
        fake_msgs.feed(core, event)
    return episodes, core


def rows(episode, spec=SPEC):
    """The rows commit_episode writes for a finished episode: its steps, then the final observation."""
    out = [dict(timestamp=s.timestamp, q=s.joint_positions, images=s.images, action=s.action, reward=s.reward,
                features=s.features, instruction=s.instruction) for s in episode.steps]
    if episode.final is not None:
        f = episode.final
        out.append(dict(timestamp=f["timestamp"], q=f["joint_positions"], images=f["images"],
                        action=spec.safe_command(f["joint_positions"], f["joint_positions"]), reward=0.0,
                        features=f["features"], instruction=out[-1]["instruction"]))
    return out


def assert_bit_exact(e, expected):
    """A loaded Episode holds exactly these rows (float32 where the format stores float32)."""
    f32 = np.float32
    assert len(e) == len(expected)
    np.testing.assert_array_equal(e.timestamp, [r["timestamp"] for r in expected])
    np.testing.assert_array_equal(e.joint_positions, np.array([r["q"] for r in expected], f32))
    np.testing.assert_array_equal(e.actions, np.array([r["action"] for r in expected], f32))
    np.testing.assert_array_equal(e.rewards, np.array([r["reward"] for r in expected], f32))
    np.testing.assert_array_equal(e.features, np.array([r["features"] for r in expected], f32))
    assert e.instructions == [r["instruction"] for r in expected]
    for cam in SPEC.camera_names:
        np.testing.assert_array_equal(e.images[cam], np.stack([r["images"][cam] for r in expected]))


# ---- 1. recorder crash: SIGKILL at 20 seeded points --------------------------------------
COMMIT_POINTS = ("after_task", "torn_task", "torn_tmp", "before_rename", "after_rename", "torn_index", "after_index")
# what the next writer start says for each point, and whether it keeps the killed commit's episode
RECOVERY = {"after_task": ([], False), "torn_task": (["tasks.jsonl: removed a torn last line"], False),
            "torn_tmp": (["unfinished temp file"], False), "before_rename": (["unfinished temp file"], False),
            "after_rename": (["recovered episode(s)"], True),
            "torn_index": (["episodes.jsonl: removed a torn last line", "recovered episode(s)"], True),
            "after_index": ([], True), "add_step": ([], False), "message": ([], False)}


def crash_points(n=20, seed=8):
    """``n`` (point, N) pairs: every kind once, then kinds drawn at random; N drawn within the stream."""
    events = fake_msgs.robot_stream(SPEC, seed)
    episodes, _ = replay(events)
    limits = {p: len(episodes) for p in COMMIT_POINTS}
    limits.update(add_step=sum(len(rows(e)) for e in episodes), message=len(events))
    rng = np.random.default_rng(seed)
    kinds = list(rng.permutation(list(limits)))
    kinds += list(rng.choice(list(limits), n - len(kinds)))
    return [(str(k), int(rng.integers(1, limits[k] + 1))) for k in kinds], events, episodes


def expected_left(point, at, events, episodes):
    """Episodes a recovered dataset holds after a kill at the ``at``-th ``point``."""
    if point == "message":
        return len(replay(events[: at - 1])[0])
    if point == "add_step":
        ends = np.cumsum([len(rows(e)) for e in episodes])
        return int(np.sum(ends < at))
    return at if RECOVERY[point][1] else at - 1


@pytest.mark.slow
def test_recorder_sigkill_at_20_points_including_mid_commit(tmp_path, caplog):
    seed = 8
    points, events, episodes = crash_points(seed=seed)
    assert len(points) == 20 and set(COMMIT_POINTS) <= {p for p, _ in points}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]))
    procs = []
    for i, (point, at) in enumerate(points):  # four children at a time
        if i >= 4:
            procs[i - 4][1].wait(timeout=120)
        procs.append((tmp_path / f"{i:02d}_{point}_{at}", subprocess.Popen(
            [sys.executable, str(HERE / "data_crash_writer.py"), str(tmp_path / f"{i:02d}_{point}_{at}"), str(seed),
             point, str(at), "recorder"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)))
    verified = 0
    try:
        for (point, at), (root, proc) in zip(points, procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == -signal.SIGKILL, (point, at, out, err)
            # a reader sees only whole episodes, before any recovery
            seen = Dataset(root, SPEC)
            for i in range(len(seen)):
                assert_bit_exact(seen.load_episode(i), rows(episodes[i]))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="pac_ros.data"):
                writer = DatasetWriter(root, SPEC)
            left = expected_left(point, at, events, episodes)
            assert writer.num_episodes == left, (point, at, caplog.text)
            assert all(text in caplog.text for text in RECOVERY[point][0]), (point, at, caplog.text)
            ds = Dataset(root, SPEC)
            for i in range(len(ds)):
                e = ds.load_episode(i)
                assert_bit_exact(e, rows(episodes[i]))
                assert e.meta["metadata"]["k"] == i and e.meta["seed"] == i
            report = validate(root)
            assert report.ok, report.problems
            assert not (root / "quarantine").exists()
            if left < len(episodes):  # the next writer records the next episode
                assert commit_episode(writer, episodes[left], seed=left, metadata={"k": left}) == left
                assert_bit_exact(Dataset(root, SPEC).load_episode(left), rows(episodes[left]))
            writer.close()
            verified += len(ds)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"20 kill points {sorted({p for p, _ in points})}: {verified} committed episodes verified bit-exact")


# ---- 2. disk full / unwritable directory ----------------------------------------------------
def _fault(kind, monkeypatch, root):
    """Make the next writes fail as a full disk or a read-only directory would."""
    real_write, real_open = fmt.write_all, os.open

    def write_all(fd, data):
        prefix = {"episode_file": b"PAR1", "index_line": b'{"episode_index"', "task_line": b'{"task_index"'}[kind]
        if data[: len(prefix)] == prefix:
            real_write(fd, data[: len(data) // 2])  # part of it fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(root / "data")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    if kind == "fsync":
        monkeypatch.setattr(os, "fsync", fsync)
    elif kind.startswith("unwritable"):  # as root, chmod would not stop us: fail the calls instead
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir)
    else:
        monkeypatch.setattr(fmt, "write_all", write_all)


FAULT_MESSAGES = {"episode_file": "No space left on device", "index_line": "No space left on device",
                  "task_line": "No space left on device", "fsync": "Input/output error",
                  "unwritable_dir": "Read-only file system", "unwritable_new_dir": "Read-only file system"}


@pytest.mark.parametrize("kind", list(FAULT_MESSAGES))
def test_disk_full_fails_one_episode_clearly_and_recording_goes_on(tmp_path, monkeypatch, kind):
    """The recorder core and the writer: the episode that meets the fault is not committed and
    the error names the file and the cause; earlier episodes stay valid; once the fault is gone
    the next episodes commit. Nothing half-written is left behind."""
    root = tmp_path / "ds"
    events = fake_msgs.robot_stream(SPEC, 5, episodes=4)
    episodes, _ = replay(events)
    errors, committed = [], []
    writer = DatasetWriter(root, SPEC, features=True)

    def on_episode(episode):
        try:
            committed.append(commit_episode(writer, episode))
        except DatasetError as exc:
            errors.append(str(exc))

    core = RecorderCore(SPEC, on_episode, features=True, max_steps=None)
    starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
    bad = 0 if kind == "unwritable_new_dir" else 1  # the first episode also creates data/chunk-000
    for i, event in enumerate(events):
        if i == starts[bad] + 1:  # the episode has begun: the disk fills up
            _fault(kind, monkeypatch, root)
        if i == starts[bad + 1] + 1:  # space is back
            monkeypatch.undo()
        fake_msgs.feed(core, event)
    writer.close()
    assert committed == [0, 1, 2] and len(errors) == 1, errors
    assert FAULT_MESSAGES[kind] in errors[0] and str(root) in errors[0], errors[0]
    ds = Dataset(root, SPEC)
    for i, k in enumerate(k for k in range(4) if k != bad):
        assert_bit_exact(ds.load_episode(i), rows(episodes[k]))
    report = validate(root)
    assert report.ok, report.problems
    with DatasetWriter(root, SPEC) as again:  # nothing for the next start to recover
        assert again.num_episodes == 3
    assert not (root / "quarantine").exists()


def test_recorder_node_stays_up_through_a_full_disk(ros, tmp_path, monkeypatch):
    """The node's commit thread: the failing episode is counted and logged, the next one commits."""
    from pac_ros.nodes.recorder import Recorder

    root = tmp_path / "ds"
    recorder = Recorder(cli_args=["--ros-args", "-p", f"dataset:={root}", "-p", "max_steps:=1000"])
    try:
        events = fake_msgs.robot_stream(SPEC, 6, episodes=3)
        starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
        for i, event in enumerate(events):
            if i == starts[1] + 1:  # episode 0 handed over: the disk fills up
                recorder.flush()
                _fault("episode_file", monkeypatch, root)
            if i == starts[2] + 1:
                recorder.flush()
                monkeypatch.undo()
            fake_msgs.feed(recorder.core, event)
        recorder.flush()
        assert recorder.failed == 1 and recorder.committed == [0, 1]
    finally:
        recorder.destroy_node()
    assert validate(root).ok


def test_recorder_core_goes_on_when_handing_over_an_episode_fails():
    """A synchronous on_episode that raises (a full disk under the MCAP import, say): the error
    reaches the caller, and the core still starts the next episode and records it."""
    events = fake_msgs.robot_stream(SPEC, 5, episodes=3)
    expected, _ = replay(events)
    got, failures = [], []

    def on_episode(episode):
        if not failures:
            failures.append(episode)
            raise DatasetError("disk full")
        got.append(episode)

    core = RecorderCore(SPEC, on_episode, features=True, max_steps=None)
    for event in events:
        try:
            fake_msgs.feed(core, event)
        except DatasetError:
            assert core.recording, "the next episode was not started"
    assert len(failures) == 1 and [len(e.steps) for e in got] == [len(e.steps) for e in expected[1:]]


# ---- 3. sensor dropout ---------------------------------------------------------------------------
@pytest.mark.parametrize("silent", ["joints", "cameras", "joints_to_the_end"])
def test_recorder_marks_a_one_second_dropout_in_the_episode(tmp_path, silent):
    """Either input silent for 1 s mid-episode: the episode's metadata says which input and when,
    and its rows resume after the gap. Silent until the episode ends: a gap up to its last stamp."""
    to_the_end = silent.endswith("_to_the_end")
    silent = silent.split("_")[0]
    dropout = {"input": silent, "episode": 1, "at": 3, "seconds": 100.0 if to_the_end else 1.0}
    events = fake_msgs.robot_stream(SPEC, 2, episodes=3, dropout=dropout)
    episodes, _ = replay(events)
    with DatasetWriter(tmp_path / "ds", SPEC, features=True) as writer:
        for e in episodes:
            commit_episode(writer, e)
    ds = Dataset(tmp_path / "ds", SPEC)
    inputs = ["joint_states"] if silent == "joints" else [f"image:{c}" for c in SPEC.camera_names]
    for i, meta in enumerate(ds.episodes):
        gaps = meta["metadata"]["recording"]["gaps"]
        if i != 1:
            assert gaps == []
            continue
        assert sorted(g["input"] for g in gaps) == inputs
        e = ds.load_episode(i)
        if to_the_end:  # from the last joint state to the stamp of the episode's last message
            third = [j for j, ev in enumerate(events) if ev[0] == "instruction"][2]
            last = [ev[-1].header.stamp for ev in events[:third] if ev[0] == "image"][-1]
            assert [(g["from"], g["to"]) for g in gaps] == [(e.timestamp[-1], stamp_seconds(last))]
            continue
        for g in gaps:  # from the last message before the silence to the first after it
            assert g["to"] - g["from"] == pytest.approx(1.0 + DT)
        assert_bit_exact(e, rows(episodes[i]))  # rows resume after the gap, paired as before
        assert np.max(np.diff(e.timestamp)) == pytest.approx(1.0 + DT)
    assert validate(tmp_path / "ds").ok


def _policy_graph(tmp_path, **params):
    from test_policy_node import make_checkpoint, make_graph

    return make_graph(make_checkpoint(tmp_path / "ckpt"), **params)


def _quiet_tick(ex, robot, **kw):
    """One period of the fake robot when the policy may publish nothing (an observation it answered)."""
    n = len(robot.status)
    robot.publish(**kw)
    deadline = time.monotonic() + 0.3
    while len(robot.status) == n and time.monotonic() < deadline:
        ex.spin_once(timeout_sec=0.01)
    return {kv.key: kv.value for kv in robot.status[-1].values} if len(robot.status) > n else None


def test_policy_node_holds_through_a_one_second_sensor_dropout(ros, tmp_path):
    """Joint states, then the cameras, stop for 1 s (10 periods): the node holds from the tick
    after its staleness limit (0.15 s here, so within one period of the missing input's second
    frame), says which input is stale, never acts on old data, and acts again as data return."""
    from test_policy_node import run_tick

    policy, robot, ex = _policy_graph(tmp_path, **{"staleness.joint_states": 0.15, "staleness.image": 0.15})
    try:
        for silent, key, name in (("joints", "joints", "joint_states"), ("cameras", "cameras", "image:front")):
            for _ in range(3):
                assert run_tick(ex, robot)["mode"] == "ok"
            acted = len(robot.commands)
            statuses = [_quiet_tick(ex, robot, **{key: False}) for _ in range(10)]
            first = 1 if silent == "joints" else 0  # the tick after the last joint state: already answered
            assert all(s is None for s in statuses[:first]) and len(robot.commands) >= acted
            if silent == "cameras":
                assert statuses[0]["mode"] == "ok"  # 0.1 s old: within the limit
                first = 1
            for s in statuses[first:]:
                assert s["mode"] == "hold" and f"{name}: stale" in s["reason"], s
            held = [np.array(m.data) for m in robot.commands[acted + (silent == "cameras"):]]
            assert len(held) == 9 and all(np.array_equal(h, held[0]) for h in held)  # one hold target
            assert np.all(np.isfinite(held[0])) and np.all(np.abs(held[0] - robot.q) <= SPEC.max_step + 1e-9)
            assert run_tick(ex, robot)["mode"] == "ok"  # data are back: acting within one period
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


# ---- 4. malformed input fuzz ------------------------------------------------------------------
# Hypothesis draws recipes of messages, plausible and malformed (wrong encodings, sizes and
# steps, NaN/inf/huge values, empty and huge arrays, unknown and duplicated joint names, odd
# stamps); stand-in messages are built from them (the readers read fields by name).
NOW = 100.0  # the fuzzed nodes' clock
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
FUZZED: dict[str, int] = {}  # messages fed, per target
NAMES = SPEC.joint_names

values = st.one_of(st.floats(-3.0, 3.0), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-308, 0.0]))
stamps = st.one_of(st.floats(NOW - 0.4, NOW + 0.4).map(lambda t: ("t", t)),
                   st.tuples(st.just("raw"), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1)),
                   st.sampled_from([("raw", 2**31 - 1, 2**32 - 1), ("raw", 2**31 - 1, 999_999_999),
                                    ("raw", -2**31, 0), ("raw", 0, 0), ("raw", int(NOW) + 5, 0)]))
HUGE_NAMES = [f"j{i}" for i in range(100_000)]
NAME_MODES = ["ok", "ok", "shuffled", "missing", "dup_wanted", "dup_extra", "unknown_extra", "empty", "huge",
              "unicode"]


def build_header(stamp):
    if stamp[0] == "t":
        return fake_msgs.header(stamp[1])
    return fake_msgs.NS(stamp=fake_msgs.NS(sec=stamp[1], nanosec=stamp[2]), frame_id="")


def build_names(mode, rng_seed):
    rng = np.random.default_rng(rng_seed)
    names = list(NAMES)
    if mode == "shuffled":
        rng.shuffle(names)
    elif mode == "missing":
        names.pop(int(rng.integers(len(names))))
    elif mode == "dup_wanted":
        names.append(names[int(rng.integers(len(names)))])
    elif mode == "dup_extra":
        names += ["extra", "extra"]
    elif mode == "unknown_extra":
        names.insert(int(rng.integers(len(names) + 1)), "tail_rotor")
    elif mode == "empty":
        names = []
    elif mode == "huge":
        names = names + HUGE_NAMES
    elif mode == "unicode":
        names = [n + "\u00e9" if i % 2 else n for i, n in enumerate(names)]
    return names


@st.composite
def joint_msgs(draw, positions_in_limits=False):
    names = build_names(draw(st.sampled_from(NAME_MODES)), draw(st.integers(0, 2**16)))
    n = draw(st.one_of(st.just(len(names)), st.just(len(names)), st.integers(0, 12)))
    if positions_in_limits and draw(st.booleans()):
        pos = list(np.random.default_rng(draw(st.integers(0, 2**16))).uniform(-2.0, 2.0, n) * 0.01)
    elif n > 20:
        pos = np.full(n, draw(values))
    else:
        pos = [float(v) for v in draw(st.lists(values, min_size=n, max_size=n))]
    msg = fake_msgs.NS(header=build_header(draw(stamps)), name=names, position=pos, velocity=[], effort=[])
    return ("joints", msg)


@st.composite
def image_msgs(draw):
    cam = draw(st.sampled_from(SPEC.camera_names))
    encoding = draw(st.sampled_from(["rgb8", "rgb8", "rgb8", "bgr8", "mono8", "16UC1", "32FC1", "", "jpeg", "RGB8"]))
    height = draw(st.one_of(st.just(64), st.just(64), st.integers(-2, 130), st.just(1_000_000)))
    width = draw(st.one_of(st.just(64), st.just(64), st.integers(-2, 130), st.just(1_000_000)))
    channels = {"mono8": 1, "16UC1": 1, "32FC1": 1}.get(encoding, 3)
    itemsize = {"16UC1": 2, "32FC1": 4}.get(encoding, 1)
    step = max(0, width) * channels * itemsize + draw(st.one_of(st.just(0), st.just(0), st.integers(-300, 300)))
    size = draw(st.one_of(st.just("exact"), st.just("exact"), st.just("empty"), st.just("huge"),
                          st.integers(-5000, 5000)))
    n = {"exact": max(0, height) * max(0, step), "empty": 0, "huge": 65 * 2**20}.get(size, None)
    if n is None:
        n = max(0, max(0, height) * max(0, step) + size)
    n = min(n, 65 * 2**20)
    fill = draw(st.integers(0, 255))
    data = bytes(n) if fill == 0 or n > 2**20 else bytes([fill]) * n
    msg = fake_msgs.NS(header=build_header(draw(stamps)), height=height, width=width, encoding=encoding,
                       is_bigendian=draw(st.integers(0, 1)), step=step, data=data)
    return ("image", cam, msg)


@st.composite
def pose_msgs(draw):
    n = draw(st.one_of(st.just(len(SPEC.blocks)), st.just(len(SPEC.blocks)), st.integers(0, 6), st.just(10_000)))
    if n > 20:  # huge: one pose object many times
        msg = fake_msgs.pose_array(0.0, np.full(7, 0.1))
        msg.poses *= n
        msg.header = build_header(draw(stamps))
        return ("poses", msg)
    if draw(st.booleans()):
        flat = np.random.default_rng(draw(st.integers(0, 2**16))).normal(size=7 * n) * 0.1
    else:
        flat = np.array(draw(st.lists(values, min_size=7 * n, max_size=7 * n)), dtype=np.float64)
    msg = fake_msgs.pose_array(0.0, flat)
    msg.header = build_header(draw(stamps))
    return ("poses", msg)


@st.composite
def plausible_msgs(draw):
    """Well-formed messages, stamped around now (some too old or too new for the policy)."""
    kind = draw(st.sampled_from(["joints", "image", "poses"]))
    t = draw(st.floats(NOW - 0.4, NOW + 0.4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "joints":
        names = build_names(draw(st.sampled_from(["ok", "shuffled", "unknown_extra"])), int(rng.integers(2**16)))
        q = dict(zip(NAMES, rng.uniform(SPEC.lower, SPEC.upper)))
        return ("joints", fake_msgs.joint_state(t, names, [q.get(n, 0.0) for n in names]))
    if kind == "image":
        cam = SPEC.cameras[int(rng.integers(len(SPEC.cameras)))]
        return ("image", cam.name, fake_msgs.image(t, rng.integers(0, 256, cam.shape, dtype=np.uint8), cam.encoding))
    return ("poses", fake_msgs.pose_array(t, rng.normal(size=SPEC.feature_dim) * 0.1))


instructions = st.one_of(st.sampled_from(SPEC.instructions()), st.sampled_from(SPEC.instructions()).map(str.upper),
                         st.text(max_size=40), st.just(""), st.just("   "), st.just("put the red block " * 5000))
instruction_msgs = instructions.map(lambda text: ("instruction", text))
sensor_msgs = st.one_of(plausible_msgs(), joint_msgs(True), image_msgs(), pose_msgs(), instruction_msgs)
recorder_msgs = st.one_of(sensor_msgs, joint_msgs(True).map(lambda m: ("command", m[1])),
                          values.map(lambda r: ("reward", r)), st.booleans().map(lambda b: ("success", b)))


@st.composite
def bridge_msgs(draw):
    kind = draw(st.sampled_from(["float64_multi_array", "joint_state", "joint_trajectory"]))
    if kind == "joint_state":
        return (kind, draw(joint_msgs(True))[1])
    if kind == "float64_multi_array":
        n = draw(st.one_of(st.just(SPEC.action_dim), st.just(SPEC.action_dim), st.integers(0, 12),
                           st.just(1_000_000)))
        data = np.full(n, draw(values)) if n > 20 else [float(v) for v in draw(st.lists(values, min_size=n, max_size=n))]
        return (kind, fake_msgs.NS(data=data))
    points = []
    for _ in range(draw(st.integers(0, 3))):
        j = draw(joint_msgs(True))[1]
        points.append(fake_msgs.NS(positions=j.position))
    names = build_names(draw(st.sampled_from(NAME_MODES)), draw(st.integers(0, 2**16)))
    return (kind, fake_msgs.NS(joint_names=names, points=points))


def check_command(command, q):
    """Finite, within the joint limits, within max step of the measured position (as far as it is plausible)."""
    c = np.asarray(command, dtype=np.float64)
    assert c.shape == (SPEC.action_dim,) and np.all(np.isfinite(c)), c
    assert np.all(c >= SPEC.lower) and np.all(c <= SPEC.upper), c
    assert np.all(np.abs(c - np.clip(q, SPEC.lower, SPEC.upper)) <= SPEC.max_step + 1e-9), (c, q)


class Capture:
    def __init__(self):
        self.msgs = []

    def publish(self, msg):
        self.msgs.append(msg)


def _valid_inputs(spec=SPEC, t=NOW):
    """A well-formed observation at stamp ``t``: instruction, joint state, images and block poses."""
    q = 0.5 * (spec.lower + spec.upper)
    out = [("instruction", spec.instructions()[0]), ("joints", fake_msgs.joint_state(t, spec.joint_names, q)),
           ("poses", fake_msgs.pose_array(t, np.tile([0.4, 0, 0.02, 1, 0, 0, 0], len(spec.blocks))))]
    out += [("image", c.name, fake_msgs.image(t, np.full(c.shape, 90, np.uint8), c.encoding)) for c in spec.cameras]
    return out


@pytest.mark.slow
def test_fuzz_policy_node_inputs(ros, tmp_path, monkeypatch):
    """Malformed messages into the policy node's callbacks, its tick after every other one: nothing
    raises, every published command is finite, within the limits and a max step of the position."""
    from pac_ros.nodes import common
    from pac_ros.nodes.policy import PolicyNode
    from test_policy_node import make_checkpoint

    monkeypatch.setattr(common, "now_sec", lambda node: NOW)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other
    node = PolicyNode(cli_args=["--ros-args", "-p", f"checkpoint:={make_checkpoint(tmp_path / 'ckpt')}",
                                "-p", "device:=cpu", "-p", "autostart:=true"])
    assert node.lifecycle_state == "active"
    node.destroy_timer(node.timer)  # ticks are called here
    commands = node.output.arm_pub = Capture()
    node.stamped_pub, node.status_pub, node.diagnostics_pub = Capture(), Capture(), Capture()
    handlers = {"joints": node._on_joints, "poses": node._on_poses,
                "image": lambda cam, msg: node._on_image(cam, msg),  # an instruction without a source stamp: now
                "instruction": lambda text: node._on_instruction(fake_msgs.NS(data=text), {"source_timestamp": 0})}
    FUZZED["policy"] = 0
    acted = [0]
    plausible = SPEC.plausible_positions()

    @settings(FUZZ, max_examples=200)
    @given(st.lists(sensor_msgs, min_size=15, max_size=30))
    def run(messages):
        node.latest.clear(), node.malformed.clear(), node.arrived.clear()
        node.instruction, node.last_command, node.last_answered = "", None, None
        for kind, *args in _valid_inputs():
            handlers[kind](*args)
        for i, (kind, *args) in enumerate(messages):
            handlers[kind](*args)
            FUZZED["policy"] += 1
            if i % 2:
                continue
            n = len(commands.msgs)
            q = node.latest["joint_states"][1].copy()
            assert np.all(q >= plausible[0]) and np.all(q <= plausible[1]), q  # no absurd position believed
            node._tick()
            if len(commands.msgs) > n:
                check_command(commands.msgs[-1].data, q)
                if node.status_pub.msgs[-1].values[0].value == "ok":  # acted: on inputs of now only
                    acted[0] += 1
                    for name, kind in node._needed():
                        limit = node.get_parameter(f"staleness.{kind}").value
                        assert abs(NOW - node.latest[name][0]) <= limit, (name, node.latest[name][0])
    try:
        run()
    finally:
        node.destroy_node()
        torch.set_num_threads(threads)
    assert FUZZED["policy"] >= 3400, FUZZED
    assert acted[0] >= 20  # the model did act between malformed inputs (47-100 seen, with test order)
    print(f"policy node: {FUZZED['policy']} messages, {acted[0]} ticks acted")


@pytest.mark.slow
def test_fuzz_recorder_core(tmp_path):
    """Malformed messages mixed into a robot's well-formed stream, through RecorderCore: nothing
    raises, and every episode it hands over commits into a dataset that validates."""
    writer = DatasetWriter(tmp_path / "ds", SPEC, features=True)
    FUZZED["recorder"] = 0
    counts = {"episodes": 0, "rejected": 0}
    plausible = SPEC.plausible_positions()

    @settings(FUZZ, max_examples=170)
    @given(st.lists(st.tuples(st.integers(0, 10**6), recorder_msgs), min_size=15, max_size=30),
           st.integers(0, 10**6))
    def run(inserts, seed):
        stream = fake_msgs.robot_stream(SPEC, seed, episodes=2, t0=NOW - 1.0)
        for pos, msg in sorted(inserts, key=lambda x: x[0]):
            stream.insert(pos % len(stream), msg)
        episodes, core = replay(stream)
        FUZZED["recorder"] += len(inserts)
        counts["rejected"] += core.rejected
        for e in episodes:  # what validate checks, plus plausible positions
            for s in e.steps:
                assert np.all(s.action >= SPEC.lower) and np.all(s.action <= SPEC.upper), s.action
                assert np.all(s.joint_positions >= plausible[0]) and np.all(s.joint_positions <= plausible[1])
            commit_episode(writer, e)
            counts["episodes"] += 1
    try:
        run()
    finally:
        writer.close()
    report = validate(tmp_path / "ds")
    assert report.ok, report.problems[:5]
    assert FUZZED["recorder"] >= 3400 and counts["episodes"] > 100, (FUZZED, counts)
    print(f"recorder core: {FUZZED['recorder']} messages, {counts['rejected']} rejected, "
          f"{counts['episodes']} episodes committed and validated")


@pytest.mark.slow
def test_fuzz_bridge_commands(ros):
    """Malformed commands into the lock-step bridge: nothing raises, every applied target is finite,
    within the limits and a max step of the position, and malformed commands are rejected."""
    from pac_ros.nodes.mujoco_bridge import MujocoBridge

    bridge = MujocoBridge(cli_args=["--ros-args", "-p", "mode:=lockstep", "-p", "render:=false",
                                    "-p", "lockstep_timeout:=1000.0"])
    env, applied = bridge.env, []
    real_step = env.step

    def step(command):
        q = env.joint_positions()
        out = real_step(command)
        applied.append((out[-1]["command"], q))
        return out

    env.step = step
    FUZZED["bridge"] = 0

    @settings(FUZZ, max_examples=190)
    @given(st.lists(bridge_msgs(), min_size=15, max_size=30))
    def run(messages):
        for kind, msg in messages:
            getattr(bridge, f"_on_{kind}")(msg)
            FUZZED["bridge"] += 1
            assert bridge.command.shape == (SPEC.action_dim,) and np.all(np.isfinite(bridge.command))
        if env.step_count > 150:
            bridge._reset_episode()
    try:
        run()
    finally:
        bridge.destroy_node()
    for target, q in applied:
        check_command(target, q)
    assert FUZZED["bridge"] >= 3400 and len(applied) > 100 and bridge.rejected > 1000, (FUZZED, len(applied))
    print(f"bridge: {FUZZED['bridge']} commands, {bridge.rejected} rejected, {len(applied)} applied")


# ---- 5. command safety whatever the model outputs --------------------------------------------
@pytest.fixture(scope="module")
def tiny_policies():
    """A tiny features-mode PAC model per control, with random, NaN, inf and huge weights."""
    from pac_ros.control import Control
    from pac_ros.model import PACModel
    from pac_ros.model.config import preset
    from pac_ros.policy import Policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other
    out = {}
    for control in ("joint", "task"):
        shared = None
        for weights in ("random", "nan", "inf", "huge"):
            torch.manual_seed(0)
            model = PACModel(preset("tiny", obs_mode="features", control=control, width=32, heads=2, n_latents=4,
                                    n_self_blocks=1), SPEC)
            if weights != "random":
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_({"nan": float("nan"), "inf": float("inf"), "huge": 1e30}[weights])
            policy = Policy(model, SPEC, device="cpu", n_candidates=4, seed=0)
            shared = shared or policy.control
            policy.control = shared  # one arm model (MuJoCo) for the task-control IK
            assert isinstance(shared, Control)
            out[control, weights] = policy
    yield out
    torch.set_num_threads(threads)


adversarial = st.one_of(values, st.sampled_from([1e30, -1e30, 1e6, -1e6, 2.0, -2.0]))


@settings(FUZZ, max_examples=300)
@given(control=st.sampled_from(["joint", "task"]), weights=st.sampled_from(["random", "nan", "inf", "huge"]),
       decoding=st.sampled_from(DECODING), seed=st.integers(0, 2**16),
       override=st.sampled_from([None, "logits", "action"]), fill=st.lists(adversarial, min_size=1, max_size=8))
def test_command_is_safe_whatever_the_model_outputs(tiny_policies, control, weights, decoding, seed, override, fill):
    """For any weights, logits or actions (NaN, inf, huge), joint or task control and every decoding
    (pac_ros.policy.DECODING), the command is finite, within the joint limits and within max step
    of the current position."""
    policy = tiny_policies[control, weights]
    policy.decoding = decoding
    rng = np.random.default_rng(seed)
    q = rng.uniform(SPEC.lower, SPEC.upper)
    obs = {"joint_positions": q, "instruction": SPEC.instructions()[seed % 6],
           "features": rng.normal(size=SPEC.feature_dim) * 0.2}
    a_dim, bins = policy.control.action_dim, policy.model.config.n_action_bins
    pattern = np.resize(np.array(fill, dtype=np.float64), a_dim * bins)
    try:
        with np.errstate(all="ignore"):
            if override == "logits":
                logits = torch.as_tensor(pattern.reshape(1, a_dim, bins), dtype=torch.float32)
                policy.model.policy_logits = lambda latents: logits
            elif override == "action":
                policy.act_normalized = lambda o: (pattern[:a_dim].copy(), {"value": 0.0, "fallback": False})
            command, _ = policy.act(obs)
    finally:
        policy.model.__dict__.pop("policy_logits", None)
        policy.__dict__.pop("act_normalized", None)
    assert command.shape == (SPEC.action_dim,) and np.all(np.isfinite(command)), command
    assert np.all(command >= SPEC.lower) and np.all(command <= SPEC.upper), command
    assert np.all(np.abs(command - q) <= SPEC.max_step + 1e-9), (command, q)


# ---- 6. bad files ------------------------------------------------------------------------------
def _index_edit(root, edit):
    path = root / "meta" / "episodes.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    edit(lines[1])
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


INDEX_EDITS = {  # an edited line of meta/episodes.jsonl -> what reading or validating it says
    "length": (lambda e: e.update(length=e["length"] + 1), "rows, index says"),
    "sha256": (lambda e: e.update(sha256="0" * 64), "sha256 does not match"),
    "file_outside": (lambda e: e.update(file="../../etc/passwd"), "line 2: bad file path"),
    "file_other": (lambda e: e.update(file="data/chunk-000/episode_000000.parquet"), "sha256 does not match"),
    "episode_index": (lambda e: e.update(episode_index=7), "line 2: episode_index 7 out of order"),
    "return": (lambda e: e.update({"return": 5.0}), "index return 5.0 but the rewards sum to"),
    "success": (lambda e: e.update(success=not e["success"]), "differs from the line"),
    "source": (lambda e: e.update(source="teleop"), "in ['source']"),
    "instruction": (lambda e: e.update(instruction="put the blue block on the red block",
                                       tasks=["put the blue block on the red block"]), "in ['instruction', 'tasks']"),
    "length_type": (lambda e: e.update(length="12"), "line 2: bad length '12'"),
    "missing_key": (lambda e: e.pop("sha256"), "line 2: missing ['sha256']"),
}


@pytest.mark.parametrize("edit", list(INDEX_EDITS))
def test_edited_index_line_is_named(collected_copy, edit):
    change, message = INDEX_EDITS[edit]
    _index_edit(collected_copy, change)
    report = validate(collected_copy)
    text = "\n".join(report.problems)
    assert not report.ok and message in text, text
    assert "episodes.jsonl" in text or "episode_000001.parquet" in text, text


def test_truncated_parquet_episode_is_named(collected_copy):
    """A torn episode file whose index line was 'fixed' to match: unreadable, and said so
    (a torn file with its line intact: test_data.py::test_corrupted_episode_file)."""
    import hashlib

    ds = Dataset(collected_copy)
    path = ds.episode_path(2)
    path.write_bytes(path.read_bytes()[:5000])
    lines = [json.loads(x) for x in (collected_copy / "meta" / "episodes.jsonl").read_text().splitlines()]
    lines[2]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (collected_copy / "meta" / "episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DatasetError, match=f"{re.escape(str(path))}: not a readable parquet file"):
        Dataset(collected_copy).load_episode(2)
    assert any(str(path) in p for p in validate(collected_copy).problems)


@pytest.mark.parametrize("text, message", [
    ("spec:\n  name: x\n  colour: red\n", "unknown field(s) ['colour']"),
    ("spec: {}\n", "missing required field 'name'"),
    ("spec: [1, 2]\n", "expected a mapping, got list"),
    ("control_rate_hz: fast\n", "control_rate_hz: expected a number, got str 'fast'"),
    ("arm_joints: [{name: a, lower: -1, upper: 1, max_step: 0.1, speed: 3}]\n", "unknown field(s) ['speed']"),
    ("cameras: [{name: front, width: '64', height: 64}]\n", "width: expected an integer, got str '64'"),
    ("terminate_on_success: 1\n", "terminate_on_success: expected true/false"),
], ids=["unknown_key", "missing_key", "not_a_mapping", "rate_type", "joint_unknown_key", "width_type", "bool_type"])
def test_spec_yaml_with_unknown_keys_or_wrong_types(tmp_path, text, message):
    """Each names the file, the field and the problem."""
    import yaml

    from pac_ros.spec import Spec, SpecError, default_spec_path

    path = tmp_path / "robot.yaml"
    if text.startswith("spec"):
        path.write_text(text)
    else:  # one field of the shipped spec changed
        data = yaml.safe_load(default_spec_path().read_text())
        data["spec"].update(yaml.safe_load(text))
        path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        Spec.load(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nlearner: {etaa: 1}\n", "learner: unknown key(s) ['etaa']"),
    ("preset: tiny\nrun: {stepz: 5}\n", "run: unknown key(s) ['stepz']"),
    ("preset: huge\n", "unknown preset 'huge'"),
    ("preset: tiny\nlearner: {target_update: soft}\n", "target_update must be 'polyak' or 'hard'"),
    ("preset: tiny\nlearner: [1, 2]\n", "learner: expected a mapping, got list"),
    ("preset: [tiny\n", "not valid YAML"),
    ("preset: tiny\nrun: {steps: ten}\n", "steps"),
    ("preset: tiny\nlearner: {lr: fast}\n", "lr"),
    ("preset: tiny\nmodel: {width: wide}\n", "width"),
], ids=["learner_key", "run_key", "preset", "learner_value", "learner_type", "bad_yaml", "steps_type", "lr_type",
        "width_type"])
def test_training_config_yaml_with_unknown_keys_or_wrong_types(tmp_path, text, message):
    from pac_ros.learning.config import ConfigError, TrainConfig

    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["model_config"].update(colour=1), "unknown model config key(s) ['colour']"),
    (lambda m: m["spec"].update(control_rate_hz="x"), "control_rate_hz: expected a number, got str 'x'"),
    (lambda m: m.update(format="pac_ros.checkpoint/9"), "format 'pac_ros.checkpoint/9'"),
    (lambda m: m["model_config"].update(width="wide"), "width"),
], ids=["unknown_key", "spec_type", "format", "width_type"])
def test_checkpoint_meta_with_unknown_keys_or_wrong_types(tmp_path, edit, message):
    """A checkpoint's meta.json edited: a CheckpointError naming meta.json and the problem
    (damaged weight files: test_policy.py::test_corrupted_checkpoint_is_a_clear_error)."""
    from pac_ros.checkpoint import CheckpointError
    from pac_ros.policy import Policy
    from test_policy_node import make_checkpoint

    path = make_checkpoint(tmp_path / "ckpt") / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        Policy.load(path.parent, device="cpu")
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


class _Payload:
    """Unpickling this creates the marker file: proof that something unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_no_checkpoint_is_ever_unpickled(tmp_path):
    """Pickled checkpoints (.pt, .pkl, or posing as model.safetensors) are refused with an error
    naming the file, and nothing in them runs."""
    import pickle

    from pac_ros.checkpoint import CheckpointError
    from pac_ros.checkpoint import load_model_state
    from pac_ros.policy import Policy
    from test_policy_node import make_checkpoint

    marker = tmp_path / "pwned"
    good = make_checkpoint(tmp_path / "good")
    blob = pickle.dumps(_Payload(marker))
    torch_blob = tmp_path / "evil.pt"
    torch.save(_Payload(marker), torch_blob)
    cases = {}
    only_pickles = tmp_path / "only_pickles"
    only_pickles.mkdir()
    (only_pickles / "model.pt").write_bytes(torch_blob.read_bytes())
    (only_pickles / "model.pkl").write_bytes(blob)
    cases[only_pickles] = "meta.json: missing"
    for name, data in (("pickle", blob), ("torch_save", torch_blob.read_bytes())):
        posing = tmp_path / f"posing_{name}"
        posing.mkdir()
        (posing / "meta.json").write_bytes((good / "meta.json").read_bytes())
        (posing / "model.safetensors").write_bytes(data)
        cases[posing] = "model.safetensors: corrupted or truncated"
    cases[only_pickles / "model.pt"] = "no such checkpoint directory"
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=re.escape(message)) as err:
            Policy.load(path, spec=SPEC, device="cpu")
        assert str(path.parent if path.is_file() else path) in str(err.value)
    for name in ("pickle", "torch_save"):  # without the hash check the safetensors parser refuses it
        with pytest.raises(CheckpointError, match="corrupted or truncated safetensors file"):
            load_model_state(tmp_path / f"posing_{name}", verify=False)
    assert not marker.exists(), "a pickle ran"


def test_source_never_unpickles():
    """No pickle loader anywhere in the package, scripts, benchmarks or launch files; torch.load
    (if ever used) only with weights_only=True; YAML only through safe_load."""
    unsafe = re.compile(r"pickle\.loads?\(|dill\.|joblib\.load|marshal\.loads?\(|torch\.jit\.load|read_pickle|"
                        r"allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|yaml\.full_load|yaml\.Loader|"
                        r"shelve\.open|jsonpickle")
    files = [f for d in ("pac_ros", "scripts", "bench", "launch") for f in (REPO / d).rglob("*.py")]
    assert len(files) > 40
    found = []
    for f in files:
        text = f.read_text()
        found += [f"{f}: {m.group(0)}" for m in unsafe.finditer(text)]
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                found.append(f"{f}: {call}")
    assert not found, found


# ---- 7. clock: sim time jumps back (reset) and pauses ----------------------------------------------
def _shifted(event, dt):
    kind, *args = event
    if kind in ("joints", "image", "poses", "command"):
        msg = args[-1]
        t = stamp_seconds(msg.header.stamp) + dt
        copy = fake_msgs.NS(**vars(msg))
        copy.header = fake_msgs.header(round(t, 9))
        return (kind, *args[:-1], copy)
    return event


def test_recorder_core_splits_at_a_clock_jump_and_rides_out_a_pause():
    """Sim time restarts 50 s earlier in the middle of an episode: the episode is closed at the
    jump and a new one starts, neither mixing the two timelines. A pause (the last messages
    repeated with their stamps, then silence) changes nothing but the late-message count."""
    events = fake_msgs.robot_stream(SPEC, 4, episodes=3, t0=100.0, long=1)
    plain, _ = replay(events)
    starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
    cut = [i for i in range(starts[1], starts[2]) if events[i][0] == "joints"][8]  # the 9th observation
    jumped = events[:cut] + [_shifted(e, -50.0) for e in events[cut:]]
    logs = []
    episodes, core = replay(jumped, log=lambda level, text: logs.append(text))
    assert [e.reason for e in episodes] == [plain[0].reason, "clock jumped backwards", plain[1].reason, plain[2].reason]
    assert any("time jumped back" in text for text in logs)
    t_cut = stamp_seconds(events[cut][1].header.stamp)
    for e in episodes:
        stamps = [s.timestamp for s in e.steps] + ([e.final["timestamp"]] if e.final else [])
        assert np.all(np.diff(stamps) > 0)
        assert all(t < t_cut for t in stamps) or all(t >= t_cut - 50.0 for t in stamps)  # one timeline each
    before, after = episodes[1], episodes[2]
    assert before.final is not None and before.final["timestamp"] < t_cut <= after.steps[0].timestamp + 50.0
    # every step of the plain episode is kept, on one side of the jump or the other; the last
    # observation before the jump ends the first part (its row holds, as an episode's last row does)
    kept = [(s.timestamp, s.action.tobytes()) for s in before.steps] + [(before.final["timestamp"], None)] + \
        [(round(s.timestamp + 50.0, 9), s.action.tobytes()) for s in after.steps]
    whole = [(s.timestamp, s.action.tobytes()) for s in plain[1].steps]
    assert [k[0] for k in kept] == [w[0] for w in whole]
    assert all(k[1] in (None, w[1]) for k, w in zip(kept, whole))

    # a pause: the sim republishes its last messages (same stamps), then goes quiet, then resumes
    paused = events[:cut] + [e for e in events[cut - 12:cut] if e[0] != "instruction"] * 3 + events[cut:]
    episodes, core = replay(paused)
    assert [len(e.steps) for e in episodes] == [len(e.steps) for e in plain]
    assert sum(e.stats.late_messages for e in episodes) > 0
    for e, p in zip(episodes, plain):
        assert [s.timestamp for s in e.steps] == [s.timestamp for s in p.steps]


def test_policy_node_keeps_ticking_after_sim_time_jumps_back_and_pauses(ros, tmp_path):
    """The fake robot's sim time pauses (nothing published for 0.5 s wall), then restarts at 0
    (a reset), then runs on. The node keeps ticking, acts on the new timeline's observations,
    and never on the old ones, even while only the clock comes back."""
    from rosgraph_msgs.msg import Clock

    from pac_ros.nodes import common
    from test_policy_node import run_tick

    policy, robot, ex = _policy_graph(tmp_path)
    try:
        for _ in range(10):
            assert run_tick(ex, robot)["mode"] == "ok"
        end = time.monotonic() + 0.5  # paused: no clock, no sensors
        n = len(robot.status)
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.02)
        assert len(robot.status) == n  # no tick without time passing
        assert run_tick(ex, robot)["mode"] == "ok"  # resumed
        old = robot.t
        robot.t = 0.0  # reset: sim time starts over; first only the clock comes back
        for _ in range(3):
            robot.t = round(robot.t + DT, 9)
            robot.clock.publish(Clock(clock=common.to_stamp(robot.t)))
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                ex.spin_once(timeout_sec=0.01)
        held = [{kv.key: kv.value for kv in s.values} for s in robot.status[n + 1:]]
        assert held and all(s["mode"] == "hold" and "ahead of the clock" in s["reason"] for s in held), held
        assert all(float(s["observation_stamp"]) <= old for s in held)
        for _ in range(3):  # sensors are back, on the new timeline
            status = run_tick(ex, robot)
        assert status["mode"] == "ok" and float(status["observation_stamp"]) == pytest.approx(robot.t)
        stamps = [common.to_sec(m.header.stamp) for m in robot.stamped]
        assert stamps[-1] == pytest.approx(robot.t) and stamps[-1] < old
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


# ---- 8. soak ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_soak_two_minutes_equivalent(ros, tmp_path):
    """bench/soak.py for 2 minutes' worth of 20 Hz ticks (2400): bridge + policy node with the
    shipped model + recorder, one executor. The bridge runs lock-step, so it goes faster than
    real time (about 20-30 s of wall time here). Memory must not grow, ticks must not be missed,
    every finished episode must be committed and the dataset must validate."""
    spec = importlib.util.spec_from_file_location("soak", REPO / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    r = soak.soak(2.0, tmp_path / "ds", rate_hz=20.0, mode="lockstep")
    print(soak.describe(r))
    assert r["ticks"] == 2400 and r["valid"], r
    assert r["rss_growth_mib"] < 30.0, r
    assert r["missed"] <= 2, r  # the first step may come before the policy's first tick
    assert r["committed"] == r["episodes_run"] - 1 >= 5 and r["commit_failures"] == 0, r
    assert r["validated_episodes"] == r["committed"]
