"""What the model sees of the blocks and what its actions mean: one mapping for training and deployment.

``joint`` control: an action is each joint's step in units of its max step
(``spec.normalize_action``) and the block features are the spec's poses as recorded.

``task`` control: an action is the grip site's motion (units of ``POS_UNIT``), its yaw
change (``YAW_UNIT``) and the gripper target (as in joint control); damped-least-squares
IK on the arm's model turns it into joint targets, pointing down. Block features are
ordered by their role in the instruction (top block, bottom block, the others in spec order), each position and
quaternion followed by its position relative to the grip site. Both make the expert's
commands a simple function of what the model sees (docs/learnability.md).

Training labels come from the recorded joint commands (forward kinematics of the command
against that of the current position), so any dataset trains either control.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pac_ros.model.config import TASK_BLOCK_DIM, PACConfig
from pac_ros.spec import Spec

POS_UNIT = 0.05  # m of grip motion per action unit
YAW_UNIT = 0.15  # rad of hand yaw per action unit
IK_ITERATIONS = 20


class Control:
    def __init__(self, config: PACConfig, spec: Spec):
        self.kind, self.spec = config.control, spec
        self.action_dim, self.feature_dim = config.action_dim(spec), config.feature_dim(spec)
        self._kin = None
        self._roles: dict[str, np.ndarray] = {}
        self._last_fk: tuple[bytes, tuple[np.ndarray, float]] | None = None

    @property
    def kinematics(self):
        if self._kin is None:  # the arm's MJCF model; imported here so joint control needs no MuJoCo
            from pac_ros.kinematics import GripKinematics

            self._kin = GripKinematics.from_mjcf(self.spec)
        return self._kin

    def grip_pose(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        """Forward kinematics of ``q``; a policy tick asks twice (features, then command), so the
        last answer is kept."""
        q = np.asarray(q, dtype=np.float64)
        key = q.tobytes()
        if self._last_fk is None or self._last_fk[0] != key:
            self._last_fk = (key, self.kinematics.fk(q))
        return self._last_fk[1]

    # ---- actions ------------------------------------------------------------------
    def action_labels(self, joints: np.ndarray, commands: np.ndarray) -> np.ndarray:
        """Recorded joint commands [T,n] issued at joint positions [T,n] -> actions [T,A] in [-1, 1]."""
        if self.kind == "joint":
            return self.spec.normalize_action(commands, joints).astype(np.float32)
        out = np.empty((len(joints), self.action_dim), dtype=np.float32)
        fk = self.kinematics.fk
        for t, (q, c) in enumerate(zip(np.asarray(joints, np.float64), np.asarray(commands, np.float64))):
            (g0, y0), (g1, y1) = fk(q), fk(c)
            out[t, :3] = (g1 - g0) / POS_UNIT
            out[t, 3] = _wrap(y1 - y0) / YAW_UNIT
        out[:, 4] = self.spec.normalize_action(commands, joints)[:, -1]
        return np.clip(out, -1.0, 1.0)

    def command(self, action: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Action [A] at joint positions ``current`` -> joint targets [n] (NaN stays NaN: hold);
        not yet clamped to limits and max step (``spec.safe_command`` does that)."""
        if self.kind == "joint":
            return self.spec.denormalize_action(action, current)
        action = np.asarray(action, dtype=np.float64)
        if not np.all(np.isfinite(action)):
            return np.full(self.spec.action_dim, np.nan)
        grip, yaw = self.grip_pose(current)
        arm = self.kinematics.ik(current[:-1], grip + action[:3] * POS_UNIT, yaw + action[3] * YAW_UNIT,
                                 iterations=IK_ITERATIONS)
        joint_action = np.concatenate([np.zeros(len(arm)), action[4:]])  # the gripper's action is joint control's
        return np.concatenate([arm, self.spec.denormalize_action(joint_action, current)[-1:]])

    # ---- block features -----------------------------------------------------------
    def features(self, joints: np.ndarray, poses: np.ndarray, instructions: Sequence[str]) -> np.ndarray:
        """Block poses [T, spec.feature_dim] (spec order) -> the model's features [T, feature_dim]."""
        poses = np.asarray(poses, dtype=np.float32)
        if self.kind == "joint":
            return poses
        T, n_blocks = len(poses), len(self.spec.blocks)
        blocks = poses.reshape(T, n_blocks, 7)
        order = np.stack([self.role_order(text) for text in instructions])
        blocks = np.take_along_axis(blocks, order[:, :, None], axis=1)
        grip = np.stack([self.grip_pose(q)[0] for q in np.asarray(joints, np.float64)]).astype(np.float32)
        out = np.concatenate([blocks, blocks[:, :, :3] - grip[:, None, :]], axis=2)
        assert out.shape[2] == TASK_BLOCK_DIM
        return out.reshape(T, -1)

    def role_order(self, instruction: str) -> np.ndarray:
        """Block indices: the instruction's top block, its bottom block, then the rest in spec order."""
        order = self._roles.get(instruction)
        if order is None:
            top, bottom = self.spec.parse_instruction(instruction)  # ValueError naming the instruction
            blocks = list(self.spec.blocks)
            rest = [i for i, b in enumerate(blocks) if b not in (top, bottom)]
            order = self._roles[instruction] = np.array([blocks.index(top), blocks.index(bottom), *rest])
        return order


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)
