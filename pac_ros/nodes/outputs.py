"""The policy node's commands as ros2_control's position controllers take them.

``forward``: std_msgs/Float64MultiArray for a forward_command_controller (position), one value
per joint in the controller's order. ``trajectory``: trajectory_msgs/JointTrajectory for a
joint_trajectory_controller, the joints named in the controller's order, one point reached
one control period from now (header stamp zero: start on receipt). With a gripper topic, the
gripper's target goes there alone (Float64MultiArray), for a gripper controller of its own.
Publishers are lifecycle publishers: they send only while the node is active.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from pac_ros.joint_map import JointMap
from pac_ros.nodes import common
from pac_ros.nodes.convert import array_to_command

INTERFACES = {"forward": (Float64MultiArray, common.COMMANDS), "trajectory": (JointTrajectory, common.TRAJECTORY)}


def duration(seconds: float) -> Duration:
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


class CommandOutput:
    def __init__(self, node, interface: str, topic: str, gripper_topic: str, joints: JointMap, period: float):
        if interface not in INTERFACES:
            raise ValueError(f"parameter command_interface must be one of {sorted(INTERFACES)}, got {interface!r}")
        msg_type, default_topic = INTERFACES[interface]
        self.node, self.interface, self.joints = node, interface, joints
        self.time_from_start = duration(period)
        self.arm_pub = node.create_lifecycle_publisher(msg_type, topic or default_topic, common.RELIABLE_QOS)
        self.gripper_pub = None
        if gripper_topic:
            try:
                self.gripper_pub = node.create_lifecycle_publisher(Float64MultiArray, gripper_topic,
                                                                   common.RELIABLE_QOS)
            except Exception:  # e.g. an invalid topic name: leave nothing behind
                self.destroy()
                raise

    def message(self, command: np.ndarray):
        """The arm controller's message for a spec-order command."""
        values = self.joints.arm_command(command)
        if self.interface == "forward":
            return array_to_command(values)
        point = JointTrajectoryPoint(positions=[float(v) for v in values], time_from_start=self.time_from_start)
        return JointTrajectory(joint_names=list(self.joints.controller_joints), points=[point])

    def publish(self, command: np.ndarray) -> None:
        self.arm_pub.publish(self.message(command))
        gripper = self.joints.gripper_command(command)
        if self.gripper_pub is not None and gripper is not None:
            self.gripper_pub.publish(array_to_command([gripper]))

    def destroy(self) -> None:
        for pub in (self.arm_pub, self.gripper_pub):
            if pub is not None:
                self.node.destroy_lifecycle_publisher(pub)

    def describe(self) -> str:
        gripper = f", gripper on {self.gripper_pub.topic_name}" if self.gripper_pub is not None else ""
        return f"{self.interface} commands on {self.arm_pub.topic_name} for {self.joints.controller_joints}{gripper}"
