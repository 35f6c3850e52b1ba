"""Recording episodes from stamped message streams (ROS-free; used by the recorder node
and the MCAP import): ``RecorderCore`` converts and rejects messages and cuts episodes,
``commit_episode`` writes one. Steps are paired by ``EpisodeAssembler`` (pairing.py, with
the pairing rule), re-exported here with ``Step`` and ``RecordingStats``.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pac_ros.data.images import camera_image
from pac_ros.data.messages import FLOAT32_MAX, ConversionError, block_poses_array, joint_positions, stamp_seconds
from pac_ros.data.pairing import EpisodeAssembler, RecordingStats, Step
from pac_ros.data.writer import DatasetWriter
from pac_ros.spec import COMMAND_TOLERANCE, Spec

__all__ = ["EpisodeAssembler", "FinishedEpisode", "RecorderCore", "RecordingStats", "Step", "commit_episode"]


@dataclass
class FinishedEpisode:
    """What a stopped recording hands over to be committed."""

    steps: list[Step]
    final: dict[str, Any] | None  # the final observation (no command), or None
    success: bool
    terminal: bool
    reason: str
    stats: RecordingStats
    source: str
    checkpoint: str | None
    joined_in_progress: bool = False  # started from an instruction given before the recorder was up

    @property
    def instruction(self) -> str:
        return self.steps[0].instruction

    @property
    def has_features(self) -> bool:
        """Every row has block poses."""
        rows = [s.features for s in self.steps] + ([self.final["features"]] if self.final is not None else [])
        return all(f is not None for f in rows)

    def without_features(self) -> "FinishedEpisode":
        steps = [dataclasses.replace(s, features=None) for s in self.steps]
        final = None if self.final is None else {**self.final, "features": None}
        return dataclasses.replace(self, steps=steps, final=final)

    @property
    def metadata(self) -> dict[str, Any]:
        return {"stop_reason": self.reason, "recording": self.stats.as_metadata(),
                "joined_in_progress": self.joined_in_progress}


class RecorderCore:
    """The live recorder's message handling and episode rules, without ROS.

    The recorder node (pac_ros/nodes/recorder.py) forwards its subscriptions here and the
    MCAP import (pac_ros/data/mcap_import.py) replays a bag here, so both convert, reject, pair and
    cut episodes alike. Messages are read by field name: rclpy messages and ``rosbags``'
    deserialised ones both work. Clock times (``now``) and stamps are in seconds.

    Episode rules: a new instruction stops the episode in progress and (``auto_start``)
    starts the next; success (``stop_on_success``) or ``max_steps`` steps stop it at the
    observation reached; a joint-state stamp more than ``CLOCK_JUMP_S`` older than the
    previous one (``split_on_clock_jump``) stops it there and starts over. Each stopped
    episode with steps goes to ``on_episode``. ``features``: pair steps with block poses; a
    callable is asked at each episode's start (the recorder node: does anyone publish them?), and
    an episode without them has steps without poses. Images are converted to the spec camera's
    encoding and size (pac_ros/data/images.py). ``log(level, text)`` gets "info", "warning",
    "error", and "reject" for a malformed message (counted in ``rejected``, by input in
    ``rejections``, with the first reason per input in ``first_rejection``). What validate
    would flag is malformed too: a joint state beyond the spec's plausible range, a
    command outside the joint limits.
    """

    CLOCK_JUMP_S = 1.0

    def __init__(self, spec: Spec, on_episode: Callable[[FinishedEpisode], None], *,
                 features: bool | Callable[[], bool] = True,
                 tolerance: float | None = None, auto_start: bool = True, stop_on_success: bool = True,
                 max_steps: int | None = None, split_on_clock_jump: bool = True, source: str = "expert",
                 checkpoint: str | None = None, log: Callable[[str, str], None] | None = None):
        self.spec = spec
        self.joint_names = list(spec.joint_names)  # the robot's names of the spec joints (a joint_name_map)
        self.on_episode = on_episode
        self.features = features
        self.auto_start = auto_start
        self.stop_on_success = stop_on_success
        self.max_steps = max_steps
        self.split_on_clock_jump = split_on_clock_jump
        self.source = source
        self.checkpoint = checkpoint
        self.log = log or (lambda level, text: None)
        # (a callable is first asked at the first episode's start)
        self.assembler = EpisodeAssembler(spec, tolerance=tolerance, features=not callable(features) and features)
        self.cameras = {c.name: c for c in spec.cameras}
        self.recording = False
        self.instruction = ""
        self.instruction_joined = False  # the instruction predates the recorder: its episode may be under way
        self.episode_joined = False
        self.stamp_offset_ns = 0  # subtracted from every header stamp (the MCAP import's unshift)
        self.last_until: float | None = None  # stamp of the last recorded episode's end
        self._last_joint_stamp: float | None = None
        self.received: Counter[str] = Counter()  # messages per input, for drop accounting
        self.empty_episodes = 0  # stopped with no step, so not handed over
        self.rejections: Counter[str] = Counter()
        self.first_rejection: dict[str, str] = {}
        # what validate accepts: measured positions within the plausible range, commands within the limits
        self.plausible = spec.plausible_positions()
        self.command_bounds = (spec.lower - COMMAND_TOLERANCE, spec.upper + COMMAND_TOLERANCE)

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    def _features_now(self) -> bool:
        return bool(self.features()) if callable(self.features) else bool(self.features)

    def _stamp(self, msg: Any) -> float:
        return stamp_seconds(msg.header.stamp, self.stamp_offset_ns)

    def _reject(self, key: str, what: str, exc: Exception) -> None:
        self.rejections[key] += 1
        self.first_rejection.setdefault(key, str(exc))
        self.log("reject", f"{what} rejected ({self.rejected} so far): {exc}")

    # ---- inputs -------------------------------------------------------------------
    def on_image(self, camera: str, msg: Any, now: float) -> None:
        key = f"image:{camera}"
        self.received[key] += 1
        try:
            image = camera_image(msg, self.cameras[camera])  # the spec camera's encoding and size
        except ConversionError as exc:
            self._reject(key, f"image '{camera}'", exc)
            return
        self.assembler.add_image(camera, self._stamp(msg), image, now)
        self._check_auto_stop()

    def on_joint_state(self, msg: Any, now: float) -> None:
        self.received["joint_states"] += 1
        try:
            q = joint_positions(msg, self.joint_names, finite=True, bounds=self.plausible,
                                bounds_name=self.spec.PLAUSIBLE_RANGE)
        except ConversionError as exc:
            self._reject("joint_states", "joint state", exc)
            return
        stamp = self._stamp(msg)
        last = self._last_joint_stamp
        failed = None
        if self.split_on_clock_jump and last is not None and stamp < last - self.CLOCK_JUMP_S:
            self.log("warning", f"time jumped back from {last:.3f} to {stamp:.3f} s: "
                                "closing the episode and starting over")
            failed = self._end("clock jumped backwards", until=last)
            self.restart_timeline()
            if self.auto_start and self.instruction:
                self.start()
        self._last_joint_stamp = stamp
        self.assembler.add_joint_state(stamp, q, now)
        if failed is not None:
            raise failed
        self._check_auto_stop()

    def on_block_poses(self, msg: Any, now: float) -> None:
        self.received["block_poses"] += 1
        try:
            poses = block_poses_array(msg, len(self.spec.blocks))
        except ConversionError as exc:
            self._reject("block_poses", "block poses", exc)
            return
        self.assembler.add_block_poses(self._stamp(msg), poses, now)

    def on_command(self, msg: Any, now: float) -> None:
        self.received["command"] += 1
        if not self.recording:
            return
        try:
            command = joint_positions(msg, self.spec.joint_names, finite=True, bounds=self.command_bounds,
                                      bounds_name="the joint limits")
        except ConversionError as exc:
            self._reject("command", "stamped command", exc)
            return
        command = np.clip(command, self.spec.lower, self.spec.upper)  # by rounding error at most
        self.assembler.add_command(self._stamp(msg), command, now)
        self._check_auto_stop()

    def _blank(self, text: str) -> bool:
        """Count an instruction; a blank one is rejected (True)."""
        self.received["instruction"] += 1
        if text.strip():
            return False
        self._reject("instruction", "instruction", ConversionError(f"blank instruction {text!r}"))
        return True

    def on_instruction(self, text: str, joined: bool = False) -> None:
        """A new instruction means a reset: the episode in progress ends, the next starts.
        ``joined``: it was given before the recorder started (a latched one after a restart), so
        the episode it starts may be under way; the episode's metadata says so."""
        if self._blank(text):
            return
        self.instruction, self.instruction_joined = text, joined
        failed = self._end("new instruction (reset)")
        if self.auto_start:
            self.start()
        if failed is not None:
            raise failed

    def set_instruction(self, text: str) -> None:
        """Change the instruction within the episode in progress (later commands carry it)."""
        if self._blank(text):
            return
        self.instruction = text
        self.assembler.set_instruction(text)

    def on_status(self, model_id: str) -> None:
        if model_id and self.source == "policy":
            self.checkpoint = model_id  # the model acting now (it may be swapped at run time)

    def on_reward(self, reward: float) -> None:
        self.received["reward"] += 1
        if not abs(reward) <= FLOAT32_MAX:  # NaN too: stored as float32, it could not be committed
            self._reject("reward", "reward", ConversionError(f"reward {reward!r} is not a finite float32"))
        elif self.recording:
            self.assembler.add_reward(reward)

    def on_success(self, success: bool) -> None:
        if self.recording:
            self.assembler.add_success(bool(success))
            self._check_auto_stop()

    # ---- episodes -----------------------------------------------------------------
    def _check_auto_stop(self) -> None:
        if not self.recording:
            return
        a = self.assembler
        if self.stop_on_success and a.success:
            self.stop("success", until=a.success_at)
        elif self.max_steps is not None and len(a.steps) >= self.max_steps and a.newest_stamp is not None and (
            a.newest_stamp > a.steps[-1].timestamp
        ):
            self.stop(f"{self.max_steps} steps", until=a.newest_stamp)

    def start(self) -> bool:
        if not self.instruction:
            self.log("warning", "cannot start an episode: no instruction received yet")
            return False
        # commands for observations after the last episode's end (or, the first time,
        # from the newest observation on) belong to this episode
        if self.last_until is not None:
            start = self.last_until
        elif self.assembler.newest_stamp is not None:
            start = self.assembler.newest_stamp - 1e-6
        else:
            start = float("-inf")
        self.assembler.features = self._features_now()
        self.assembler.reset(start=start, instruction=self.instruction)
        self.episode_joined = self.instruction_joined
        self.instruction_joined = False  # a later start (success, max_steps, ~/start) begins afresh
        self.recording = True
        return True

    def stop(self, reason: str, until: float | None = None, terminal: bool | None = None) -> FinishedEpisode | None:
        """End the episode at observation stamp ``until`` (default: the newest) and hand it to
        ``on_episode``. ``terminal`` defaults to success with the spec's terminate_on_success."""
        self.recording = False
        a = self.assembler
        steps, final = a.finish(until)
        self.last_until = final["timestamp"] if final is not None else (steps[-1].timestamp if steps else None)
        if not steps:
            self.empty_episodes += 1
            self.log("info", f"episode stopped ({reason}) with no steps: nothing to commit")
            return None
        success = a.success
        if terminal is None:
            terminal = success and self.spec.terminate_on_success
        stats = a.stats
        episode = FinishedEpisode(steps, final, success, terminal, reason, stats, self.source, self.checkpoint,
                                  joined_in_progress=self.episode_joined)
        self.log("info", f"episode stopped ({reason}): {len(steps)} steps, success={success}, "
                         f"dropped={stats.dropped_commands}, late={stats.late_messages}, gaps={len(stats.gaps)}")
        self.on_episode(episode)
        return episode

    def _end(self, reason: str, until: float | None = None) -> Exception | None:
        """Stop the episode in progress, if any. An error from ``on_episode`` is returned for the
        caller to raise once it has moved on (started the next episode), so a failed hand-over
        never stops recording."""
        if not self.recording:
            return None
        try:
            self.stop(reason, until=until)
        except Exception as exc:
            return exc
        return None

    def abandon(self, why: str) -> None:
        """Drop the episode in progress without committing it."""
        if self.recording:
            self.recording = False
            self.log("info", f"episode in progress abandoned ({why}): {len(self.assembler.steps)} steps")

    def restart_timeline(self) -> None:
        """Stamps start over (clock jump, or a new stamp shift): forget buffered inputs."""
        self.assembler.clear_inputs()
        self.last_until = None
        self._last_joint_stamp = None


def commit_episode(writer: DatasetWriter, episode: FinishedEpisode, seed: int | None = None,
                   metadata: dict[str, Any] | None = None) -> int:
    """Write a finished episode (its steps, then the final observation with a hold command)
    and commit it; returns its episode_index. On any error the episode is discarded."""
    spec = writer.spec
    buffer = writer.begin_episode(instruction=episode.instruction, source=episode.source,
                                  checkpoint=episode.checkpoint, seed=seed,
                                  metadata={**episode.metadata, **(metadata or {})})
    try:
        for step in episode.steps:
            buffer.add_step(timestamp=step.timestamp, joint_positions=step.joint_positions, images=step.images,
                            action=step.action, reward=step.reward, features=step.features,
                            instruction=step.instruction)
        final = episode.final
        if final is not None:
            q = final["joint_positions"]
            buffer.add_step(timestamp=final["timestamp"], joint_positions=q, images=final["images"],
                            action=spec.safe_command(q, q), reward=0.0, features=final["features"])
        return writer.commit(buffer, terminal=episode.terminal, success=episode.success,
                             dropped=episode.stats.dropped)
    except BaseException:
        try:
            writer.discard(buffer)
        except Exception:
            pass
        raise
