"""In-process rclpy tests of the bridge, expert and recorder nodes (each on its own domain)."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import ros_domain_id  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float32, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from pac_ros.data import Dataset  # noqa: E402
from pac_ros.nodes import common  # noqa: E402
from pac_ros.nodes.convert import image_to_numpy, joint_state, numpy_to_image  # noqa: E402
from pac_ros.nodes.launcher import GraphRunner  # noqa: E402
from pac_ros.nodes.mujoco_bridge import MujocoBridge  # noqa: E402
from pac_ros.nodes.recorder import Recorder  # noqa: E402
from pac_ros.sim.env import StackingEnv  # noqa: E402
from pac_ros.spec import default_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = default_spec()


def ros_args(**params):
    args = ["--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return args


class Probe:
    """A node that keeps every message of the standard topics."""

    def __init__(self):
        self.node = rclpy.create_node("probe")
        self.msgs = {k: [] for k in ("clock", "joints", "reward", "success", "instruction", *SPEC.camera_names)}
        n = self.node
        n.create_subscription(Clock, "/clock", lambda m: self.msgs["clock"].append(m), 100)
        n.create_subscription(JointState, common.JOINT_STATES, lambda m: self.msgs["joints"].append(m),
                              common.SENSOR_QOS)
        n.create_subscription(Float32, common.REWARD, lambda m: self.msgs["reward"].append(m),
                              common.RELIABLE_QOS)
        n.create_subscription(Bool, common.SUCCESS, lambda m: self.msgs["success"].append(m), common.RELIABLE_QOS)
        n.create_subscription(String, common.INSTRUCTION, lambda m: self.msgs["instruction"].append(m),
                              common.LATCHED_QOS)
        for cam in SPEC.camera_names:
            n.create_subscription(Image, common.CAMERA_TOPIC.format(name=cam),
                                  lambda m, c=cam: self.msgs[c].append(m), common.SENSOR_QOS)
        self.commands = n.create_publisher(Float64MultiArray, common.COMMANDS, common.RELIABLE_QOS)


def spin_until(executor, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        executor.spin_once(timeout_sec=0.02)


def test_bridge_publishes_everything_under_sim_time(ros):
    bridge = MujocoBridge(cli_args=ros_args(mode="realtime", real_time_factor=4.0, seed=3))
    probe = Probe()
    ex = SingleThreadedExecutor()
    ex.add_node(bridge)
    ex.add_node(probe.node)
    try:
        spin_until(ex, lambda: len(probe.msgs["clock"]) >= 20 and probe.msgs["instruction"], timeout=20)
        clocks = np.array([common.stamp_seconds(m.clock) for m in probe.msgs["clock"]])
        steps = np.diff(clocks)
        np.testing.assert_allclose(steps[steps > 0], SPEC.control_period, rtol=1e-6)
        assert np.all(steps >= 0), "sim time went backwards"
        for key in ("joints", "reward", "success", *SPEC.camera_names):
            assert len(probe.msgs[key]) >= 10, key
        joint = probe.msgs["joints"][-1]
        assert list(joint.name) == SPEC.joint_names
        assert common.stamp_seconds(joint.header.stamp) <= clocks[-1] + 1e-9
        image = image_to_numpy(probe.msgs["front"][-1])
        assert image.shape == SPEC.cameras[0].shape and image.dtype == np.uint8
        assert probe.msgs["instruction"][0].data in SPEC.instructions()
        assert probe.node.count_publishers(common.BLOCK_POSES) == 1  # publish_block_poses defaults to true
    finally:
        bridge.destroy_node()
        probe.node.destroy_node()


def test_bridge_speaks_like_a_robots_drivers(ros):
    """/joint_states reliable (a default-QoS subscriber receives, and so does a best-effort one);
    each camera's CameraInfo beside its images, in the camera's optical frame."""
    bridge = MujocoBridge(cli_args=ros_args(mode="realtime", real_time_factor=4.0, seed=3))
    node = rclpy.create_node("driver_probe")
    got = {k: [] for k in ("reliable", "best_effort", *SPEC.camera_names, *(f"{c}_info" for c in SPEC.camera_names))}
    node.create_subscription(JointState, "/joint_states", got["reliable"].append, 10)  # default QoS: reliable
    node.create_subscription(JointState, "/joint_states", got["best_effort"].append, common.SENSOR_QOS)
    for cam in SPEC.camera_names:
        node.create_subscription(Image, f"/camera/{cam}/image_raw", got[cam].append, common.SENSOR_QOS)
        node.create_subscription(CameraInfo, f"/camera/{cam}/camera_info", got[f"{cam}_info"].append,
                                 common.SENSOR_QOS)
    ex = SingleThreadedExecutor()
    ex.add_node(bridge)
    ex.add_node(node)
    try:
        spin_until(ex, lambda: all(len(v) >= 5 for v in got.values()), timeout=20)
        offered = node.get_publishers_info_by_topic("/joint_states")
        assert [i.qos_profile.reliability for i in offered] == [ReliabilityPolicy.RELIABLE]
        for cam in SPEC.cameras:
            info, image = got[f"{cam.name}_info"][-1], got[cam.name][-1]
            frame = f"{cam.name}_camera_optical_frame"
            assert info.header.frame_id == image.header.frame_id == frame
            assert (info.width, info.height) == (image.width, image.height) == (cam.width, cam.height)
            stamps = {common.stamp_seconds(m.header.stamp) for m in got[cam.name]}
            assert common.stamp_seconds(info.header.stamp) in stamps
            K = bridge.env.camera_matrix(cam.name, cam.width, cam.height)
            np.testing.assert_allclose(np.reshape(info.k, (3, 3)), K)
            np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], K)
            assert info.distortion_model == "plumb_bob" and not any(info.d)
    finally:
        bridge.destroy_node()
        node.destroy_node()


def test_bridge_topics_follow_its_namespace(ros):
    bridge = MujocoBridge(cli_args=["--ros-args", "-r", "__ns:=/arm1", "-p", "mode:=lockstep"])
    try:
        topics = dict(bridge.get_topic_names_and_types())
        for topic in ("/arm1/joint_states", "/arm1/camera/front/image_raw", "/arm1/camera/front/camera_info",
                      "/arm1/instruction", "/clock"):
            assert topic in topics, (topic, sorted(topics))
        assert "/joint_states" not in topics
    finally:
        bridge.destroy_node()


def test_bridge_moves_toward_command_rejects_bad_ones_and_resets_seeded(ros):
    bridge = MujocoBridge(cli_args=ros_args(mode="lockstep", seed=11, lockstep_timeout=5.0))
    probe = Probe()
    client = probe.node.create_client(Trigger, "/mujoco_bridge/reset")
    ex = SingleThreadedExecutor()
    ex.add_node(bridge)
    ex.add_node(probe.node)
    try:
        spin_until(ex, lambda: probe.msgs["joints"])
        start = np.array(probe.msgs["joints"][-1].position)
        target = start.copy()
        target[0] += 0.3  # three ticks of max_step away
        target[-1] = SPEC.gripper.lower
        for _ in range(8):
            n = len(probe.msgs["joints"])
            probe.commands.publish(Float64MultiArray(data=[float(v) for v in target]))
            spin_until(ex, lambda: len(probe.msgs["joints"]) > n)
        reached = np.array(probe.msgs["joints"][-1].position)
        assert abs(reached[0] - target[0]) < 0.03, (reached, target)
        assert reached[-1] < 0.5 * (start[-1] + SPEC.gripper.lower) + 1e-3
        # malformed commands: logged and ignored, the node keeps stepping on the last good one
        before = bridge.rejected
        for bad in ([0.0] * 3, [math.nan] * SPEC.action_dim, [math.inf] * SPEC.action_dim):
            probe.commands.publish(Float64MultiArray(data=bad))
        spin_until(ex, lambda: bridge.rejected >= before + 3)
        assert np.all(np.isfinite(bridge.command))
        # reset with a new seed gives exactly the seeded initial state
        bridge.set_parameters([rclpy.parameter.Parameter("seed", value=77)])
        n = len(probe.msgs["joints"])
        future = client.call_async(Trigger.Request())
        spin_until(ex, lambda: future.done() and len(probe.msgs["joints"]) > n)
        assert future.result().success
        env = StackingEnv(SPEC, render=False)
        expected = env.reset(seed=77)
        env.close()
        np.testing.assert_allclose(probe.msgs["joints"][-1].position, expected["joint_positions"], atol=1e-12)
        np.testing.assert_allclose(bridge.env.features(), expected["features"], atol=1e-12)
        assert probe.msgs["instruction"][-1].data == expected["instruction"]
    finally:
        bridge.destroy_node()
        probe.node.destroy_node()


def test_expert_through_ros_is_recorded(ros, tmp_path):
    runner = GraphRunner("stacking", "expert", [f"recorder.dataset={tmp_path / 'ds'}", "mujoco_bridge.seed=5"])
    recorder = runner.nodes["recorder"]
    try:
        assert runner.spin(until=lambda: len(recorder.committed) >= 2, timeout=60)
        recorder.flush()
    finally:
        runner.close()
    ds = Dataset(tmp_path / "ds", SPEC)
    assert len(ds) >= 2
    for meta in ds.episodes[:2]:
        assert meta["success"] and meta["source"] == "expert"
        assert meta["dropped"] == 0
        episode = ds.load_episode(meta["episode_index"])
        assert episode.is_last[-1] and episode.is_terminal[-1] and not episode.is_last[:-1].any()
        assert episode.rewards[:-1].sum() == 1.0 and episode.rewards[-2] == 1.0
        assert np.all(np.diff(episode.timestamp) > 0)
        # each command was computed from its row's observation: within max_step of it
        assert np.all(np.abs(episode.actions[:-1] - episode.joint_positions[:-1]) <= SPEC.max_step + 1e-5)
    # the second episode starts right at the bridge's reset: its first row is seed 6's initial state
    env = StackingEnv(SPEC, render=False)
    initial = env.reset(seed=6)
    env.close()
    second = ds.load_episode(1)
    assert ds.episodes[1]["instruction"] == initial["instruction"]
    np.testing.assert_allclose(second.joint_positions[0], initial["joint_positions"], atol=1e-6)
    np.testing.assert_allclose(second.features[0], initial["features"], atol=1e-6)


def test_pixels_policy_on_a_bridge_without_block_poses_is_recorded_without_them(ros, tmp_path):
    import torch

    from pac_ros.checkpoint import checkpoint_meta, save_deployable
    from pac_ros.data.validate import validate
    from pac_ros.learning.data import TransitionStore
    from pac_ros.model import PACModel, preset

    torch.manual_seed(0)
    model = PACModel(preset("tiny", obs_mode="pixels", image_size=32, control="task"), SPEC)
    checkpoint = save_deployable(tmp_path / "pixels", model, meta=checkpoint_meta(model, "tiny", {}, "test"))
    runner = GraphRunner("stacking", "policy", [f"recorder.dataset={tmp_path / 'ds'}", "recorder.max_steps=4",
                                                "mujoco_bridge.publish_block_poses=false",
                                                f"policy.checkpoint={checkpoint}", "policy.device=cpu"])
    recorder = runner.nodes["recorder"]
    try:
        assert recorder.count_publishers(common.BLOCK_POSES) == 0
        assert recorder.count_subscribers(common.BLOCK_POSES) == 1  # the recorder would take them
        assert runner.spin(until=lambda: len(recorder.committed) >= 1, timeout=60)
        recorder.flush()
        assert recorder.num_episodes >= 1
    finally:
        runner.close()
    ds = Dataset(tmp_path / "ds", SPEC)
    episode = ds.load_episode(0)
    assert not ds.has_features and episode.features is None and len(episode.timestamp) >= 2
    assert ds.episodes[0]["source"] == "policy" and ds.episodes[0]["checkpoint"].startswith("pixels@")
    report = validate(tmp_path / "ds")
    assert report.episodes >= 1 and not report.problems, report.problems
    with pytest.raises(ValueError, match="needs block features; dataset .* was recorded without them"):
        TransitionStore(ds, preset("tiny", obs_mode="features"), gamma=0.99)


def test_graph_runner_reports_a_policy_that_cannot_configure(ros, tmp_path):
    """The sim graph autostarts the managed policy node; a failed configure is the launcher's error."""
    from pac_ros.checkpoint import CheckpointError

    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(CheckpointError, match="no_such_checkpoint: no such checkpoint directory"):
        GraphRunner("stacking", "policy", [f"recorder.dataset={tmp_path / 'ds'}", f"policy.checkpoint={missing}",
                                           "policy.device=cpu"])


