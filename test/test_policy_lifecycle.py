"""The policy node's lifecycle, parameters and ros2_control outputs, against the scripted fake robot."""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from test_policy_node import DT, SPEC, FakeRobot, make_checkpoint, run_tick  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from pac_ros.nodes import common  # noqa: E402
from pac_ros.nodes.convert import joint_state  # noqa: E402
from pac_ros.nodes.policy import PolicyNode  # noqa: E402

UR = [f"{n}_joint" for n in ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")]
FINGER = "finger_joint"
GRIPPER_TOPIC = "/gripper_controller/commands"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "a")


def managed(checkpoint, robot=None, **params):
    """A policy node left unconfigured (no autostart), the fake robot, their executor."""
    args = ["--ros-args", "-p", "use_sim_time:=true", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    policy = PolicyNode(cli_args=args)
    robot = robot or FakeRobot()
    robot.diagnostics = []
    robot.node.create_subscription(DiagnosticArray, "/diagnostics", robot.diagnostics.append, 10)
    robot.say = robot.node.create_publisher(String, common.INSTRUCTION, common.LATCHED_QOS)
    ex = SingleThreadedExecutor()
    ex.add_node(policy)
    ex.add_node(robot.node)
    return policy, robot, ex


def spin_until(ex, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        ex.spin_once(timeout_sec=0.01)


def call(ex, node, srv_type, name, request):
    client = node.create_client(srv_type, name)
    spin_until(ex, client.service_is_ready)
    future = client.call_async(request)
    spin_until(ex, future.done)
    node.destroy_client(client)
    return future.result()


def change_state(ex, robot, transition_id) -> bool:
    return call(ex, robot.node, ChangeState, "/policy/change_state",
                ChangeState.Request(transition=Transition(id=transition_id))).success


def say(ex, robot, policy, text=SPEC.instructions()[1]):
    robot.say.publish(String(data=text))
    spin_until(ex, lambda: policy.instruction == text)


def test_lifecycle_no_command_before_activation_hold_on_deactivation(ros, checkpoint):
    policy, robot, ex = managed(checkpoint)
    try:
        assert policy.lifecycle_state == "unconfigured" and policy.policy is None
        assert policy.trigger_activate() != TransitionCallbackReturn.SUCCESS  # no model: stays unconfigured
        assert policy.lifecycle_state == "unconfigured"
        assert change_state(ex, robot, Transition.TRANSITION_CONFIGURE)  # through the lifecycle service
        state = call(ex, robot.node, GetState, "/policy/get_state", GetState.Request()).current_state
        assert state.label == "inactive" and policy.policy is not None
        for _ in range(3):
            assert run_tick(ex, robot)["mode"] == "inactive"
        # active, but the only instruction was published before activation (accept_latched_instruction false)
        assert policy.instruction and change_state(ex, robot, Transition.TRANSITION_ACTIVATE)
        for _ in range(3):
            assert run_tick(ex, robot)["mode"] == "waiting"
        assert robot.commands == [] and robot.stamped == []  # never moved
        say(ex, robot, policy)
        for _ in range(3):
            assert run_tick(ex, robot)["mode"] == "ok"
            measured, robot.q = robot.q, np.array(robot.commands[-1].data)
        acted = len(robot.commands)
        assert acted == 3 and len(robot.stamped) == 3
        last = np.array(robot.commands[-1].data)
        # deactivate: one hold, the arm at its measured position and the gripper at its last target
        assert policy.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        spin_until(ex, lambda: len(robot.commands) == acted + 1)
        held = np.array(robot.commands[-1].data)
        assert np.array_equal(held[:-1], measured[:-1]) and held[-1] == last[-1]
        for _ in range(3):
            assert run_tick(ex, robot)["mode"] == "inactive"
        assert len(robot.commands) == acted + 1  # nothing while inactive
        # activate again: a new instruction is needed, then commands resume
        assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert run_tick(ex, robot)["mode"] == "waiting" and len(robot.commands) == acted + 1
        say(ex, robot, policy, SPEC.instructions()[2])
        assert run_tick(ex, robot)["mode"] == "ok" and len(robot.commands) == acted + 2
        levels = {s.values[0].value: s.level for a in robot.diagnostics for s in a.status}
        assert levels["ok"] == levels["inactive"] == b"\x00" and levels["waiting"] == b"\x01"
        assert {kv.key for kv in robot.diagnostics[-1].status[0].values} == {kv.key for kv in robot.status[-1].values}
        # deactivate and clean up: everything released
        assert change_state(ex, robot, Transition.TRANSITION_DEACTIVATE)
        assert change_state(ex, robot, Transition.TRANSITION_CLEANUP)
        assert policy.lifecycle_state == "unconfigured" and policy.policy is None and policy.timer is None
        assert robot.node.count_subscribers(common.JOINT_STATES) == 0
        assert robot.node.count_publishers(common.COMMANDS) == 0
        assert change_state(ex, robot, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert policy.lifecycle_state == "finalized"
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def test_configure_fails_with_the_reason_and_parameters_are_checked(ros, checkpoint, tmp_path):
    missing = tmp_path / "missing"
    policy, robot, ex = managed(missing)
    try:
        assert not change_state(ex, robot, Transition.TRANSITION_CONFIGURE)
        assert policy.lifecycle_state == "unconfigured" and str(missing) in str(policy.start_error)
        spin_until(ex, lambda: robot.diagnostics)
        status = robot.diagnostics[-1].status[0]
        assert status.level == b"\x02" and status.message.startswith("configure failed")
        assert str(missing) in status.message
        # configure-time parameters may change while unconfigured; a joint map that does not fit fails configure
        for bad, why in ((["gripper:elbow"], "would stand for more than one spec joint"),
                         (["x:nope"], "the spec has no joint 'nope'")):
            assert policy.set_parameters([Parameter("checkpoint", value=str(checkpoint)),
                                          Parameter("joint_name_map", value=bad)])[0].successful
            assert policy.trigger_configure() != TransitionCallbackReturn.SUCCESS and why in str(policy.start_error)
        policy.set_parameters([Parameter("joint_name_map", value=["pan:shoulder_pan"]),
                               Parameter("controller_joints", value=["pan"])])
        assert policy.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert "controller_joints has 1 joints, the arm controller takes 7" in str(policy.start_error)
        policy.set_parameters([Parameter("controller_joints", value=["pan"] + SPEC.joint_names[1:])])
        assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS and policy.start_error is None
        assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
        # out of range, read-only, an unknown choice, a configure-time change while active: rejected with a reason
        for name, value, reason in (("staleness.image", -1.0, "out of range"), ("threads", -2, "out of range"),
                                    ("autostart", True, "read-only"), ("hold", "drift", "must be one of"),
                                    ("command_interface", "trajectory", "takes effect at configure"),
                                    ("checkpoint", "", "must not be empty")):
            result = policy.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        assert policy.set_parameters([Parameter("staleness.image", value=0.5)])[0].successful
        assert policy.get_parameter("staleness.image").value == 0.5
        assert policy.describe_parameter("staleness.image").floating_point_range[0].to_value == 60.0
        assert policy.describe_parameter("spec_file").read_only
    finally:
        policy.destroy_node()
        robot.node.destroy_node()


def yaml_list(items):
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"  # quoted: 'a:b' is not a YAML mapping


def robot_joints(q, rng, missing=()):
    """The robot's /joint_states: UR names, shuffled, with joints the spec does not have."""
    names = UR + [FINGER, "conveyor", "head_pan"]
    values = list(q) + [0.3, -1.2]
    order = [i for i in rng.permutation(len(names)) if names[i] not in missing]
    return joint_state([names[i] for i in order], [values[i] for i in order])


def test_robot_names_trajectory_controller_and_gripper_controller(ros, checkpoint):
    controller = [UR[i] for i in (2, 0, 5, 1, 4, 3)]
    name_map = [f"{robot}:{spec}" for robot, spec in zip(UR + [FINGER], SPEC.joint_names)]
    policy, robot, ex = managed(checkpoint, command_interface="trajectory", gripper_command_topic=GRIPPER_TOPIC,
                                joint_name_map=yaml_list(name_map), controller_joints=yaml_list(controller),
                                autostart="true")
    trajectories, gripper = [], []
    robot.node.create_subscription(JointTrajectory, common.TRAJECTORY, trajectories.append, common.RELIABLE_QOS)
    robot.node.create_subscription(Float64MultiArray, GRIPPER_TOPIC, gripper.append, common.RELIABLE_QOS)
    rng = np.random.default_rng(0)
    try:
        assert policy.lifecycle_state == "active"
        spin_until(ex, lambda: robot.node.count_subscribers(common.JOINT_STATES) == 1)
        say(ex, robot, policy)
        for tick in range(6):
            before = robot.q.copy()
            status = run_tick(ex, robot, joint_msg=robot_joints(before, rng))
            assert status["mode"] == "ok", status
            msg = trajectories[-1]
            assert list(msg.joint_names) == controller and len(msg.points) == 1
            point = msg.points[0]
            assert (point.time_from_start.sec, point.time_from_start.nanosec) == (0, int(DT * 1e9))
            arm = dict(zip(msg.joint_names, point.positions))
            command = np.array([arm[n] for n in UR] + [gripper[-1].data[0]])  # back in spec order
            assert len(gripper[-1].data) == 1
            assert np.all(command >= SPEC.lower) and np.all(command <= SPEC.upper)
            assert np.all(np.abs(command - before) <= SPEC.max_step + 1e-9)
            stamped = robot.stamped[-1]  # the recorder's copy stays in spec names and order
            assert list(stamped.name) == SPEC.joint_names and np.allclose(stamped.position, command)
            robot.q = command
        assert robot.commands == []  # nothing on the forward controller's topic
        assert np.abs(robot.q - 0.5 * (SPEC.lower + SPEC.upper)).max() > 1e-3
        # a robot joint state without a mapped joint: hold, naming the robot's joint
        status = run_tick(ex, robot, joint_msg=robot_joints(robot.q, rng, missing=("elbow_joint",)))
        assert status["mode"] == "hold" and "lacks joint(s) ['elbow_joint']" in status["reason"]
        status = run_tick(ex, robot)  # spec names are not the robot's
        assert status["mode"] == "hold" and "lacks joint(s) ['shoulder_pan_joint'" in status["reason"]
        assert run_tick(ex, robot, joint_msg=robot_joints(robot.q, rng))["mode"] == "ok"
    finally:
        policy.destroy_node()
        robot.node.destroy_node()
