"""What every pac_ros node shares: topic names, QoS profiles, stamps, the spec parameter."""
from __future__ import annotations

import os

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from pac_ros import topics
from pac_ros.data.messages import block_poses_array, stamp_seconds  # noqa: F401  (re-exported for the nodes)
from pac_ros.spec import POSE_NAMES, Spec, default_spec
from pac_ros.topics import CAMERA_FRAME, DIAGNOSTICS, STAMPED_COMMAND, camera_info_topic  # noqa: F401  (re-exported)


def relative(topic: str) -> str:
    return topic.lstrip("/")


# The nodes' default topic names are relative, so a namespace (`namespace:=arm1` of the launch files,
# `--ros-args -r __ns:=/arm1`) moves them all; without one they resolve to pac_ros.topics' absolute names.
# /clock and /diagnostics (what a diagnostic aggregator reads) stay global.
BLOCK_POSES = relative(topics.BLOCK_POSES)
CAMERA_TOPIC = relative(topics.CAMERA_TOPIC)
COMMANDS = relative(topics.COMMANDS)
INSTRUCTION = relative(topics.INSTRUCTION)
JOINT_STATES = relative(topics.JOINT_STATES)
REWARD = relative(topics.REWARD)
STATUS = relative(topics.STATUS)
SUCCESS = relative(topics.SUCCESS)
TRAJECTORY = relative(topics.TRAJECTORY)

SENSOR_QOS = qos_profile_sensor_data  # best effort, keep last: receives from reliable and best-effort publishers
LATCHED_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
RELIABLE_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def configure_dds() -> None:
    """Use our large-data Fast DDS profile unless the user chose one (before rclpy.init)."""
    if "FASTDDS_DEFAULT_PROFILES_FILE" in os.environ or "FASTRTPS_DEFAULT_PROFILES_FILE" in os.environ:
        return
    from pac_ros.paths import share_file

    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(share_file("config", "fastdds_large_data.xml"))


def init_ros(args=None, **kwargs) -> None:
    """rclpy.init after configure_dds: how every pac_ros entry point starts ROS."""
    import rclpy

    configure_dds()
    rclpy.init(args=args, **kwargs)


def private_domain_id() -> int:
    """A ROS domain for a graph nobody else should hear (batch recording): ROS_DOMAIN_ID when the
    user set one, else 1-100 from the process id, never the default 0 that a demo or another
    stack on this machine uses (two bridges on one domain answer each other's policy)."""
    chosen = os.environ.get("ROS_DOMAIN_ID", "").strip()
    return int(chosen) if chosen else 1 + os.getpid() % 100


def run_node(node_class, args=None) -> None:
    """The body of every node's console entry point (`ros2 run pac_ros <node>`)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    init_ros(args=args)
    node = None
    try:
        node = node_class()  # Ctrl-C while it loads (a model, a scene) is a clean exit too
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a context shut down by Ctrl-C mid-wait raises RCLError: that one is a clean exit
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()




def to_stamp(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def describe(description: str, read_only: bool = False, float_range: tuple[float, float] | None = None,
             int_range: tuple[int, int] | None = None, constraints: str = "") -> ParameterDescriptor:
    """A parameter's descriptor, as `ros2 param describe` shows it; rclpy enforces read_only and the ranges
    (bounds included) and rejects a change outside them with the reason."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only,
                                     additional_constraints=constraints)
    if float_range is not None:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                              to_value=float(float_range[1]))]
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(int_range[0]), to_value=int(int_range[1]), step=1)]
    return descriptor


def load_spec(node: Node) -> Spec:
    """The ``spec_file`` parameter ('' = the package's config/robot.yaml); fixed for the node's life."""
    path = node.declare_parameter("spec_file", "", describe(
        "the robot/task spec (YAML); '' = the package's config/robot.yaml", read_only=True)).value
    return Spec.load(path) if path else default_spec()


def camera_topics(node: Node, spec: Spec) -> dict[str, str]:
    """One ``camera_topics.<name>`` parameter per spec camera."""
    return {
        cam: node.declare_parameter(f"camera_topics.{cam}", CAMERA_TOPIC.format(name=cam),
                                    describe(f"the topic of spec camera {cam!r}")).value
        for cam in spec.camera_names
    }


IMAGE_TRANSPORTS = ("raw", "compressed")


def image_transport(node: Node) -> str:
    """The ``image_transport`` parameter, as image_transport's subscribers take it: ``raw``
    (sensor_msgs/Image on each camera topic) or ``compressed`` (sensor_msgs/CompressedImage,
    jpeg or png, on ``<camera topic>/compressed``)."""
    transport = node.declare_parameter("image_transport", "raw", describe(
        "raw: sensor_msgs/Image on each camera topic; compressed: CompressedImage on <topic>/compressed",
        constraints=f"one of {IMAGE_TRANSPORTS}")).value
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"parameter image_transport must be one of {IMAGE_TRANSPORTS}, got {transport!r}")
    return transport


def subscribe_camera(node: Node, topic: str, transport: str, callback, qos=SENSOR_QOS):
    """One camera's subscription in ``transport`` (see ``image_transport``)."""
    if transport == "compressed":
        return node.create_subscription(CompressedImage, f"{topic}/compressed", callback, qos)
    return node.create_subscription(Image, topic, callback, qos)


def subscribe_robot_inputs(node: Node, on_joints, on_poses, on_instruction) -> None:
    """Joint states, block poses (unless ``on_poses`` is None) and the instruction, on the topics
    the node's parameters name: the inputs every driver of the arm (expert, policy) listens to."""
    p = node.declare_parameter
    node.create_subscription(JointState, p("joint_states_topic", JOINT_STATES).value, on_joints, SENSOR_QOS)
    if on_poses is not None:
        node.create_subscription(PoseArray, p("block_poses_topic", BLOCK_POSES).value, on_poses, SENSOR_QOS)
    node.create_subscription(String, p("instruction_topic", INSTRUCTION).value, on_instruction, LATCHED_QOS)


def block_poses_msg(features: np.ndarray, stamp: Time, frame_id: str = "world") -> PoseArray:
    """Block poses (position + wxyz quaternion per block, spec order) as a PoseArray."""
    msg = PoseArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for row in np.asarray(features, dtype=np.float64).reshape(-1, len(POSE_NAMES)):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in row[:3])
        pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (
            float(v) for v in row[3:]
        )
        msg.poses.append(pose)
    return msg
