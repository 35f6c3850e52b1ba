"""recorder: log episodes from the robot's topics into an offline dataset.

Steps pair each stamped command (the commander's ``~/command`` JointState, stamped
with the observation it was computed from) with that observation; see
pac_ros/data/pairing.py for the rule. Episodes are started and stopped by the
``~/start`` / ``~/stop`` services, or automatically: a new instruction starts one,
success or ``max_steps`` ends it. Message handling and these rules are the ROS-free
``RecorderCore``, which the MCAP import replays bags through. Each finished episode is
PNG-encoded and committed atomically on a worker thread, so callbacks never wait on disk.

Images (raw, or with ``image_transport: compressed`` jpeg/png on ``<topic>/compressed``)
are converted to the spec camera's encoding and size before they are stored, so a dataset
stays uniform (pac_ros/data/images.py; docs/nodes.md); one that cannot be is rejected and logged.

Block poses (``record_features``, default true) are recorded when they are published: each
episode pairs its steps with them when the dataset stores them, or, for a dataset not created
yet, when someone publishes the topic; the first committed episode creates the dataset with or
without them. A dataset that stores poses waits for them; one without them drops any that come.
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
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, String
from std_srvs.srv import Trigger

from pac_ros.data import DatasetError, DatasetWriter
from pac_ros.data.format import INFO_PATH
from pac_ros.data.recording import EpisodeAssembler, FinishedEpisode, RecorderCore, commit_episode
from pac_ros.joint_map import JointMap
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
        # a robot's own joint names ('robot_name:spec_name', as the policy node's parameter); checked first
        name_map = p("joint_name_map", Parameter.Type.STRING_ARRAY, common.describe(
            "'robot_name:spec_name' per renamed joint: /joint_states uses robot names")).value or []
        robot_names = JointMap(self.spec.joint_names, name_map).robot_names
        self.dataset_path = Path(p("dataset", "outputs/recorded").value)
        source = p("source", "expert").value
        checkpoint = p("checkpoint", "").value or None
        auto_start = bool(p("auto_start", True).value)
        stop_on_success = bool(p("stop_on_success", True).value)
        max_steps = int(p("max_steps", self.spec.max_episode_steps).value)
        self.record_features = bool(p("record_features", True).value)
        self.block_poses_topic = p("block_poses_topic", common.BLOCK_POSES).value
        tolerance = float(p("stamp_tolerance", 0.5 * self.spec.control_period).value)
        # a new dataset is created by the first committed episode, with poses if it has them
        self.writer: DatasetWriter | None = None
        if not self.record_features or (self.dataset_path / INFO_PATH).exists():
            self.writer = DatasetWriter(self.dataset_path, self.spec, features=None if self.record_features else False)
        self.core = RecorderCore(self.spec, self._queue_commit, features=self._record_poses, tolerance=tolerance,
                                 auto_start=auto_start, stop_on_success=stop_on_success, max_steps=max_steps,
                                 source=source, checkpoint=checkpoint, log=self._log)
        self.core.joint_names = robot_names
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self.pending: list[concurrent.futures.Future] = []
        self.lock = threading.Lock()
        self.committed: list[int] = []
        self.commit_seconds: list[float] = []  # encode + write time per committed episode
        self.failed = 0

        core = self.core
        transport = common.image_transport(self)
        for cam, topic in common.camera_topics(self, self.spec).items():
            common.subscribe_camera(self, topic, transport, lambda m, c=cam: core.on_image(c, m, self._now()),
                                    RECORD_SENSOR_QOS)
        self.create_subscription(JointState, p("joint_states_topic", common.JOINT_STATES).value,
                                 lambda m: core.on_joint_state(m, self._now()), RECORD_STATE_QOS)
        if self.record_features:
            self.create_subscription(PoseArray, self.block_poses_topic,
                                     lambda m: core.on_block_poses(m, self._now()), RECORD_STATE_QOS)
        self.create_subscription(JointState, p("command_state_topic", "expert/command").value,
                                 lambda m: core.on_command(m, self._now()), common.RELIABLE_QOS)
        self.started_ns = time.time_ns()  # an instruction published before this was given before we were up
        self.create_subscription(String, p("instruction_topic", common.INSTRUCTION).value,
                                 self._on_instruction, common.LATCHED_QOS)
        self.create_subscription(Float32, p("reward_topic", common.REWARD).value,
                                 lambda m: core.on_reward(m.data), common.RELIABLE_QOS)
        self.create_subscription(Bool, p("success_topic", common.SUCCESS).value,
                                 lambda m: core.on_success(m.data), common.RELIABLE_QOS)
        self.create_subscription(DiagnosticStatus, p("status_topic", common.STATUS).value,
                                 lambda m: core.on_status(m.hardware_id), 10)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/stop", self._srv_stop)
        there = (f"{self.writer.num_episodes} episodes there, block poses {'yes' if self.writer.has_features else 'no'}"
                 if self.writer is not None else "new: created by the first episode")
        self.get_logger().info(f"recording into {self.dataset_path} ({there})")

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

    @property
    def num_episodes(self) -> int:
        """Episodes in the dataset (0 before a new one is created)."""
        return self.writer.num_episodes if self.writer is not None else 0

    def _record_poses(self) -> bool:
        """Asked at each episode's start: are its steps paired with block poses?"""
        if not self.record_features:
            return False
        published = self.count_publishers(self.block_poses_topic) > 0
        writer = self.writer
        if writer is None:
            return published
        if writer.has_features and not published:
            self.get_logger().warning(f"{self.dataset_path} stores block poses but nobody publishes "
                                      f"{self.block_poses_topic}: steps wait for them (record into a new dataset "
                                      "to record without them)")
        return writer.has_features

    def _on_instruction(self, msg: String, info: dict) -> None:
        published = info.get("source_timestamp") or time.time_ns()
        self.core.on_instruction(msg.data, joined=published < self.started_ns)

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
            if self.writer is None:
                self.writer = DatasetWriter(self.dataset_path, self.spec, features=episode.has_features)
                self.get_logger().info(f"created {self.dataset_path} "
                                       f"({'with' if episode.has_features else 'without'} block poses)")
            if not self.writer.has_features:
                episode = episode.without_features()
            elif not episode.has_features:
                raise DatasetError(f"{self.dataset_path} stores block poses and this episode has none "
                                   f"(nothing on {self.block_poses_topic})")
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
        if "pool" not in self.__dict__:  # construction failed before anything was opened
            return super().destroy_node()
        if self.recording:
            self.stop("shutdown")
        self.pool.shutdown(wait=True)
        if self.writer is not None:
            self.writer.close()
        return super().destroy_node()


def main(args=None) -> None:
    common.run_node(Recorder, args)