def test_recorder_pairs_poses_as_its_dataset_or_the_graph_says(ros, tmp_path):
    from geometry_msgs.msg import PoseArray

    from pac_ros.data import DatasetWriter
    from pac_ros.data.recording import FinishedEpisode, RecordingStats, Step

    for name, features in (("with", True), ("without", False)):
        DatasetWriter(tmp_path / name, SPEC, features=features).close()
    publisher = rclpy.create_node("pose_source")
    recorders = {name: Recorder(cli_args=ros_args(dataset=str(tmp_path / name))) for name in ("with", "without", "new")}
    try:
        assert recorders["new"].writer is None and recorders["new"].num_episodes == 0
        assert [r._record_poses() for r in recorders.values()] == [True, False, False]  # nobody publishes poses
        publisher.create_publisher(PoseArray, common.BLOCK_POSES, common.SENSOR_QOS)
        assert [r._record_poses() for r in recorders.values()] == [True, False, True]
        # an episode without poses cannot go into a dataset that stores them: logged, not committed
        q = 0.5 * (SPEC.lower + SPEC.upper)
        step = Step(1.0, q, {c.name: np.zeros(c.shape, np.uint8) for c in SPEC.cameras}, q, None,
                    SPEC.instructions()[0])
        episode = FinishedEpisode([step], None, False, False, "test", RecordingStats(), "expert", None)
        assert recorders["with"]._commit(episode) is None and recorders["with"].failed == 1
        assert recorders["without"]._commit(episode) == 0
    finally:
        for recorder in recorders.values():
            recorder.destroy_node()
        publisher.destroy_node()


