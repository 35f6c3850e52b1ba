"""Turning stamped message streams into episode steps (ROS-free; used by the recorder
node and the MCAP import: ``EpisodeAssembler`` pairs, ``RecorderCore`` cuts episodes).

Pairing rule (docs/design.md, section 5): whoever commands the robot stamps each command with the
stamp of the observation it was computed from. A step is that command plus the
joint state and the image per camera nearest to its stamp (within ``tolerance``).
A command whose observation has not arrived yet waits (messages on different topics
may arrive out of order) until newer data shows it will not come, or until
``wait`` seconds of clock have passed; then it is dropped and counted.

Rewards and success carry no stamp (std_msgs): they are published after the
observation that the step led to, so one belongs to the latest step before the
newest joint state at its arrival.
"""
from __future__ import annotations

import bisect
import dataclasses
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pac_ros.data.images import camera_image
from pac_ros.data.messages import FLOAT32_MAX, ConversionError, block_poses_array, joint_positions, stamp_seconds
from pac_ros.data.writer import DatasetWriter
from pac_ros.spec import COMMAND_TOLERANCE, Spec


@dataclass
class Step:
    timestamp: float
    joint_positions: np.ndarray
    images: dict[str, np.ndarray]
    action: np.ndarray
    features: np.ndarray | None
    instruction: str
    reward: float = 0.0


@dataclass
class RecordingStats:
    steps: int = 0
    dropped_commands: int = 0  # no observation within tolerance of the command's stamp
    late_messages: int = 0  # arrived with a stamp older than the stream's newest
    ignored_commands: int = 0  # stamped at/before the episode's start or its end, or repeated
    unassigned_rewards: int = 0  # arrived before any step
    gaps: list[tuple[str, float, float]] = field(default_factory=list)  # (input, from, to)

    @property
    def dropped(self) -> int:
        return self.dropped_commands + self.late_messages

    def as_metadata(self) -> dict[str, Any]:
        return {
            "dropped_commands": self.dropped_commands,
            "late_messages": self.late_messages,
            "ignored_commands": self.ignored_commands,
            "unassigned_rewards": self.unassigned_rewards,
            "gaps": [{"input": n, "from": a, "to": b} for n, a, b in self.gaps],
        }


