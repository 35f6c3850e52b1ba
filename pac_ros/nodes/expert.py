"""expert: the scripted stacking expert as a ROS controller.

It commands the robot over the same topics as the policy, so demonstrations are
recorded exactly like policy rollouts. Its privileged input is the block poses
(/sim/block_poses from the bridge, or a pose tracker); it mirrors the joint state and
the poses into its own MuJoCo model to run the expert's inverse kinematics.
Each instruction message starts a new episode for the expert.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from pac_ros.nodes import common
from pac_ros.nodes.convert import ConversionError, array_to_command, joint_positions
from pac_ros.sim.env import StackingEnv
from pac_ros.sim.expert import ExpertConfig, ScriptedExpert
from pac_ros.spec import POSE_NAMES, SpecError


class ExpertNode(Node):
    def __init__(self, **kwargs):
        super().__init__("expert", **kwargs)
        self.spec = common.load_spec(self)
        p = self.declare_parameter
        self.quality = p("quality", "perfect").value
        self.config = ExpertConfig.preset(self.quality)
        self.seed = int(p("seed", 0).value)
        # seconds an input may be old before the expert stops commanding (named as the policy node's)
        old = float(p("staleness_limit", 0.0).value)
        if old > 0:
            self.get_logger().warning("parameter staleness_limit is deprecated: set staleness.joint_states "
                                      "and staleness.block_poses")
        default = old or 3.0 * self.spec.control_period
        self.staleness = {name: float(p(f"staleness.{name}", default).value)
                          for name in ("joint_states", "block_poses")}
        self.mirror = StackingEnv(self.spec, render=False)
        self.expert = ScriptedExpert(self.mirror, self.config, seed=self.seed)
        self.joints: tuple[float, np.ndarray] | None = None
        self.poses: tuple[float, np.ndarray] | None = None
        self.episode = 0
        self.active = False
        self.last_stamp: float | None = None

        self.command_pub = self.create_publisher(Float64MultiArray, p("command_topic", common.COMMANDS).value,
                                                 common.RELIABLE_QOS)
        self.stamped_pub = self.create_publisher(JointState, common.STAMPED_COMMAND, common.RELIABLE_QOS)
        common.subscribe_robot_inputs(self, self._on_joints, self._on_poses, self._on_instruction)
        self.timer = self.create_timer(self.spec.control_period, self._tick)
        self.get_logger().info(f"scripted expert ({self.quality}) at {self.spec.control_rate_hz:g} Hz")

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = joint_positions(msg, self.spec.joint_names, finite=True)
        except ConversionError as exc:
            self.get_logger().warning(f"joint state rejected: {exc}", throttle_duration_sec=1.0)
            return
        self.joints = (common.stamp_seconds(msg.header.stamp), q)

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            poses = common.block_poses_array(msg, len(self.spec.blocks))
        except ValueError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        if np.all(np.isfinite(poses)):
            self.poses = (common.stamp_seconds(msg.header.stamp), poses)

    def _on_instruction(self, msg: String) -> None:
        try:
            self.mirror.target_pair = self.spec.parse_instruction(msg.data)
        except SpecError as exc:
            self.get_logger().error(f"cannot follow instruction: {exc}")
            self.active = False
            return
        self.mirror.instruction = msg.data
        self.mirror.seed = self.seed + self.episode
        self.episode += 1
        self.active = False  # (re)start the phase machine at the next synced tick

    def _tick(self) -> None:
        if self.joints is None or self.poses is None or self.episode == 0:
            return
        (t_joints, q), (t_poses, poses) = self.joints, self.poses
        now = common.now_sec(self)
        if now - t_joints > self.staleness["joint_states"] or now - t_poses > self.staleness["block_poses"]:
            self.get_logger().warning("inputs stale: not commanding", throttle_duration_sec=1.0)
            return
        if t_joints == self.last_stamp:
            return  # already answered this observation
        for name, pose in zip(self.spec.blocks, poses.reshape(-1, len(POSE_NAMES))):
            self.mirror.set_block_pose(name, pose[:3], pose[3:], forward=False)
        self.mirror.set_joint_positions(q)  # runs mj_forward on the whole mirrored state
        if not self.active:
            self.expert.reset()
            self.active = True
        command = self.spec.safe_command(self.expert.act(), q)
        self.command_pub.publish(array_to_command(command))
        stamped = JointState(name=self.spec.joint_names, position=[float(v) for v in command])
        stamped.header.stamp = common.to_stamp(t_joints)
        self.stamped_pub.publish(stamped)
        self.last_stamp = t_joints

    def destroy_node(self):
        self.mirror.close()
        return super().destroy_node()


def main(args=None) -> None:
    common.run_node(ExpertNode, args)