def test_recorder_rejects_malformed_input_and_keeps_running(ros, tmp_path):
    recorder = Recorder(cli_args=ros_args(dataset=str(tmp_path / "ds"), record_features=False))
    pub_node = rclpy.create_node("fuzzer")
    ex = SingleThreadedExecutor()
    ex.add_node(recorder)
    ex.add_node(pub_node)
    image_pub = pub_node.create_publisher(Image, "/camera/front/image_raw", common.SENSOR_QOS)
    joint_pub = pub_node.create_publisher(JointState, common.JOINT_STATES, common.SENSOR_QOS)
    try:
        time.sleep(0.2)
        bad_images = [
            numpy_to_image(np.zeros((64, 64), np.uint16), "16UC1"),  # an encoding no camera image has
        ]
        short = numpy_to_image(np.zeros((64, 64, 3), np.uint8), "rgb8")
        short.data = bytes(100)  # fewer bytes than height*step
        bad_images.append(short)
        broken = numpy_to_image(np.zeros((64, 64, 3), np.uint8), "rgb8")
        broken.step = 10  # step too small
        bad_images.append(broken)
        bad_joints = [
            joint_state(["nope"], [0.0]),  # missing joints
            joint_state(SPEC.joint_names, [math.nan] * SPEC.action_dim),  # NaN positions
            joint_state(SPEC.joint_names + ["elbow"], [0.0] * (SPEC.action_dim + 1)),  # duplicated name
        ]
        spin_until(ex, lambda: pub_node.count_subscribers("/camera/front/image_raw") > 0)
        for msg in bad_images:
            image_pub.publish(msg)
        for msg in bad_joints:
            joint_pub.publish(msg)
        spin_until(ex, lambda: recorder.rejected >= len(bad_images) + len(bad_joints))
        assert recorder.assembler.newest_stamp is None  # nothing malformed got in
    finally:
        recorder.destroy_node()
        pub_node.destroy_node()


