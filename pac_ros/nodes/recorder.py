"""recorder: log episodes from the robot's topics into an offline dataset.

Steps pair each stamped command (the commander's ``~/command`` JointState, stamped
with the observation it was computed from) with that observation; see
pac_ros/data/recording.py for the rules. Episodes are started and stopped by the
``~/start`` / ``~/stop`` services, or automatically: a new instruction starts one,
success or ``max_steps`` ends it. Message handling and these rules are the ROS-free
``RecorderCore``, which the MCAP import replays bags through. Each finished episode is
PNG-encoded and committed atomically on a worker thread, so callbacks never wait on disk.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from pac_ros.data import DatasetWriter
from pac_ros.data.recording import EpisodeAssembler, FinishedEpisode, RecorderCore, commit_episode
from pac_ros.nodes import common

# Best effort, so they receive from best-effort (cameras) and reliable (a robot's /joint_states)
# publishers alike, and deep enough (about a second of a fast stream) not to lose messages while
# the executor is held up.
RECORD_SENSOR_QOS = QoSProfile(depth=30, reliability=ReliabilityPolicy.BEST_EFFORT)
RECORD_STATE_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)


class Recorder(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        self.spec = common.load_spec(self)
        p = self.declare_parameter
        self.dataset_path = Path(p("dataset", "outputs/recorded").value)
        source = p("source", "expert").value
        checkpoint = p("checkpoint", "").value or None
        auto_start = bool(p("auto_start", True).value)
        stop_on_success = bool(p("stop_on_success", True).value)
        max_steps = int(p("max_steps", self.spec.max_episode_steps).value)
        self.record_features = bool(p("record_features", True).value)
        tolerance = float(p("stamp_tolerance", 0.5 * self.spec.control_period).value)
        self.core = RecorderCore(self.spec, self._queue_commit, features=self.record_features, tolerance=tolerance,
                                 auto_start=auto_start, stop_on_success=stop_on_success, max_steps=max_steps,
                                 source=source, checkpoint=checkpoint, log=self._log)
        self.writer = DatasetWriter(self.dataset_path, self.spec, features=self.record_features)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self.pending: list[concurrent.futures.Future] = []
        self.lock = threading.Lock()
        self.committed: list[int] = []
        self.commit_seconds: list[float] = []  # encode + write time per committed episode
        self.failed = 0

        core = self.core
        for cam, topic in common.camera_topics(self, self.spec).items():
            self.create_subscription(Image, topic, lambda m, c=cam: core.on_image(c, m, self._now()),
                                     RECORD_SENSOR_QOS)
        self.create_subscription(JointState, p("joint_states_topic", common.JOINT_STATES).value,
                                 lambda m: core.on_joint_state(m, self._now()), RECORD_STATE_QOS)
        if self.record_features:
            self.create_subscription(PoseArray, p("block_poses_topic", common.BLOCK_POSES).value,
                                     lambda m: core.on_block_poses(m, self._now()), RECORD_STATE_QOS)
        self.create_subscription(JointState, p("command_state_topic", "expert/command").value,
                                 lambda m: core.on_command(m, self._now()), common.RELIABLE_QOS)
        self.create_subscription(String, p("instruction_topic", common.INSTRUCTION).value,
                                 lambda m: core.on_instruction(m.data), common.LATCHED_QOS)
        self.create_subscription(Float32, p("reward_topic", common.REWARD).value,
                                 lambda m: core.on_reward(m.data), common.RELIABLE_QOS)
        self.create_subscription(Bool, p("success_topic", common.SUCCESS).value,
                                 lambda m: core.on_success(m.data), common.RELIABLE_QOS)
        self.create_subscription(DiagnosticStatus, p("status_topic", common.STATUS).value,
                                 lambda m: core.on_status(m.hardware_id), 10)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        self.get_logger().info(f"recording into {self.dataset_path} ({self.writer.num_episodes} episodes there)")

    # ---- the core's state, as the node's -------------------------------------------
    @property
    def assembler(self) -> EpisodeAssembler:
        return self.core.assembler

    @property
    def recording(self) -> bool:
        return self.core.recording

    @property
    def rejected(self) -> int:
        return self.core.rejected

    @property
    def received(self) -> Counter[str]:
        return self.core.received

    def _log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        if level == "reject":
            logger.warning(text, throttle_duration_sec=1.0)
        else:
            getattr(logger, level)(text)

    def _now(self) -> float:
        return common.now_sec(self)

    # ---- episodes -----------------------------------------------------------------
    def start(self) -> bool:
        return self.core.start()

    def stop(self, reason: str, until: float | None = None) -> None:
        """End the episode; the core hands it to the commit thread."""
        self.core.stop(reason, until=until)

    def _queue_commit(self, episode: FinishedEpisode) -> None:
        future = self.pool.submit(self._commit, episode)
        self.pending = [f for f in self.pending if not f.done()] + [future]

    def _commit(self, episode: FinishedEpisode) -> int | None:
        """Worker thread: encode and commit one episode."""
        started = time.perf_counter()
        try:
            index = commit_episode(self.writer, episode)
        except Exception as exc:  # disk full, unwritable directory, bad data: keep running
            self.failed += 1
            self.get_logger().error(f"episode NOT committed ({len(episode.steps)} steps lost): {exc}")
            return None
        with self.lock:
            self.committed.append(index)
            self.commit_seconds.append(time.perf_counter() - started)
        self.get_logger().info(f"committed episode {index} ({len(episode.steps)} steps, success={episode.success})")
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
        self.core.abandon(why)

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
