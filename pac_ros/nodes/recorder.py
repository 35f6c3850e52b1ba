"""recorder: log episodes from the robot's topics into an offline dataset.

Steps pair each stamped command (the commander's ``~/command`` JointState, stamped
with the observation it was computed from) with that observation; see
pac_ros/data/recording.py for the rules. Episodes are started and stopped by the
``~/start`` / ``~/stop`` services, or automatically: a new instruction starts one,
success or ``max_steps`` ends it. Each finished episode is PNG-encoded and committed
atomically on a worker thread, so callbacks never wait on disk.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from pac_ros.data import DatasetWriter
from pac_ros.data.recording import EpisodeAssembler, Step
from pac_ros.nodes import common
from pac_ros.nodes.convert import ConversionError, image_to_numpy, joint_positions

# Best effort like the publishers, but deep enough (about a second of a fast stream)
# not to lose messages while the executor is held up.
RECORD_SENSOR_QOS = QoSProfile(depth=30, reliability=ReliabilityPolicy.BEST_EFFORT)
RECORD_STATE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)


class Recorder(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        self.spec = common.load_spec(self)
        p = self.declare_parameter
        self.dataset_path = Path(p("dataset", "outputs/recorded").value)
        self.source = p("source", "expert").value
        self.checkpoint = p("checkpoint", "").value or None
        self.auto_start = bool(p("auto_start", True).value)
        self.stop_on_success = bool(p("stop_on_success", True).value)
        self.max_steps = int(p("max_steps", self.spec.max_episode_steps).value)
        self.record_features = bool(p("record_features", True).value)
        tolerance = float(p("stamp_tolerance", 0.5 * self.spec.control_period).value)
        self.assembler = EpisodeAssembler(self.spec, tolerance=tolerance, features=self.record_features)
        self.writer = DatasetWriter(self.dataset_path, self.spec, features=self.record_features)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self.pending: list[concurrent.futures.Future] = []
        self.lock = threading.Lock()
        self.recording = False
        self.instruction = ""
        self.committed: list[int] = []
        self.commit_seconds: list[float] = []  # encode + write time per committed episode
        self.failed = 0
        self.rejected = 0
        self.received: Counter[str] = Counter()  # messages per input, for drop accounting
        self._last_joint_stamp: float | None = None
        self.last_until: float | None = None  # stamp of the last recorded episode's end

        for cam, topic in common.camera_topics(self, self.spec).items():
            self.create_subscription(Image, topic, lambda m, c=cam: self._on_image(c, m), RECORD_SENSOR_QOS)
        self.create_subscription(JointState, p("joint_states_topic", common.JOINT_STATES).value,
                                 self._on_joints, RECORD_STATE_QOS)
        if self.record_features:
            self.create_subscription(PoseArray, p("block_poses_topic", common.BLOCK_POSES).value,
                                     self._on_poses, RECORD_STATE_QOS)
        self.create_subscription(JointState, p("command_state_topic", "/expert/command").value,
                                 self._on_command, common.RELIABLE_QOS)
        self.create_subscription(String, p("instruction_topic", common.INSTRUCTION).value,
                                 self._on_instruction, common.LATCHED_QOS)
        self.create_subscription(Float32, p("reward_topic", common.REWARD).value, self._on_reward,
                                 common.RELIABLE_QOS)
        self.create_subscription(Bool, p("success_topic", common.SUCCESS).value, self._on_success,
                                 common.RELIABLE_QOS)
        self.create_subscription(DiagnosticStatus, p("status_topic", common.STATUS).value, self._on_status, 10)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        self.get_logger().info(f"recording into {self.dataset_path} ({self.writer.num_episodes} episodes there)")

    # ---- inputs -------------------------------------------------------------------
    def _reject(self, what: str, exc: Exception) -> None:
        self.rejected += 1
        self.get_logger().warning(f"{what} rejected ({self.rejected} so far): {exc}", throttle_duration_sec=1.0)

    def _now(self) -> float:
        return common.now_sec(self)

    def _on_image(self, camera: str, msg: Image) -> None:
        self.received[f"image:{camera}"] += 1
        cam = self.spec.cameras[self.spec.camera_names.index(camera)]
        try:
            if msg.encoding != cam.encoding:
                raise ConversionError(f"encoding {msg.encoding!r}, the spec wants {cam.encoding!r}")
            image = image_to_numpy(msg)
            image = image.reshape(cam.shape) if image.size == np.prod(cam.shape) else image
            if image.shape != cam.shape:
                raise ConversionError(f"shape {image.shape}, the spec wants {cam.shape}")
        except ConversionError as exc:
            self._reject(f"image '{camera}'", exc)
            return
        self.assembler.add_image(camera, common.to_sec(msg.header.stamp), image, self._now())
        self._check_auto_stop()

    def _on_joints(self, msg: JointState) -> None:
        self.received["joint_states"] += 1
        try:
            q = joint_positions(msg, self.spec.joint_names, finite=True)
        except ConversionError as exc:
            self._reject("joint state", exc)
            return
        stamp = common.to_sec(msg.header.stamp)
        if self._last_joint_stamp is not None and stamp < self._last_joint_stamp - 1.0:
            self.get_logger().warning(f"time jumped back from {self._last_joint_stamp:.3f} to {stamp:.3f} s: "
                                      "closing the episode and starting over")
            if self.recording:
                self.stop("clock jumped backwards", until=self._last_joint_stamp)
            self.assembler.clear_inputs()
            self.last_until = None
            if self.auto_start and self.instruction:
                self.start()
        self._last_joint_stamp = stamp
        self.assembler.add_joint_state(stamp, q, self._now())
        self._check_auto_stop()

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            poses = common.block_poses_array(msg, len(self.spec.blocks))
        except ValueError as exc:
            self._reject("block poses", exc)
            return
        self.assembler.add_block_poses(common.to_sec(msg.header.stamp), poses, self._now())

    def _on_command(self, msg: JointState) -> None:
        self.received["command"] += 1
        if not self.recording:
            return
        try:
            command = joint_positions(msg, self.spec.joint_names, finite=True)
        except ConversionError as exc:
            self._reject("stamped command", exc)
            return
        self.assembler.add_command(common.to_sec(msg.header.stamp), command, self._now())
        self._check_auto_stop()

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        if self.recording:
            self.stop("new instruction (reset)")
        if self.auto_start:
            self.start()

    def _on_status(self, msg: DiagnosticStatus) -> None:
        if msg.hardware_id and self.source == "policy":
            self.checkpoint = msg.hardware_id  # the model acting now (it may be swapped at run time)

    def _on_reward(self, msg: Float32) -> None:
        if self.recording:
            self.assembler.add_reward(msg.data)

    def _on_success(self, msg: Bool) -> None:
        if self.recording:
            self.assembler.add_success(bool(msg.data))
            self._check_auto_stop()

    # ---- episodes -----------------------------------------------------------------
    def _check_auto_stop(self) -> None:
        if not self.recording:
            return
        a = self.assembler
        if self.stop_on_success and a.success:
            self.stop("success", until=a.success_at)
        elif len(a.steps) >= self.max_steps and a.newest_stamp is not None and (
            a.newest_stamp > a.steps[-1].timestamp
        ):
            self.stop(f"{self.max_steps} steps", until=a.newest_stamp)

    def start(self) -> bool:
        if not self.instruction:
            self.get_logger().warning("cannot start an episode: no instruction received yet")
            return False
        # commands for observations after the last episode's end (or, the first time,
        # from the newest observation on) belong to this episode
        if self.last_until is not None:
            start = self.last_until
        elif self.assembler.newest_stamp is not None:
            start = self.assembler.newest_stamp - 1e-6
        else:
            start = float("-inf")
        self.assembler.reset(start=start, instruction=self.instruction)
        self.recording = True
        return True

    def stop(self, reason: str, until: float | None = None) -> None:
        """End the episode and hand it to the commit thread."""
        self.recording = False
        a = self.assembler
        steps, final = a.finish(until)
        self.last_until = final["timestamp"] if final is not None else (steps[-1].timestamp if steps else None)
        success = a.success
        stats = a.stats
        if not steps:
            self.get_logger().info(f"episode stopped ({reason}) with no steps: nothing to commit")
            return
        terminal = success and self.spec.terminate_on_success
        meta = {"stop_reason": reason, "recording": stats.as_metadata()}
        future = self.pool.submit(self._commit, steps, final, terminal, success, stats.dropped,
                                  steps[0].instruction, meta)
        self.pending = [f for f in self.pending if not f.done()] + [future]
        self.get_logger().info(
            f"episode stopped ({reason}): {len(steps)} steps, success={success}, "
            f"dropped={stats.dropped_commands}, late={stats.late_messages}, gaps={len(stats.gaps)}"
        )

    def _commit(self, steps: list[Step], final: dict | None, terminal: bool, success: bool, dropped: int,
                instruction: str, meta: dict) -> int | None:
        """Worker thread: encode and commit one episode."""
        started = time.perf_counter()
        episode = self.writer.begin_episode(instruction=instruction, source=self.source,
                                            checkpoint=self.checkpoint, metadata=meta)
        try:
            for step in steps:
                episode.add_step(timestamp=step.timestamp, joint_positions=step.joint_positions,
                                 images=step.images, action=step.action, reward=step.reward,
                                 features=step.features, instruction=step.instruction)
            if final is not None:
                q = final["joint_positions"]
                episode.add_step(timestamp=final["timestamp"], joint_positions=q, images=final["images"],
                                 action=self.spec.safe_command(q, q), reward=0.0, features=final["features"])
            index = self.writer.commit(episode, terminal=terminal, success=success, dropped=dropped)
        except Exception as exc:  # disk full, unwritable directory, bad data: keep running
            self.failed += 1
            self.get_logger().error(f"episode NOT committed ({len(steps)} steps lost): {exc}")
            try:
                self.writer.discard(episode)
            except Exception:
                pass
            return None
        with self.lock:
            self.committed.append(index)
            self.commit_seconds.append(time.perf_counter() - started)
        self.get_logger().info(f"committed episode {index} ({len(steps)} steps, success={success})")
        return index

    def _srv_start(self, request, response):
        if self.recording:
            self.stop("restarted by ~/start")
        response.success = self.start()
        response.message = "recording" if response.success else "no instruction received yet"
        return response

    def _srv_stop(self, request, response):
        if not self.recording:
            response.success, response.message = False, "not recording"
            return response
        self.stop("~/stop")
        response.success, response.message = True, "stopped; committing in the background"
        return response

    def abandon(self, why: str) -> None:
        """Drop the episode in progress without committing it."""
        if self.recording:
            self.recording = False
            self.get_logger().info(f"episode in progress abandoned ({why}): {len(self.assembler.steps)} steps")

    def flush(self, timeout: float | None = None) -> None:
        """Wait for queued commits (tests and shutdown)."""
        concurrent.futures.wait(self.pending, timeout=timeout)

    def destroy_node(self):
        if self.recording:
            self.stop("shutdown")
        self.pool.shutdown(wait=True)
        self.writer.close()
        return super().destroy_node()


def main(args=None) -> None:
    common.run_node(Recorder, args)
