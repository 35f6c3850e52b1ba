"""mujoco_bridge: the simulated stacking robot behind the real robot's topics.

Each control period it applies the newest joint command (clamped to limits and max
step; the last one is held when none arrives), steps the physics, then publishes the
observation stamped with sim time (one Image and CameraInfo per camera, /joint_states,
block poses), /reward and /task_success for the step, and finally /clock. With
``publish_block_poses: false`` there are no block poses (no publisher at all), as on a robot
without a pose tracker. ``publish_images`` and ``publish_block_poses`` can be switched off and
on at run time (``ros2 param set``), as a camera driver or tracker that stops and comes back.

An instruction on the instruction topic from someone else (an operator changing the task
mid-episode) retargets the episode: the blocks stay, reward and success follow the new one.

It speaks like a robot's drivers: /joint_states is reliable (as joint_state_broadcaster's),
images are sensor-data QoS with a CameraInfo next to each (``camera_info`` beside the image
topic, intrinsics from the MuJoCo camera's fovy) and frame ``<camera>_camera_optical_frame``.

mode = realtime: a steady timer steps at control_rate * real_time_factor.
mode = lockstep: a step follows each received command (or lockstep_timeout seconds
of wall time without one), so a slow controller slows the sim instead of missing.

/clock never goes backwards: a reset continues sim time from where it was.
"""
from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from pac_ros.nodes import common
from pac_ros.nodes.convert import ConversionError, command_to_array, joint_positions, numpy_to_image
from pac_ros.sim.env import StackingEnv

COMMAND_TYPES = {
    "float64_multi_array": Float64MultiArray,
    "joint_trajectory": JointTrajectory,
    "joint_state": JointState,
}


