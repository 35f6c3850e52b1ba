"""The policy node against a scripted fake robot (sim time, deterministic), each test on its own domain."""
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402

from pac_ros.checkpoint import checkpoint_meta, save_deployable  # noqa: E402
from pac_ros.learning import Learner, LearnerConfig, save_checkpoint  # noqa: E402
from pac_ros.model import PACModel, preset  # noqa: E402
from pac_ros.model.testing import micro_config, small_spec  # noqa: E402
from pac_ros.nodes import common  # noqa: E402
from pac_ros.nodes.convert import joint_state, numpy_to_image  # noqa: E402
from pac_ros.nodes.policy import PolicyNode  # noqa: E402
from pac_ros.spec import SpecError, default_spec  # noqa: E402

SPEC = default_spec()
DT = SPEC.control_period


def make_checkpoint(path, spec=SPEC, seed=0):
    torch.manual_seed(seed)
    model = PACModel(micro_config(obs_mode="pixels+features"), spec)
    learner = Learner(model, LearnerConfig(amp="none"))
    return save_checkpoint(path, learner, meta=checkpoint_meta(model, "micro", {}, "test"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return make_checkpoint(root / "a", seed=0), make_checkpoint(root / "b", seed=1)


class FakeRobot:
    """Publishes sensors then /clock, one control period at a time, and keeps what the policy says."""

    def __init__(self, image_msg=None, compressed=False):
        """``image_msg(camera, array, stamp)``: the message a camera sends (default: the spec's own)."""
        self.node = rclpy.create_node("fake_robot")
        n = self.node
        self.clock = n.create_publisher(Clock, "/clock", 10)
        suffix, kind = ("/compressed", CompressedImage) if compressed else ("", Image)
        self.images = {c: n.create_publisher(kind, common.CAMERA_TOPIC.format(name=c) + suffix, common.SENSOR_QOS)
                       for c in SPEC.camera_names}
        self.image_msg = image_msg or (lambda cam, array, stamp: numpy_to_image(array, cam.encoding, stamp))
        self.joints = n.create_publisher(JointState, common.JOINT_STATES, common.SENSOR_QOS)
        self.poses = n.create_publisher(PoseArray, common.BLOCK_POSES,
                                        common.SENSOR_QOS)
        n.create_publisher(String, common.INSTRUCTION, common.LATCHED_QOS).publish(
            String(data=SPEC.instructions()[0]))
        self.commands, self.stamped, self.status = [], [], []
        n.create_subscription(Float64MultiArray, common.COMMANDS, self.commands.append, common.RELIABLE_QOS)
        n.create_subscription(JointState, "/policy/command", self.stamped.append, common.RELIABLE_QOS)
        n.create_subscription(DiagnosticStatus, "/pac/status", self.status.append, 10)
        self.q = 0.5 * (SPEC.lower + SPEC.upper)
        self.t = 0.0

    def publish(self, cameras=True, joints=True, joint_msg=None, poses=True):
        self.publish_sensors(cameras, joints, joint_msg, poses)
        time.sleep(0.01)  # let the sensor messages land before the clock moves
        self.publish_clock()

    def publish_sensors(self, cameras=True, joints=True, joint_msg=None, poses=True):
        """The next period's sensor messages (without the clock)."""
        self.t = round(self.t + DT, 9)
        stamp = common.to_stamp(self.t)
        if cameras:
            for cam in SPEC.cameras:
                self.images[cam.name].publish(self.image_msg(cam, np.full(cam.shape, 90, np.uint8), stamp))
        if joints:
            msg = joint_msg or joint_state(SPEC.joint_names, self.q, stamp)
            msg.header.stamp = stamp
            self.joints.publish(msg)
        if poses:
            self.poses.publish(common.block_poses_msg(np.tile([0.4, 0, 0.02, 1, 0, 0, 0], len(SPEC.blocks)), stamp))

    def publish_clock(self):
        self.clock.publish(Clock(clock=common.to_stamp(self.t)))


def run_tick(ex, robot, **kw):
    n = len(robot.status)
    robot.publish(**kw)
    deadline = time.monotonic() + 10
    while len(robot.status) == n:
        assert time.monotonic() < deadline, "policy did not tick"
        ex.spin_once(timeout_sec=0.01)
    for _ in range(5):
        ex.spin_once(timeout_sec=0.005)
    return {kv.key: kv.value for kv in robot.status[-1].values}


def make_graph(checkpoint, robot=None, **params):
    """The policy node, started as the sim graph starts it (autostart, the latched instruction accepted)."""
    params = {"autostart": "true", "accept_latched_instruction": "true", **params}
    args = ["--ros-args", "-p", "use_sim_time:=true", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    policy = PolicyNode(cli_args=args)
    robot = robot or FakeRobot()
    ex = SingleThreadedExecutor()
    ex.add_node(policy)
    ex.add_node(robot.node)
    deadline = time.monotonic() + 5
    while (robot.node.count_subscribers(common.JOINT_STATES) == 0 or policy.count_publishers("/clock") == 0
           or not policy.instruction):
        assert time.monotonic() < deadline
        ex.spin_once(timeout_sec=0.01)
    return policy, robot, ex


def test_acts_once_per_tick_stamped_with_the_observation(ros, checkpoints):
    policy, robot, ex = make_graph(checkpoints[0])
    try:
        for _ in range(6):
            status = run_tick(ex, robot)
        assert status["mode"] == "ok", status
        assert len(robot.commands) == len(robot.stamped) >= 5
        stamps = [common.stamp_seconds(m.header.stamp) for m in robot.stamped]
        assert np.allclose(np.diff(stamps), DT)  # one command per control period, stamped with its observation
        for msg in robot.commands:
            c = np.array(msg.data)
            assert np.all(np.isfinite(c)) and np.all(c >= SPEC.lower) and np.all(c <= SPEC.upper)
            assert np.all(np.abs(c - robot.q) <= SPEC.max_step + 1e-9)
        assert robot.status[-1].hardware_id.startswith("a@")
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_holds_within_a_period_when_the_camera_stops_and_recovers(ros, checkpoints):
    policy, robot, ex = make_graph(checkpoints[0], **{"staleness.image": 0.15})
    try:
        for _ in range(3):
            assert run_tick(ex, robot)["mode"] == "ok"
        acting = np.array(robot.commands[-1].data)
        assert run_tick(ex, robot, cameras=False)["mode"] == "ok"  # one missed frame: still fresh enough
        status = run_tick(ex, robot, cameras=False)  # one period after the first missing frame
        assert status["mode"] == "hold" and "image:front: stale" in status["reason"]
        held = np.array(robot.commands[-1].data)
        assert np.array_equal(held, SPEC.safe_command(policy.last_command, robot.q))
        assert np.all(np.isfinite(held)) and not np.array_equal(acting, np.full_like(acting, np.nan))
        assert run_tick(ex, robot)["mode"] == "ok"  # images are back
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_malformed_joint_state_holds_and_says_why(ros, checkpoints):
    policy, robot, ex = make_graph(checkpoints[0])
    try:
        run_tick(ex, robot)
        bad = joint_state(SPEC.joint_names[:-1], robot.q[:-1])  # the gripper is missing
        status = run_tick(ex, robot, joint_msg=bad)
        assert status["mode"] == "hold" and "lacks joint(s) ['gripper']" in status["reason"]
        nan = joint_state(SPEC.joint_names, np.full(SPEC.action_dim, np.nan))
        status = run_tick(ex, robot, joint_msg=nan)
        assert status["mode"] == "hold" and "non-finite" in status["reason"]
        assert all(np.all(np.isfinite(m.data)) for m in robot.commands)
        assert run_tick(ex, robot)["mode"] == "ok"
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_absurd_model_output_is_clamped(ros, checkpoints):
    policy, robot, ex = make_graph(checkpoints[0])
    try:
        run_tick(ex, robot)
        for absurd in (np.full(SPEC.action_dim, 1e6), np.full(SPEC.action_dim, -1e6),
                       np.array([np.nan, np.inf, -np.inf, 5.0, -5.0, 0.0, 1.0])):
            policy.policy.act = lambda obs, a=absurd: (a.copy(), {"value": 0.0})
            run_tick(ex, robot)
            c = np.array(robot.commands[-1].data)
            assert np.all(np.isfinite(c)) and np.all(c >= SPEC.lower) and np.all(c <= SPEC.upper)
            assert np.all(np.abs(c - robot.q) <= SPEC.max_step + 1e-12)
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_checkpoint_swap_at_run_time_and_bad_checkpoints(ros, checkpoints, tmp_path):
    policy, robot, ex = make_graph(checkpoints[0])
    try:
        run_tick(ex, robot)
        policy.set_parameters([Parameter("checkpoint", value=str(tmp_path / "missing"))])
        deadline = time.monotonic() + 10
        while not policy.load_error:
            assert time.monotonic() < deadline
            ex.spin_once(timeout_sec=0.01)
        assert "missing" in policy.load_error and run_tick(ex, robot)["mode"] == "ok"
        assert robot.status[-1].hardware_id.startswith("a@")  # still the old model
        policy.set_parameters([Parameter("checkpoint", value=str(checkpoints[1]))])
        deadline = time.monotonic() + 10
        while not robot.status or not robot.status[-1].hardware_id.startswith("b@"):
            assert time.monotonic() < deadline, "new checkpoint never took over"
            run_tick(ex, robot)
    finally:
        policy.destroy_node()
        robot.node.destroy_node()
    other = make_checkpoint(tmp_path / "other", spec=small_spec(n_arm=2))
    policy = PolicyNode(cli_args=["--ros-args", "-p", f"checkpoint:={other}", "-p", "device:=cpu",
                                  "-p", "autostart:=true"])
    try:  # configure failed with the reason; the node is up, unconfigured, without a model
        assert isinstance(policy.start_error, SpecError) and "different spec" in str(policy.start_error)
        assert policy.lifecycle_state == "unconfigured" and policy.policy is None
    finally:
        policy.destroy_node()


def test_decoding_auto_follows_each_checkpoint(ros, checkpoints, tmp_path):
    torch.manual_seed(2)
    model = PACModel(micro_config(obs_mode="pixels+features"), SPEC)
    carded = save_checkpoint(tmp_path / "carded", Learner(model, LearnerConfig(amp="none")),
                             meta=checkpoint_meta(model, "micro", {}, "test", decoding="mean"))
    for checkpoint, params, want in ((checkpoints[0], {}, "greedy"), (carded, {}, "mean"),
                                     (carded, {"decoding": "sample", "temperature": 0.5}, "sample"),
                                     (carded, {"decoding": "q_filter", "n_candidates": 4}, "q_filter")):
        policy, robot, _ = make_graph(checkpoint, **params)
        try:
            assert policy.policy.decoding == want
            assert policy.policy.temperature == params.get("temperature", 1.0)
            assert policy.policy.n_candidates == params.get("n_candidates", 16)
        finally:
            policy.destroy_node()
            robot.node.destroy_node()


# ---- a pixels model: cameras + joint states + instruction, as a robot sends them -------------
@pytest.fixture(scope="module")
def pixels_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PACModel(preset("tiny", obs_mode="pixels", image_size=32, control="task"), SPEC)
    return save_deployable(tmp_path_factory.mktemp("pixels") / "tiny", model,
                           meta=checkpoint_meta(model, "tiny", {}, "test"))


@pytest.fixture(scope="module")
def locator_checkpoint(tmp_path_factory):
    """The shipped pixels model's kind: a block locator whose poses feed the block tokens."""
    torch.manual_seed(0)
    model = PACModel(preset("tiny", obs_mode="pixels", image_stem="locator", control="task", n_latents=8,
                            n_self_blocks=1), SPEC)
    return save_deployable(tmp_path_factory.mktemp("locator") / "tiny", model,
                           meta=checkpoint_meta(model, "tiny", {}, "test"))


def padded_bgr8(cam, array, stamp, size=(60, 80), pad=8):
    """A camera that sends bgr8 at 80x60 with 8 padding bytes per row (the spec wants rgb8 64x64)."""
    h, w = size
    ramp = np.linspace(0, 255, w, dtype=np.uint8)
    bgr = np.stack([np.tile(ramp, (h, 1)), np.full((h, w), array.flat[0]), np.tile(ramp[::-1], (h, 1))], axis=2)
    rows = np.concatenate([bgr.reshape(h, -1), np.full((h, pad), 7, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding="bgr8", step=rows.shape[1])
    msg.header.stamp = stamp
    msg.data = rows.tobytes()
    return msg


def shuffled_joints(q, rng):
    """The spec's joints in a random order, with two joints the spec does not have."""
    names = SPEC.joint_names + ["conveyor", "head_pan"]
    values = list(q) + [0.3, -1.2]
    order = rng.permutation(len(names))
    return joint_state([names[i] for i in order], [values[i] for i in order])


@pytest.mark.parametrize("stem", ["patch", "locator"])
def test_pixels_model_acts_on_robot_images_without_block_poses(ros, stem, request):
    checkpoint = request.getfixturevalue("pixels_checkpoint" if stem == "patch" else "locator_checkpoint")
    policy, robot, ex = make_graph(checkpoint, robot=FakeRobot(image_msg=padded_bgr8))
    rng = np.random.default_rng(0)
    try:
        assert policy.policy.model.config.obs_mode == "pixels"
        assert sorted(policy.input_subs) == ["image:front", "image:wrist"]
        assert robot.node.count_subscribers(common.BLOCK_POSES) == 0  # never asks for block poses
        start = robot.q.copy()
        for _ in range(8):
            before = robot.q.copy()
            status = run_tick(ex, robot, joint_msg=shuffled_joints(before, rng), poses=False)
            assert status["mode"] == "ok", status
            c = np.array(robot.commands[-1].data)
            assert np.all(np.isfinite(c)) and np.all(c >= SPEC.lower) and np.all(c <= SPEC.upper)
            assert np.all(np.abs(c - before) <= SPEC.max_step + 1e-9)
            robot.q = c  # a position controller that reaches its target
        assert policy.holds == 0 and np.abs(robot.q - start).max() > 1e-3  # it moved the arm
        front = policy.latest["image:front"][1]
        assert front.shape == (64, 64, 3)  # bgr8 bytes (blue rising, red falling) -> rgb8
        assert front[0, 0, 0] > front[0, -1, 0] and front[0, 0, 2] < front[0, -1, 2]
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_unconvertible_image_holds_with_the_reason(ros, pixels_checkpoint):
    def depth_front(cam, array, stamp):
        if cam.name != "front":
            return padded_bgr8(cam, array, stamp)
        msg = numpy_to_image(np.zeros((60, 80), np.uint16), "16UC1", stamp)
        return msg

    policy, robot, ex = make_graph(pixels_checkpoint)
    try:
        assert run_tick(ex, robot, poses=False)["mode"] == "ok"
        robot.image_msg = depth_front
        status = run_tick(ex, robot, poses=False)
        assert status["mode"] == "hold"
        assert "image:front: malformed: image encoding '16UC1' cannot be converted" in status["reason"]
        held = np.array(robot.commands[-1].data)
        assert np.array_equal(held, SPEC.safe_command(policy.last_command, robot.q)) and np.all(np.isfinite(held))
        robot.image_msg = padded_bgr8
        assert run_tick(ex, robot, poses=False)["mode"] == "ok"  # good images again
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_compressed_transport_and_subscriptions_follow_the_model(ros, pixels_checkpoint, checkpoints):
    def jpeg(cam, array, stamp):
        buf = io.BytesIO()
        PILImage.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(buf, format="JPEG")
        msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
        msg.header.stamp = stamp
        msg.data = buf.getvalue()
        return msg

    policy, robot, ex = make_graph(pixels_checkpoint, robot=FakeRobot(image_msg=jpeg, compressed=True),
                                   image_transport="compressed")
    try:
        assert run_tick(ex, robot, poses=False)["mode"] == "ok"
        assert np.all(np.abs(policy.latest["image:wrist"][1].astype(int) - 120) <= 2)
        # a features model needs block poses: it subscribes to them and holds without them
        policy.set_parameters([Parameter("checkpoint", value=str(checkpoints[0]))])
        deadline = time.monotonic() + 20
        while not robot.status[-1].hardware_id.startswith("a@"):
            assert time.monotonic() < deadline, "the features checkpoint never took over"
            run_tick(ex, robot, poses=False)
        assert "block_poses" in policy.input_subs and robot.node.count_subscribers(common.BLOCK_POSES) == 1
        status = run_tick(ex, robot, poses=False)
        assert status["mode"] == "hold" and status["reason"] == "block_poses: nothing received"
        modes = [run_tick(ex, robot)["mode"] for _ in range(5)]  # the new subscription may miss the first
        assert modes[-1] == "ok", modes
    finally:
        policy.destroy_node()
        robot.node.destroy_node()
