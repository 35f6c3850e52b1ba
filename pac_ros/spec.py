"""The robot/task contract shared by the sim, the nodes, the dataset and the model.

One typed description, loaded from ``config/*.yaml`` and validated with errors that
name the file, the field and the problem. A checkpoint and a dataset carry the spec
they were made with (``Spec.to_dict``) and are checked against the robot's spec with
``Spec.check_compatible``.

Action convention: an action *is* the joint command — absolute position targets for
every actuated joint in ``joints`` order (arm joints, then the gripper), exactly what
a ros2_control ``forward_position_controller`` takes. ``normalize_action`` maps it to
the model's [-1, 1] space: arm joints as a step from the current position in units of
``max_step``, the gripper as its target within its limits.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import yaml

from pac_ros.config_loader import load
from pac_ros.errors import PacRosError
from pac_ros.paths import share_file

Encoding = Literal["rgb8", "bgr8", "mono8"]
ENCODINGS = typing.get_args(Encoding)
# Measured positions may pass the limits under contact (the sim's fingers open ~6 mm past
# 40 mm); beyond this fraction of a joint's range they are wrong: units, joint order, a sensor.
POSITION_SLACK = 0.25
# A block's pose in the features: position, then orientation as a wxyz quaternion.
POSE_NAMES = ("x", "y", "z", "qw", "qx", "qy", "qz")
# A recorded command may pass the limits by float rounding only.
COMMAND_TOLERANCE = 1e-6


class SpecError(PacRosError, ValueError):
    """A spec file or dict that does not describe a valid robot/task."""


@dataclass(frozen=True)
class JointSpec:
    name: str
    lower: float
    upper: float
    max_step: float  # largest position change per control tick, joint units


@dataclass(frozen=True)
class CameraSpec:
    name: str
    width: int
    height: int
    encoding: Encoding = "rgb8"

    @property
    def channels(self) -> int:
        return 1 if self.encoding == "mono8" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class Spec:
    name: str
    arm_joints: tuple[JointSpec, ...]
    gripper: JointSpec
    cameras: tuple[CameraSpec, ...]
    control_rate_hz: float
    max_episode_steps: int
    blocks: tuple[str, ...]
    instruction_template: str
    terminate_on_success: bool = True
    physics_rate_hz: float = 500.0

    # ---- derived -------------------------------------------------------------------
    @property
    def joints(self) -> tuple[JointSpec, ...]:
        """Every commanded joint, in command order: arm joints then the gripper."""
        return self.arm_joints + (self.gripper,)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def action_dim(self) -> int:
        return len(self.joints)

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints], dtype=np.float64)

    @property
    def max_step(self) -> np.ndarray:
        return np.array([j.max_step for j in self.joints], dtype=np.float64)

    PLAUSIBLE_RANGE = f"the plausible range (limits ± {POSITION_SLACK:.0%} of the range)"

    def plausible_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of a believable measured position: the limits widened by ``POSITION_SLACK``."""
        slack = POSITION_SLACK * (self.upper - self.lower)
        return self.lower - slack, self.upper + slack

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def feature_dim(self) -> int:
        """Size of the privileged block-pose vector (position + quaternion per block)."""
        return len(POSE_NAMES) * len(self.blocks)

    def instructions(self) -> list[str]:
        """Every instruction of the task: each ordered pair of distinct blocks."""
        return [
            self.instruction(top, bottom)
            for top in self.blocks
            for bottom in self.blocks
            if top != bottom
        ]

    def instruction(self, top: str, bottom: str) -> str:
        return self.instruction_template.format(top=top, bottom=bottom)

    def parse_instruction(self, text: str) -> tuple[str, str]:
        """(top, bottom) block names of an instruction of this task, or SpecError."""
        for top in self.blocks:
            for bottom in self.blocks:
                if top != bottom and self.instruction(top, bottom) == text.strip().lower():
                    return top, bottom
        raise SpecError(
            f"instruction {text!r} is not one of this task's instructions "
            f"(template {self.instruction_template!r}, blocks {list(self.blocks)})"
        )

    # ---- command safety and the model's action space -------------------------------
    def safe_command(self, command: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Clamp a command to a max step from ``current`` and to the joint limits.

        Non-finite entries hold the current position. Always returns finite values
        within limits, whatever ``command`` holds.
        """
        command = np.asarray(command, dtype=np.float64).reshape(-1)
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        if command.shape != (self.action_dim,) or current.shape != (self.action_dim,):
            raise ValueError(
                f"command and current position must have {self.action_dim} values "
                f"({', '.join(self.joint_names)}); got {command.shape[0]} and {current.shape[0]}"
            )
        lower, upper, step = self.lower, self.upper, self.max_step
        current = np.clip(np.nan_to_num(current, nan=0.0, posinf=0.0, neginf=0.0), lower, upper)
        command = np.where(np.isfinite(command), command, current)
        command = np.clip(command, current - step, current + step)
        return np.clip(command, lower, upper)

    def normalize_action(self, command: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Joint command -> model action in [-1, 1] (batched over leading axes)."""
        command = np.asarray(command, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        n = len(self.arm_joints)
        arm = (command[..., :n] - current[..., :n]) / self.max_step[:n]
        g = self.gripper
        grip = 2.0 * (command[..., n:] - g.lower) / (g.upper - g.lower) - 1.0
        return np.clip(np.concatenate([arm, grip], axis=-1), -1.0, 1.0).astype(np.float32)

    def denormalize_action(self, action: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Model action in [-1, 1] -> joint command (inverse of ``normalize_action``)."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        current = np.asarray(current, dtype=np.float64)
        n = len(self.arm_joints)
        arm = current[..., :n] + action[..., :n] * self.max_step[:n]
        g = self.gripper
        grip = g.lower + (action[..., n:] + 1.0) * 0.5 * (g.upper - g.lower)
        return np.concatenate([arm, grip], axis=-1)

    # ---- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arm_joints": [dataclasses.asdict(j) for j in self.arm_joints],
            "gripper": dataclasses.asdict(self.gripper),
            "cameras": [dataclasses.asdict(c) for c in self.cameras],
            "control_rate_hz": self.control_rate_hz,
            "max_episode_steps": self.max_episode_steps,
            "blocks": list(self.blocks),
            "instruction_template": self.instruction_template,
            "terminate_on_success": self.terminate_on_success,
            "physics_rate_hz": self.physics_rate_hz,
        }

    def fingerprint(self) -> str:
        """Short stable hash of the spec, for dataset and checkpoint sidecars."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_compatible(self, other: "Spec", what: str = "data") -> None:
        """Raise SpecError naming every difference between ``other`` and this spec."""
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [
            f"{key}: {what} has {theirs[key]!r}, robot has {mine[key]!r}"
            for key in mine
            if mine[key] != theirs[key]
        ]
        if diffs:
            raise SpecError(f"{what} was made for a different spec:\n  " + "\n  ".join(diffs))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "Spec":
        return _parse_spec(data, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Spec":
        """Load and validate a spec YAML (``config/robot.yaml`` by default).

        The file may hold the spec at its top level or under a ``spec:`` key.
        """
        path = Path(path) if path is not None else default_spec_path()
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"{path}: cannot read spec file: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from exc
        if isinstance(data, Mapping) and "spec" in data:
            data = data["spec"]
        return _parse_spec(data, str(path))


def default_spec_path() -> Path:
    return share_file("config", "robot.yaml")


def default_spec() -> Spec:
    return Spec.load(default_spec_path())


# ---- validation: types by the loader, values here --------------------------------------
def _parse_spec(data: Any, source: str) -> Spec:
    spec = load(Spec, data, source, SpecError)
    for i, joint in enumerate(spec.arm_joints):
        _check_joint(joint, f"{source}: arm_joints[{i}]")
    _check_joint(spec.gripper, f"{source}: gripper")
    for i, cam in enumerate(spec.cameras):
        where = f"{source}: cameras[{i}]"
        _non_empty(cam.name, f"{where}.name")
        for key, value in (("width", cam.width), ("height", cam.height)):
            if not 8 <= value <= 4096:
                raise SpecError(f"{where} ({cam.name}).{key}: must be in [8, 4096], got {value}")
    _non_empty(spec.name, f"{source}: name")
    if not spec.arm_joints:
        raise SpecError(f"{source}: arm_joints must be a non-empty list")
    _no_duplicates(spec.joint_names, f"{source}: joint names")
    _no_duplicates(spec.camera_names, f"{source}: camera names")
    rate, physics = spec.control_rate_hz, spec.physics_rate_hz
    if not 0.0 < rate <= 1000.0:
        raise SpecError(f"{source}: control_rate_hz must be in (0, 1000], got {rate}")
    if physics < rate or abs(physics / rate - round(physics / rate)) > 1e-9:
        raise SpecError(
            f"{source}: physics_rate_hz ({physics}) must be a whole multiple of control_rate_hz ({rate})"
        )
    if spec.max_episode_steps < 1:
        raise SpecError(f"{source}: max_episode_steps must be >= 1, got {spec.max_episode_steps}")
    if len(spec.blocks) < 2:
        raise SpecError(f"{source}: blocks must be a list of at least two block names")
    for i, block in enumerate(spec.blocks):
        _non_empty(block, f"{source}: blocks[{i}]")
    _no_duplicates(list(spec.blocks), f"{source}: blocks")
    template = spec.instruction_template
    if "{top}" not in template or "{bottom}" not in template:
        raise SpecError(f"{source}: instruction_template must contain {{top}} and {{bottom}}: {template!r}")
    return spec


def _check_joint(joint: JointSpec, where: str) -> None:
    _non_empty(joint.name, f"{where}.name")
    where = f"{where} ({joint.name})"
    if not joint.lower < joint.upper:
        raise SpecError(f"{where}: limits inverted or empty: lower {joint.lower} >= upper {joint.upper}")
    if not 0.0 < joint.max_step <= joint.upper - joint.lower:
        raise SpecError(f"{where}.max_step: must be in (0, upper - lower], got {joint.max_step}")


def _non_empty(name: str, where: str) -> None:
    if not name.strip():
        raise SpecError(f"{where}: expected a non-empty string, got {name!r}")


def _no_duplicates(names: list[str], where: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{where}: duplicated {dupes}")