class MujocoBridge(Node):
    def __init__(self, **kwargs):
        super().__init__("mujoco_bridge", **kwargs)
        self.spec = common.load_spec(self)
        p = self.declare_parameter
        self.mode = p("mode", "realtime").value
        if self.mode not in ("realtime", "lockstep"):
            raise ValueError(f"parameter mode must be 'realtime' or 'lockstep', got {self.mode!r}")
        self.real_time_factor = float(p("real_time_factor", 1.0).value)
        if not self.real_time_factor > 0:
            raise ValueError(f"parameter real_time_factor must be > 0, got {self.real_time_factor}")
        self.lockstep_timeout = float(p("lockstep_timeout", 1.0).value)
        self.auto_reset = bool(p("auto_reset", True).value)
        self.next_seed = self.seed_param = int(p("seed", 0).value)  # episode k uses seed + k
        reward = p("reward", "sparse").value
        render = bool(p("render", True).value)
        command_type = p("command_type", "float64_multi_array").value
        if command_type not in COMMAND_TYPES:
            raise ValueError(f"parameter command_type must be one of {sorted(COMMAND_TYPES)}, got {command_type!r}")
        p("instruction", "")
        self.frame_id = p("frame_id", "world").value

        self.env = StackingEnv(self.spec, render=render, reward=reward)
        self.sim_offset = 0.0  # sim time of the current episode's start
        self.episode = 0
        self.pending_reset = False

        cams = common.camera_topics(self, self.spec)
        self.image_pubs = {c: self.create_publisher(Image, t, common.SENSOR_QOS) for c, t in cams.items()}
        self.info_pubs = {c: self.create_publisher(CameraInfo, common.camera_info_topic(t), common.SENSOR_QOS)
                          for c, t in cams.items()}
        self.camera_infos = {cam.name: self._camera_info(cam) for cam in self.spec.cameras}
        self.joint_pub = self.create_publisher(JointState, p("joint_states_topic", common.JOINT_STATES).value,
                                               common.RELIABLE_QOS)
        poses_topic = p("block_poses_topic", common.BLOCK_POSES).value
        self.pose_pub = (self.create_publisher(PoseArray, poses_topic, common.SENSOR_QOS)
                         if p("publish_block_poses", True).value else None)
        self.streams = {"publish_images": bool(p("publish_images", True).value),
                        "publish_block_poses": self.pose_pub is not None}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.reward_pub = self.create_publisher(Float32, p("reward_topic", common.REWARD).value,
                                                common.RELIABLE_QOS)
        self.success_pub = self.create_publisher(Bool, p("success_topic", common.SUCCESS).value,
                                                 common.RELIABLE_QOS)
        instruction_topic = p("instruction_topic", common.INSTRUCTION).value
        self.instruction_pub = self.create_publisher(String, instruction_topic, common.LATCHED_QOS)
        self.create_subscription(String, instruction_topic, self._on_instruction, common.LATCHED_QOS)
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", 10)
        self.create_subscription(COMMAND_TYPES[command_type], p("command_topic", common.COMMANDS).value,
                                 getattr(self, f"_on_{command_type}"), common.RELIABLE_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self.command = self.env.joint_positions()
        self.new_command = False
        self.rejected = 0
        self.steps = 0
        self.lockstep_misses = 0
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        if self.mode == "realtime":
            period = self.spec.control_period / self.real_time_factor
            self.timer = self.create_timer(period, self._tick, clock=steady)
        else:
            self.timer = self.create_timer(min(0.01, self.lockstep_timeout / 4), self._lockstep_watchdog,
                                           clock=steady)
        self._reset_episode()
        self.get_logger().info(
            f"stacking sim up: mode={self.mode}, {self.spec.control_rate_hz:g} Hz control, "
            f"cameras {list(cams.values())}, commands {command_type}"
        )

    # ---- commands -----------------------------------------------------------------
    def _accept(self, values: np.ndarray, source: str) -> None:
        if values.shape != (self.spec.action_dim,) or not np.all(np.isfinite(values)):
            self._reject(f"{source}: command must be {self.spec.action_dim} finite values, got {values.tolist()}")
            return
        self.command = values
        self.new_command = True
        if self.mode == "lockstep":
            self._step()

    def _reject(self, why: str) -> None:
        self.rejected += 1
        self.get_logger().warning(f"rejected command ({self.rejected} so far): {why}",
                                  throttle_duration_sec=1.0)

    def _on_float64_multi_array(self, msg: Float64MultiArray) -> None:
        try:
            self._accept(command_to_array(msg, self.spec.action_dim), "Float64MultiArray")
        except ConversionError as exc:
            self._reject(str(exc))

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            self._accept(joint_positions(msg, self.spec.joint_names), "JointState")
        except ConversionError as exc:
            self._reject(str(exc))

    def _on_joint_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self._reject("JointTrajectory without points")
            return
        state = JointState(name=list(msg.joint_names), position=list(msg.points[-1].positions))
        try:
            self._accept(joint_positions(state, self.spec.joint_names), "JointTrajectory")
        except ConversionError as exc:
            self._reject(str(exc))

    def _on_instruction(self, msg: String) -> None:
        if msg.data.strip().lower() == self.env.instruction:
            return  # our own, or the task it already is
        try:
            self.env.retarget(msg.data)
        except ValueError as exc:  # SpecError: not one of the task's instructions
            self.get_logger().warning(f"instruction ignored, the task stays '{self.env.instruction}': {exc}")
            return
        self.get_logger().info(f"episode {self.episode} retargeted mid-episode: '{self.env.instruction}'")

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name not in self.streams:
                continue
            if param.type_ != param.Type.BOOL:
                return SetParametersResult(successful=False, reason=f"{param.name} must be a bool")
            if param.name == "publish_block_poses" and param.value and self.pose_pub is None:
                return SetParametersResult(successful=False,
                                           reason="started with publish_block_poses false: no publisher to resume")
        for param in params:
            if param.name in self.streams:
                self.streams[param.name] = bool(param.value)
                self.get_logger().info(f"{param.name}: {param.value}")
        return SetParametersResult(successful=True)

    # ---- stepping -----------------------------------------------------------------
    def _tick(self) -> None:
        self._step()

    def _lockstep_watchdog(self) -> None:
        if time.monotonic() - self._last_publish > self.lockstep_timeout:
            self.lockstep_misses += 1
            self._step()

    def sim_time(self) -> float:
        return self.sim_offset + float(self.env.data.time)

    def _step(self) -> None:
        if self.pending_reset:
            self._reset_episode()
            return
        obs, reward, terminated, truncated, info = self.env.step(self.command)
        self.new_command = False
        self.steps += 1
        self._publish(obs, reward, bool(info["success"]))
        if (terminated or truncated) and self.auto_reset:
            self.pending_reset = True

    def _publish(self, obs: dict, reward: float | None, success: bool | None) -> None:
        stamp = common.to_stamp(self.sim_time())
        for cam, image in obs["images"].items() if self.streams["publish_images"] else ():
            info = self.camera_infos[cam]
            info.header.stamp = stamp
            encoding = self.spec.cameras[self.spec.camera_names.index(cam)].encoding
            self.image_pubs[cam].publish(numpy_to_image(image, encoding, stamp, frame_id=info.header.frame_id))
            self.info_pubs[cam].publish(info)
        joints = JointState(name=self.spec.joint_names, position=[float(v) for v in obs["joint_positions"]])
        joints.header.stamp = stamp
        self.joint_pub.publish(joints)
        if self.pose_pub is not None and self.streams["publish_block_poses"]:
            self.pose_pub.publish(common.block_poses_msg(obs["features"], stamp, self.frame_id))
        if reward is not None:
            self.reward_pub.publish(Float32(data=float(reward)))
            self.success_pub.publish(Bool(data=bool(success)))
        self.clock_pub.publish(ClockMsg(clock=stamp))
        self._last_publish = time.monotonic()

    def _camera_info(self, cam) -> CameraInfo:
        """Ideal pinhole (no distortion) at the spec's image size."""
        K = self.env.camera_matrix(cam.name, cam.width, cam.height)
        info = CameraInfo(width=cam.width, height=cam.height, distortion_model="plumb_bob", d=[0.0] * 5)
        info.header.frame_id = common.CAMERA_FRAME.format(name=cam.name)
        info.k = K.flatten().tolist()
        info.r = np.eye(3).flatten().tolist()
        info.p = np.hstack([K, np.zeros((3, 1))]).flatten().tolist()
        return info

    def _reset_episode(self) -> None:
        self.pending_reset = False
        if self.episode:
            self.sim_offset = self.sim_time() + self.spec.control_period
        instruction = self.get_parameter("instruction").value or None
        seed = self.next_seed
        obs = self.env.reset(seed=seed, instruction=instruction)
        self.next_seed += 1
        self.episode += 1
        self.command = obs["joint_positions"].copy()
        self.instruction_pub.publish(String(data=obs["instruction"]))
        self.get_logger().info(f"episode {self.episode} (seed {seed}): '{obs['instruction']}'")
        self._publish(obs, None, None)

    def _on_reset(self, request, response):
        try:
            seed = int(self.get_parameter("seed").value)
            if seed != self.seed_param:  # a new seed was set: restart the sequence there
                self.next_seed = self.seed_param = seed
            self._reset_episode()
        except Exception as exc:  # e.g. an instruction the task does not know
            response.success, response.message = False, f"reset failed: {exc}"
            return response
        response.success = True
        response.message = f"episode {self.episode}: {self.env.instruction}"
        return response

    def destroy_node(self):
        self.env.close()
        return super().destroy_node()


def main(args=None) -> None:
    common.run_node(MujocoBridge, args)
