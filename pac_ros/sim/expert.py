"""Scripted stacking expert: a state-feedback controller over privileged simulator state.

Cartesian set-points for the grip site move toward the current goal at a bounded
speed; damped-least-squares inverse kinematics on MuJoCo Jacobians turns them into
joint targets, with the gripper pointing down and its yaw aligned to the block. Its
quality knobs (noise, wrong block, early release, pauses) give datasets of chosen
sub-optimality.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np

from pac_ros.sim.env import BLOCK_HALF, BLOCK_SIZE, HOME_ARM, StackingEnv


@dataclass(frozen=True)
class ExpertConfig:
    noise: float = 0.0  # std of Gaussian action noise, normalised action units
    wrong_block_prob: float = 0.0  # per episode: pick the wrong top or the wrong bottom block
    drop_prob: float = 0.0  # per carrying step: release the block early
    pause_prob: float = 0.0  # per step: hold still
    swap_prob: float = 0.0  # per episode: roles swapped, the bottom block stacked on the top one

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"ExpertConfig.{f.name} must be a finite number >= 0, got {value!r}")
            if f.name != "noise" and value > 1:
                raise ValueError(f"ExpertConfig.{f.name} is a probability, got {value!r}")

    @classmethod
    def preset(cls, name: str) -> "ExpertConfig":
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown expert preset {name!r}; choose from {sorted(PRESETS)}") from None


PRESETS = {
    "perfect": ExpertConfig(),
    "noisy": ExpertConfig(noise=0.1, wrong_block_prob=0.05, drop_prob=0.02, pause_prob=0.05),
    "poor": ExpertConfig(noise=0.2, wrong_block_prob=0.5, drop_prob=0.1, pause_prob=0.2),
    # a consistent mistake: the instruction read backwards, otherwise competent
    "swapped": ExpertConfig(noise=0.02, swap_prob=1.0),
}

# Geometry of the script (m). The grip site sits between the pads, 25 mm above the tips.
HOVER = 0.18  # highest grip height above a block's centre on the way to it
GRASP_DZ = 0.01  # grip height above the block centre when closing
CARRY_Z = 0.13  # highest grip height while carrying
RETREAT_Z = 0.20
PLACE_GAP = 0.004  # held block's bottom this far above the bottom block's top when releasing
SPEED = 0.05  # max set-point move per control step
# Funnels: the set-point's height above its target grows with the remaining error, so the
# hand descends only as it lines up (m of height per m of xy error, per rad of yaw error).
FUNNEL_XY, FUNNEL_YAW = 3.0, 0.3
OPEN, CLOSED = 0.04, 0.0


class ScriptedExpert:
    """A feedback controller whose command depends only on the current state (no phase
    machine, no step counters, no target that flips with the hand's own yaw), so a policy
    can learn it from observations: reach through a funnel above the top block, close
    when lined up, carry through a funnel above the bottom block, open when placed.
    ``phase`` names what it is doing, for logs and metadata."""

    def __init__(self, env: StackingEnv, config: ExpertConfig | None = None, seed: int = 0):
        self.env = env
        self.config = config if config is not None else ExpertConfig()
        self.seed = int(seed)
        self.spec = env.spec
        self._kin = env.kinematics
        self._reference_yaw = self._kin.fk(HOME_ARM)[1]
        self._episode = 0
        self.reset()

    # ---- episode -------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new episode; call after ``env.reset``."""
        self.rng = np.random.default_rng([self.seed, self._episode, self.env.seed or 0])
        self._episode += 1
        top, bottom = self.env.target_pair
        if self.rng.random() < self.config.wrong_block_prob:
            others = [b for b in self.spec.blocks if b not in (top, bottom)]
            if others:
                wrong = others[int(self.rng.integers(len(others)))]
                if self.rng.random() < 0.5:
                    top = wrong
                else:
                    bottom = wrong
            else:
                top, bottom = bottom, top
        if self.config.swap_prob and self.rng.random() < self.config.swap_prob:
            top, bottom = self.env.target_pair[::-1]
        self.pair = (top, bottom)
        self.phase = "reach"
        self.gripper_cmd = OPEN
        self.release_steps = 0  # an injected early release in progress
        self.wrong = self.pair != self.env.target_pair

    # ---- acting --------------------------------------------------------------------
    def act(self) -> np.ndarray:
        """Absolute joint targets (spec order), within max_step of the current position."""
        env, cfg = self.env, self.config
        current = env.joint_positions()
        if cfg.pause_prob and self.rng.random() < cfg.pause_prob:
            command = current.copy()
            command[-1] = self.gripper_cmd
        else:
            goal, yaw = self._plan()
            q = self._ik(goal, yaw, current[:-1])
            command = np.concatenate([q, [self.gripper_cmd]])
        step = self.spec.max_step
        command = np.clip(command, current - step, current + step)
        if cfg.noise:
            action = self.spec.normalize_action(command, current)
            action = action + self.rng.normal(0.0, cfg.noise, action.shape)
            command = self.spec.denormalize_action(action, current)
        return np.clip(command, self.spec.lower, self.spec.upper)

    def _plan(self) -> tuple[np.ndarray, float]:
        """The grip set-point and hand yaw to aim for now, and the gripper command."""
        env = self.env
        top, bottom = self.pair
        grip = env.grip_position()
        hand_yaw = self._hand_yaw()
        p_top, q_top = env.block_pose(top)
        p_bot, q_bot = env.block_pose(bottom)
        opening = env.joint_positions()[-1]
        if self.release_steps > 0:
            self.release_steps -= 1
            self.phase, self.gripper_cmd = "drop", OPEN
            return grip + [0.0, 0.0, 0.01], hand_yaw
        if self._placed(p_top, p_bot):
            self.gripper_cmd = OPEN
            if opening < OPEN - 0.008:
                self.phase = "release"
                return grip, hand_yaw
            self.phase = "retreat"
            return np.array([grip[0], grip[1], RETREAT_Z]), hand_yaw
        if self._holding(p_top, grip, opening):
            if self.config.drop_prob and p_top[2] > BLOCK_HALF + 0.02 and self.rng.random() < self.config.drop_prob:
                self.release_steps = 3
            self.phase, self.gripper_cmd = "carry", CLOSED
            return self._carry(grip, hand_yaw, p_top, q_top, p_bot, q_bot)
        # reach the top block and close on it
        yaw_goal = self._grasp_yaw(_block_yaw(q_top))
        yaw_err = abs(_wrap(yaw_goal - hand_yaw))
        xy_err = float(np.linalg.norm(grip[:2] - p_top[:2]))
        grasp_z = p_top[2] + GRASP_DZ
        at_grasp = xy_err < 0.01 and abs(grip[2] - grasp_z) < 0.008 and yaw_err < 0.15
        if at_grasp and opening < BLOCK_HALF - 0.006:  # closed on nothing: open and back off
            self.phase, self.gripper_cmd = "regrasp", OPEN
            return grip + [0.0, 0.0, 0.02], yaw_goal
        self.phase = "grasp" if at_grasp else "reach"
        self.gripper_cmd = CLOSED if at_grasp else OPEN
        z = grasp_z + min(HOVER - GRASP_DZ, _funnel(xy_err, yaw_err))
        return np.array([p_top[0], p_top[1], z]), yaw_goal

    def _carry(self, grip, hand_yaw, p_top, q_top, p_bot, q_bot) -> tuple[np.ndarray, float]:
        """Lift, then move the held block over the bottom one while turning it to match, lowering as it lines up."""
        offset = grip - p_top
        turn = _wrap(_block_yaw(q_bot) - _block_yaw(q_top))
        turn = (turn + np.pi / 2) % np.pi - np.pi / 2  # a half turn of a cube looks the same
        place_z = p_bot[2] + BLOCK_SIZE + PLACE_GAP + offset[2]
        target_xy = p_bot[:2] + offset[:2]
        xy_err = float(np.linalg.norm(target_xy - grip[:2]))
        z = place_z + min(CARRY_Z - place_z, _funnel(xy_err, abs(turn)))
        if xy_err > 0.03:  # far from the target: move across only as the block clears the table
            clear = float(np.clip((p_top[2] - BLOCK_HALF - 0.01) / 0.04, 0.0, 1.0))
            xy = grip[:2] + clear * (target_xy - grip[:2])
            z = max(z, grip[2]) if clear < 1.0 else z
        else:
            xy = target_xy
        return np.array([xy[0], xy[1], z]), hand_yaw + turn

    def _grasp_yaw(self, block_yaw: float) -> float:
        """The face-aligned hand yaw nearest the home posture's: a function of the block alone."""
        return self._reference_yaw + _wrap_quarter(block_yaw - self._reference_yaw)

    @staticmethod
    def _placed(p_top: np.ndarray, p_bot: np.ndarray) -> bool:
        return bool(np.linalg.norm(p_top[:2] - p_bot[:2]) < 0.012
                    and abs(p_top[2] - p_bot[2] - BLOCK_SIZE - 0.5 * PLACE_GAP) < 0.006)

    @staticmethod
    def _holding(p_top: np.ndarray, grip: np.ndarray, opening: float) -> bool:
        """The top block sits between the closed fingers."""
        near = np.linalg.norm(p_top - (grip - [0.0, 0.0, GRASP_DZ])) < 0.02
        return bool(near and BLOCK_HALF - 0.006 < opening < BLOCK_HALF + 0.0015)

    def _hand_yaw(self) -> float:
        x = self.env.data.site_xmat[self.env.grip_site].reshape(3, 3)[:, 0]
        return float(np.arctan2(x[1], x[0]))

    # ---- inverse kinematics --------------------------------------------------------
    def _ik(self, goal: np.ndarray, yaw: float, q_arm: np.ndarray) -> np.ndarray:
        """Arm joints that put the grip site one bounded step toward ``goal``, pointing down at ``yaw``."""
        grip = self.env.grip_position()
        delta = goal - grip
        dist = np.linalg.norm(delta)
        target = goal if dist <= SPEED else grip + delta * (SPEED / dist)
        return self._kin.ik(q_arm, target, yaw, qpos=self.env.data.qpos)


def _funnel(xy_err: float, yaw_err: float) -> float:
    return FUNNEL_XY * max(xy_err - 0.003, 0.0) + FUNNEL_YAW * yaw_err


def _block_yaw(quat: np.ndarray) -> float:
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, quat)
    R = R.reshape(3, 3)
    return float(np.arctan2(R[1, 0], R[0, 0]))


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def _wrap_quarter(a: float) -> float:
    """Angle modulo a quarter turn, in [-pi/4, pi/4)."""
    return float((a + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def run_episode(env: StackingEnv, expert: ScriptedExpert, seed: int, instruction: str | None = None):
    """Roll one expert episode; returns (success, steps)."""
    env.reset(seed, instruction)
    expert.reset()
    steps, success = 0, False
    while True:
        _, _, terminated, truncated, info = env.step(expert.act())
        steps, success = info["step"], info["success"]
        if terminated or truncated:
            return success, steps