@pytest.mark.slow
def test_sigkill_of_recording_process_loses_no_committed_episode(tmp_path):
    dataset = tmp_path / "ds"
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain_id()), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pac_ros.cli", "launch", "stacking", "--driver", "expert",
           "-p", f"recorder.dataset={dataset}",
           "-p", "expert.quality=noisy"]
    index = dataset / "meta" / "episodes.jsonl"
    for kill_after in (1, 3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                lines = index.read_text().count("\n") if index.exists() else 0
                if lines >= kill_after:
                    break
                time.sleep(0.05)
            assert lines >= kill_after, "recorder committed too few episodes"
            time.sleep(0.3)  # land somewhere inside the next episode
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        ds = Dataset(dataset, SPEC)
        assert len(ds) >= kill_after
        for meta in ds.episodes:
            episode = ds.load_episode(meta["episode_index"])  # verifies the file's sha256
            assert len(episode.timestamp) == meta["length"]


def test_private_domain_is_the_users_or_never_the_default(monkeypatch):
    from pac_ros.nodes.common import private_domain_id

    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert private_domain_id() == 42
    monkeypatch.delenv("ROS_DOMAIN_ID")
    assert 1 <= private_domain_id() <= 100


def test_recorder_reads_joint_states_under_the_robots_own_names(ros, tmp_path):
    ur = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
          "wrist_3_joint", "finger_joint"]
    name_map = [f"{robot}:{spec}" for robot, spec in zip(ur, SPEC.joint_names)]
    recorder = Recorder(cli_args=["--ros-args", "-p", f"dataset:={tmp_path / 'ds'}", "-p", "record_features:=false",
                                  "-p", f"joint_name_map:={name_map}".replace("'", '"')])
    try:
        assert recorder.core.joint_names == ur
        q = np.linspace(-0.5, 0.5, SPEC.action_dim)
        q[-1] = 0.02
        order = [3, 0, 6, 1, 5, 2, 4]  # shuffled, with two joints the spec does not have
        robot_msg = joint_state([ur[i] for i in order] + ["base_joint", "camera_tilt"],
                                [q[i] for i in order] + [0.1, 0.2])
        recorder.core.on_joint_state(robot_msg, 1.0)
        assert recorder.rejected == 0
        recorder.core.on_joint_state(joint_state(SPEC.joint_names, q), 1.1)  # spec names: the robot has none
        assert recorder.rejected == 1
    finally:
        recorder.destroy_node()
    with pytest.raises(ValueError, match="spec has no joint 'knee'"):
        Recorder(cli_args=["--ros-args", "-p", f"dataset:={tmp_path / 'ds2'}", "-p",
                           'joint_name_map:=["knee_joint:knee"]'])