class _Stream:
    """Recent stamped samples of one input, kept sorted by stamp for nearest lookup."""

    def __init__(self, horizon: float):
        self.horizon = horizon
        self.stamps: deque[float] = deque()
        self.values: deque[Any] = deque()

    def add(self, stamp: float, value: Any) -> bool:
        """Append; False (and not stored) when older than the newest sample."""
        if self.stamps and stamp <= self.stamps[-1]:
            return False
        self.stamps.append(stamp)
        self.values.append(value)
        while self.stamps and self.stamps[0] < stamp - self.horizon:
            self.stamps.popleft()
            self.values.popleft()
        return True

    @property
    def newest(self) -> float | None:
        return self.stamps[-1] if self.stamps else None

    def at_or_before(self, stamp: float) -> float | None:
        i = bisect.bisect_right(self.stamps, stamp) - 1
        return self.stamps[i] if i >= 0 else None

    def nearest(self, stamp: float, tolerance: float) -> Any | None:
        if not self.stamps:
            return None
        stamps = self.stamps
        i = bisect.bisect_left(stamps, stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(stamps) and abs(stamps[j] - stamp) <= tolerance:
                if best is None or abs(stamps[j] - stamp) < abs(stamps[best] - stamp):
                    best = j
        return None if best is None else self.values[best]

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()


class EpisodeAssembler:
    """Pairs stamped commands with the observations they were computed from.

    Feed it messages as they arrive (stamps and clock in seconds); ``finish`` returns
    the episode's steps (with rewards assigned) and the final observation.
    """

    def __init__(self, spec: Spec, tolerance: float | None = None, wait: float | None = None,
                 features: bool = False, gap: float | None = None):
        self.spec = spec
        self.tolerance = 0.5 * spec.control_period if tolerance is None else tolerance
        self.wait = 2.0 * spec.control_period if wait is None else wait
        self.gap = 5.0 * spec.control_period if gap is None else gap
        self.features = features
        horizon = max(2.0, 4 * self.wait)
        self._joints = _Stream(horizon)
        self._images = {c: _Stream(horizon) for c in spec.camera_names}
        self._poses = _Stream(horizon)
        self.reset(start=0.0, instruction="")

    def reset(self, start: float, instruction: str) -> None:
        """Begin a new episode at clock time ``start``; input buffers are kept."""
        self.start = start
        self.instruction = instruction
        self.steps: list[Step] = []
        self.stats = RecordingStats()
        self._pending: deque[tuple[float, np.ndarray, str]] = deque()
        self._rewards: list[tuple[float, float]] = []
        self.success_at: float | None = None
        self._last_seen: dict[str, float] = {}

    def clear_inputs(self) -> None:
        """Forget buffered inputs (after a clock jump backwards)."""
        for stream in (self._joints, self._poses, *self._images.values()):
            stream.clear()
        self._pending.clear()

    # ---- inputs -------------------------------------------------------------------
    def add_joint_state(self, stamp: float, positions: np.ndarray, now: float) -> None:
        self._add("joint_states", self._joints, stamp, positions, now)

    def add_image(self, camera: str, stamp: float, image: np.ndarray, now: float) -> None:
        self._add(f"image:{camera}", self._images[camera], stamp, image, now)

    def add_block_poses(self, stamp: float, poses: np.ndarray, now: float) -> None:
        self._add("block_poses", self._poses, stamp, poses, now)

    def add_command(self, stamp: float, command: np.ndarray, now: float) -> None:
        if stamp <= self.start or (self._pending and stamp <= self._pending[-1][0]) or (
            self.steps and stamp <= self.steps[-1].timestamp
        ):
            self.stats.ignored_commands += 1
            return
        self._pending.append((stamp, np.asarray(command, dtype=np.float64), self.instruction))
        self.resolve(now)

    def add_reward(self, reward: float) -> None:
        """A reward belongs to the step that led to the newest observation."""
        self._rewards.append((self.newest_stamp, float(reward)))

    def add_success(self, success: bool) -> None:
        if success and self.success_at is None and self.newest_stamp is not None:
            self.success_at = self.newest_stamp

    def set_instruction(self, instruction: str) -> None:
        self.instruction = instruction

    def _add(self, name: str, stream: _Stream, stamp: float, value: Any, now: float) -> None:
        previous = self._last_seen.get(name)
        if previous is not None and stamp - previous > self.gap and stamp >= self.start:
            self.stats.gaps.append((name, previous, stamp))
        if stream.add(stamp, value):
            self._last_seen[name] = stamp
            self.resolve(now)
        else:
            self.stats.late_messages += 1

    # ---- pairing ------------------------------------------------------------------
    def _streams(self) -> list[_Stream]:
        streams = [self._joints, *self._images.values()]
        return streams + [self._poses] if self.features else streams

    def resolve(self, now: float) -> int:
        """Turn pending commands into steps where possible; returns steps made."""
        made = 0
        while self._pending:
            stamp, command, instruction = self._pending[0]
            found = [s.nearest(stamp, self.tolerance) for s in self._streams()]
            if all(v is not None for v in found):
                self._pending.popleft()
                self._make_step(stamp, command, instruction, found)
                made += 1
                continue
            # a stream that already has data past the stamp's window won't supply it
            hopeless = any(
                v is None and s.newest is not None and s.newest > stamp + self.tolerance
                for v, s in zip(found, self._streams())
            )
            if hopeless or now - stamp > self.wait:
                self._pending.popleft()
                self.stats.dropped_commands += 1
                continue
            break
        return made

    def _make_step(self, stamp: float, command: np.ndarray, instruction: str, found: list) -> None:
        joints, *rest = found
        images = dict(zip(self._images, rest[: len(self._images)]))
        poses = rest[len(self._images)] if self.features else None
        self.steps.append(Step(stamp, joints, images, command, poses, instruction))
        self.stats.steps = len(self.steps)

    @property
    def newest_stamp(self) -> float | None:
        return self._joints.newest

    def observation_at(self, stamp: float) -> dict[str, Any] | None:
        """The joint state at ``stamp`` with the nearest image per camera."""
        found = [s.nearest(stamp, max(self.tolerance, self.wait)) for s in self._streams()]
        if any(v is None for v in found):
            return None
        joints, *rest = found
        return {
            "timestamp": stamp,
            "joint_positions": joints,
            "images": dict(zip(self._images, rest[: len(self._images)])),
            "features": rest[len(self._images)] if self.features else None,
        }

    def finish(self, until: float | None = None) -> tuple[list[Step], dict[str, Any] | None]:
        """Close the episode at observation stamp ``until`` (default: the newest).

        Settles pending commands, drops steps computed from observations at or after
        ``until``, assigns rewards, and returns (steps, final observation or None when
        no observation follows the last step; then the last step is the final row).
        """
        if until is None:
            until = self.newest_stamp if self.newest_stamp is not None else float("inf")
        self._close_gaps()
        self.resolve(float("inf"))
        kept = [s for s in self.steps if s.timestamp < until]
        self.stats.ignored_commands += len(self.steps) - len(kept)
        self.steps = kept
        stamps = [s.timestamp for s in kept]
        for t, reward in self._rewards:
            i = -1 if t is None else bisect.bisect_left(stamps, t) - 1
            if i < 0 or t > until:
                self.stats.unassigned_rewards += int(i < 0)
                continue
            kept[i].reward += reward
        self.stats.steps = len(kept)
        final = None
        stamp = self._joints.at_or_before(until) if until != float("inf") else self._joints.newest
        if stamp is not None and (not kept or stamp > kept[-1].timestamp):
            final = self.observation_at(stamp)
        return kept, final

    def _close_gaps(self) -> None:
        """An input still silent at the end (more than ``gap`` before the newest stamp of any
        input) is a gap up to that stamp."""
        streams = [self._joints, self._poses, *self._images.values()]
        newest = max((s.newest for s in streams if s.newest is not None), default=None)
        for name, seen in self._last_seen.items():
            if newest is not None and newest - seen > self.gap:
                self.stats.gaps.append((name, seen, newest))

    @property
    def success(self) -> bool:
        return self.success_at is not None


# ---- the recorder's episode logic over messages ---------------------------------------
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
        return {"stop_reason": self.reason, "recording": self.stats.as_metadata()}


class RecorderCore:
    """The live recorder's message handling and episode rules, without ROS.

    The recorder node (pac_ros/nodes/recorder.py) forwards its subscriptions here and the
    MCAP import (pac_ros/data/mcap.py) replays a bag here, so both convert, reject, pair and
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
            q = joint_positions(msg, self.spec.joint_names, finite=True, bounds=self.plausible,
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

    def on_instruction(self, text: str) -> None:
        """A new instruction means a reset: the episode in progress ends, the next starts."""
        if self._blank(text):
            return
        self.instruction = text
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
        episode = FinishedEpisode(steps, final, success, terminal, reason, stats, self.source, self.checkpoint)
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
