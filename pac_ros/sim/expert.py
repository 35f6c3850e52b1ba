"""Scripted stacking expert: a phase machine over privileged simulator state.

Cartesian set-points for the grip site move toward each phase's goal at a bounded
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

from pac_ros.sim.env import BLOCK_HALF, BLOCK_SIZE, StackingEnv
from pac_ros.sim.kinematics import GripKinematics


@dataclass(frozen=True)
class ExpertConfig:
    noise: float = 0.0  # std of Gaussian action noise, normalised action units
    wrong_block_prob: float = 0.0  # per episode: pick the wrong top or the wrong bottom block
    drop_prob: float = 0.0  # per carrying step: release the block early
    pause_prob: float = 0.0  # per step: hold still

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
}

# Geometry of the script (m). The grip site sits between the pads, 25 mm above the tips.
HOVER = 0.08  # grip height above a block's centre before descending
GRASP_DZ = 0.01  # grip height above the block centre when closing
CARRY_Z = 0.13  # grip height while carrying
RETREAT_Z = 0.20
PLACE_GAP = 0.004  # held block's bottom this far above the bottom block's top when releasing
SPEED = 0.05  # max set-point move per control step
OPEN, CLOSED = 0.04, 0.0


class ScriptedExpert:
    def __init__(self, env: StackingEnv, config: ExpertConfig | None = None, seed: int = 0):
        self.env = env
        self.config = config if config is not None else ExpertConfig()
        self.seed = int(seed)
        self.spec = env.spec
        self._kin = GripKinematics(env)
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
        self.pair = (top, bottom)
        self.phase = "approach"
        self.phase_steps = 0
        self.gripper_cmd = OPEN
        self.wrong = self.pair != self.env.target_pair

    def _set_phase(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

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
        """Advance the phase machine; the grip set-point and hand yaw to aim for."""
        env = self.env
        top, bottom = self.pair
        grip = env.grip_position()
        hand_yaw = self._hand_yaw()
        p_top, q_top = env.block_pose(top)
        p_bot, q_bot = env.block_pose(bottom)
        opening = env.joint_positions()[-1]
        self.phase_steps += 1
        phase = self.phase

        if phase in ("lift", "carry", "lower") and not self._holding(top, grip):
            self.gripper_cmd = OPEN
            self._set_phase("approach")
            phase = "approach"
        if phase in ("lift", "carry") and self.config.drop_prob and self.rng.random() < self.config.drop_prob:
            self.gripper_cmd = OPEN  # early release
            self._set_phase("approach")
            phase = "approach"

        yaw_top = _aligned_yaw(_block_yaw(q_top), hand_yaw)
        if phase == "approach":
            self.gripper_cmd = OPEN
            goal = p_top + [0.0, 0.0, HOVER]
            if np.linalg.norm(grip[:2] - p_top[:2]) > 0.03:
                goal[2] = max(goal[2], grip[2])  # no lower while still travelling
            err = grip - (p_top + [0, 0, HOVER])
            if np.linalg.norm(err[:2]) < 0.012 and abs(err[2]) < 0.02 and abs(_wrap(yaw_top - hand_yaw)) < 0.1:
                self._set_phase("descend")
            return goal, yaw_top
        if phase == "descend":
            goal = p_top + [0.0, 0.0, GRASP_DZ]
            xy_err = np.linalg.norm(grip[:2] - p_top[:2])
            if xy_err > 0.025:
                self._set_phase("approach")
            elif xy_err < 0.01 and abs(grip[2] - goal[2]) < 0.008 and abs(_wrap(yaw_top - hand_yaw)) < 0.15:
                self._set_phase("close")
            return goal, yaw_top
        if phase == "close":
            self.gripper_cmd = CLOSED
            goal = p_top + [0.0, 0.0, GRASP_DZ]
            if self.phase_steps >= 3:
                if opening < BLOCK_HALF - 0.006:  # closed on nothing
                    self.gripper_cmd = OPEN
                    self._set_phase("approach")
                else:
                    self._set_phase("lift")
            return goal, hand_yaw
        # carrying: align the held block's yaw with the bottom block's
        held_yaw = _block_yaw(q_top)
        delta = _wrap_quarter(_block_yaw(q_bot) - held_yaw)
        carry_yaw = hand_yaw + delta
        offset = grip - p_top  # grip site relative to the held block
        if phase == "lift":
            goal = np.array([grip[0], grip[1], CARRY_Z])
            if grip[2] > CARRY_Z - 0.015:
                self._set_phase("carry")
            return goal, hand_yaw
        if phase == "carry":
            goal = np.array([p_bot[0] + offset[0], p_bot[1] + offset[1], CARRY_Z])
            if np.linalg.norm(goal[:2] - grip[:2]) < 0.006 and abs(delta) < 0.1:
                self._set_phase("lower")
            return goal, carry_yaw
        if phase == "lower":
            z = p_bot[2] + BLOCK_SIZE + PLACE_GAP + offset[2]
            goal = np.array([p_bot[0] + offset[0], p_bot[1] + offset[1], z])
            if np.linalg.norm(goal[:2] - grip[:2]) > 0.015:
                self._set_phase("carry")
            elif abs(grip[2] - z) < 0.004 or p_top[2] - p_bot[2] < BLOCK_SIZE + PLACE_GAP:
                self._set_phase("open")
            return goal, carry_yaw
        if phase == "open":
            self.gripper_cmd = OPEN
            if self.phase_steps >= 2:
                self._set_phase("retreat")
            return grip, hand_yaw
        if phase == "retreat":
            goal = np.array([grip[0], grip[1], RETREAT_Z])
            if grip[2] > RETREAT_Z - 0.02:
                self._set_phase("check")
            return goal, hand_yaw
        # check: done when the own pair is stacked, else start over
        if self.phase_steps > 5 and not env.is_stacked(top, bottom):
            self._set_phase("approach")
        return np.array([grip[0], grip[1], RETREAT_Z]), hand_yaw

    def _holding(self, block: str, grip: np.ndarray) -> bool:
        p, _ = self.env.block_pose(block)
        return np.linalg.norm(p - grip) < 0.03

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
        return self._kin.ik(q_arm, target, yaw)


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


def _aligned_yaw(block_yaw: float, hand_yaw: float) -> float:
    """The hand yaw closest to ``hand_yaw`` that lines the fingers up with a cube face."""
    return hand_yaw + _wrap_quarter(block_yaw - hand_yaw)


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