def test_bridge_takes_joint_trajectories_and_rejects_a_wrong_joint_count(ros):
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    bridge = MujocoBridge(cli_args=ros_args(mode="lockstep", command_type="joint_trajectory", render=False))
    try:
        start = bridge.command.copy()
        names = list(SPEC.joint_names)
        target = start.copy()
        target[0] += 0.05
        order = [6, 2, 0, 4, 1, 5, 3]  # a controller's own joint order
        good = JointTrajectory(joint_names=[names[i] for i in order],
                               points=[JointTrajectoryPoint(positions=[float(target[i]) for i in order])])
        bridge._on_joint_trajectory(good)
        assert bridge.rejected == 0 and np.allclose(bridge.command[0], target[0])
        short = JointTrajectory(joint_names=names[:5], points=[JointTrajectoryPoint(positions=[0.0] * 5)])
        mismatched = JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(positions=[0.0] * 3)])
        for bad in (short, mismatched, JointTrajectory(joint_names=names)):
            bridge._on_joint_trajectory(bad)
        assert bridge.rejected == 3 and np.allclose(bridge.command[0], target[0])  # held the last good one
    finally:
        bridge.destroy_node()


def test_bridge_streams_switch_at_run_time_and_an_operators_instruction_retargets(ros):
    bridge = MujocoBridge(cli_args=ros_args(mode="lockstep", seed=5, lockstep_timeout=0.05))
    probe = Probe()
    poses = []
    probe.node.create_subscription(PoseArray, common.BLOCK_POSES, poses.append, common.SENSOR_QOS)
    operator = probe.node.create_publisher(String, common.INSTRUCTION, common.LATCHED_QOS)
    ex = SingleThreadedExecutor()
    ex.add_node(bridge)
    ex.add_node(probe.node)
    try:
        spin_until(ex, lambda: len(probe.msgs["joints"]) >= 3 and poses)
        off = [rclpy.parameter.Parameter(n, value=False) for n in ("publish_images", "publish_block_poses")]
        assert all(r.successful for r in bridge.set_parameters(off))
        n = len(probe.msgs["joints"])
        spin_until(ex, lambda: len(probe.msgs["joints"]) >= n + 2)  # what was on its way has arrived
        images, n_poses, n = len(probe.msgs["front"]), len(poses), len(probe.msgs["joints"])
        assert images > 0
        spin_until(ex, lambda: len(probe.msgs["joints"]) >= n + 5)
        assert (len(probe.msgs["front"]), len(poses)) == (images, n_poses)  # joints go on, the cameras stopped
        assert not bridge.set_parameters([rclpy.parameter.Parameter("publish_images", value="no")])[0].successful
        bridge.set_parameters([rclpy.parameter.Parameter("publish_images", value=True)])
        spin_until(ex, lambda: len(probe.msgs["front"]) > images)
        # an operator's new instruction: same blocks, the reward follows the new pair
        before = bridge.env.features().copy()
        other = next(i for i in SPEC.instructions() if i != bridge.env.instruction)
        operator.publish(String(data=other))
        spin_until(ex, lambda: bridge.env.instruction == other)
        assert bridge.env.target_pair == SPEC.parse_instruction(other) and bridge.episode == 1
        np.testing.assert_allclose(bridge.env.features()[:3], before[:3], atol=0.01)
        operator.publish(String(data="juggle the blocks"))  # not this task's: ignored, the task stays
        spin_until(ex, lambda: len(probe.msgs["joints"]) >= n + 15)
        assert bridge.env.instruction == other
    finally:
        bridge.destroy_node()
        probe.node.destroy_node()
