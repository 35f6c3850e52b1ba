"""Forward and inverse kinematics of the grip site on the sim's arm (MuJoCo Jacobians)."""
from __future__ import annotations

import mujoco
import numpy as np

from pac_ros.sim.env import StackingEnv

DOWN = np.array([0.0, 0.0, -1.0])


class GripKinematics:
    """Kinematics on a scratch copy of the world's state, so the live simulation is untouched."""

    def __init__(self, env: StackingEnv):
        self.env = env
        self.data = mujoco.MjData(env.model)
        self.jacp = np.zeros((3, env.model.nv))
        self.jacr = np.zeros((3, env.model.nv))

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        """Grip position and hand yaw for joint positions ``q`` (arm joints first)."""
        env, d, site = self.env, self.data, self.env.grip_site
        d.qpos[env._arm_qadr] = q[: len(env._arm_qadr)]
        mujoco.mj_kinematics(env.model, d)
        x = d.site_xmat[site].reshape(3, 3)[:, 0]
        return d.site_xpos[site].copy(), float(np.arctan2(x[1], x[0]))

    def ik(self, q_arm: np.ndarray, target: np.ndarray, yaw: float, iterations: int = 15) -> np.ndarray:
        """Arm joints, from ``q_arm``, that put the grip site at ``target`` pointing down at ``yaw``
        (damped least squares, clipped to the joint limits)."""
        env, m, d = self.env, self.env.model, self.data
        x_axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        R_goal = np.stack([x_axis, np.cross(DOWN, x_axis), DOWN], axis=1)
        lower, upper = env.spec.lower[:-1], env.spec.upper[:-1]
        qadr, dofadr, site = env._arm_qadr, env._arm_dofadr, env.grip_site
        d.qpos[:] = env.data.qpos
        q = np.array(q_arm, dtype=np.float64)
        quat, err_rot = np.zeros(4), np.zeros(3)
        for _ in range(iterations):
            d.qpos[qadr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            R = d.site_xmat[site].reshape(3, 3)
            mujoco.mju_mat2Quat(quat, (R_goal @ R.T).reshape(-1))
            mujoco.mju_quat2Vel(err_rot, quat, 1.0)
            err = np.concatenate([target - d.site_xpos[site], err_rot])
            if np.linalg.norm(err) < 1e-4:
                break
            mujoco.mj_jacSite(m, d, self.jacp, self.jacr, site)
            J = np.vstack([self.jacp[:, dofadr], self.jacr[:, dofadr]])
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-3 * np.eye(6), err)
            q = np.clip(q + dq, lower, upper)
        return q
