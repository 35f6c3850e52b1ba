"""Pairing stamped message streams into episode steps (ROS-free): ``EpisodeAssembler``,
used by ``RecorderCore`` (recording.py), so by the recorder node and the MCAP import.

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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pac_ros.spec import Spec


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
