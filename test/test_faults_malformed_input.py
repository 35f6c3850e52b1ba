"""Malformed input fuzz (Hypothesis) into the policy node, the recorder core and the bridge: nothing raises,
every command is finite, within the limits and a max step of the position, and every episode validates."""
from __future__ import annotations

import fake_msgs
import numpy as np
import pytest
import torch
from fault_helpers import FUZZ, SPEC, replay, values
from hypothesis import given, settings
from hypothesis import strategies as st

from pac_ros.data import DatasetWriter
from pac_ros.data.recording import commit_episode
from pac_ros.data.validate import validate

# Hypothesis draws recipes of messages, plausible and malformed (wrong encodings, sizes and
# steps, NaN/inf/huge values, empty and huge arrays, unknown and duplicated joint names, odd
# stamps); stand-in messages are built from them (the readers read fields by name).
NOW = 100.0  # the fuzzed nodes' clock
FUZZED: dict[str, int] = {}  # messages fed, per target
NAMES = SPEC.joint_names

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
        data = (np.full(n, draw(values)) if n > 20
                else [float(v) for v in draw(st.lists(values, min_size=n, max_size=n))])
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
    from test_policy_node import make_checkpoint

    from pac_ros.nodes import common
    from pac_ros.nodes.policy import PolicyNode

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
    acted, streams = [0], [0]
    plausible = SPEC.plausible_positions()

    @settings(FUZZ, max_examples=200)
    @given(st.lists(sensor_msgs, min_size=15, max_size=30))
    def run(messages):
        node.latest.clear(), node.malformed.clear(), node.arrived.clear()
        node.instruction, node.last_command, node.last_answered = "", None, None
        streams[0] += 1
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
    assert streams[0] >= 150 and FUZZED["policy"] >= 15 * streams[0], (FUZZED, streams)
    assert acted[0] >= 20  # the model did act between malformed inputs (47-100 seen, with test order)
    print(f"policy node: {FUZZED['policy']} messages, {acted[0]} ticks acted")


@pytest.mark.slow
def test_fuzz_recorder_core(tmp_path):
    """Malformed messages mixed into a robot's well-formed stream, through RecorderCore: nothing
    raises, and every episode it hands over commits into a dataset that validates."""
    writer = DatasetWriter(tmp_path / "ds", SPEC, features=True)
    FUZZED["recorder"] = 0
    counts = {"episodes": 0, "rejected": 0, "streams": 0}
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
        counts["streams"] += 1
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
    # how many examples Hypothesis runs depends on what it generated before: bound what it must
    assert counts["streams"] >= 120 and FUZZED["recorder"] >= 15 * counts["streams"], (FUZZED, counts)
    assert counts["episodes"] > 100, counts
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
