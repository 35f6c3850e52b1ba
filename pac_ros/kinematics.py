"""The arm's kinematics from its MJCF model alone (no simulation, no task): the grip site's
pose and damped-least-squares inverse kinematics on MuJoCo Jacobians.

The deployed policy (task-space control) and the sim (its scripted expert) use this one class.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # whoever imports mujoco first fixes its GL backend (sim renders offscreen)

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from pac_ros.paths import share_file  # noqa: E402
from pac_ros.spec import Spec  # noqa: E402

DOWN = np.array([0.0, 0.0, -1.0])
GRIP_SITE = "grip"


def default_model_path() -> Path:
    """models/stacking.xml (the arm and its scene) from the source tree or an installed share folder."""
    return share_file("models", "stacking.xml")


def lookup(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str, where: str, spec: Spec) -> int:
    """The id of the object ``spec`` names, or a ValueError naming the model file and the object."""
    idx = mujoco.mj_name2id(model, kind, name)
    if idx < 0:
        raise ValueError(f"{where}: no {kind.name.lower()[6:]} named {name!r} (needed by spec {spec.name!r})")
    return idx


class GripKinematics:
    """Forward and inverse kinematics of the grip site of ``model``'s arm (the spec's arm joints),
    computed on a scratch copy of the state, so a live simulation of ``model`` is untouched."""

    def __init__(self, model: mujoco.MjModel, spec: Spec, where: str = "MJCF model"):
        joints = [lookup(model, mujoco.mjtObj.mjOBJ_JOINT, j.name, where, spec) for j in spec.arm_joints]
        self.model, self.where = model, where
        self.arm_qadr = np.array([model.jnt_qposadr[j] for j in joints])
        self.arm_dofadr = np.array([model.jnt_dofadr[j] for j in joints])
        self.grip_site = lookup(model, mujoco.mjtObj.mjOBJ_SITE, GRIP_SITE, where, spec)
        self.lower, self.upper = spec.lower[:-1], spec.upper[:-1]
        self.data = mujoco.MjData(model)
        self.jacp = np.zeros((3, model.nv))
        self.jacr = np.zeros((3, model.nv))

    @classmethod
    def from_mjcf(cls, spec: Spec, path: str | Path | None = None) -> "GripKinematics":
        """Load the MJCF at ``path`` (default: models/stacking.xml) for its arm only."""
        path = Path(path) if path is not None else default_model_path()
        return cls(mujoco.MjModel.from_xml_path(str(path)), spec, str(path))

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, float]:
        """Grip position and hand yaw for joint positions ``q`` (arm joints first)."""
        d, site = self.data, self.grip_site
        d.qpos[self.arm_qadr] = q[: len(self.arm_qadr)]
        mujoco.mj_kinematics(self.model, d)
        x = d.site_xmat[site].reshape(3, 3)[:, 0]
        return d.site_xpos[site].copy(), float(np.arctan2(x[1], x[0]))

    def ik(self, q_arm: np.ndarray, target: np.ndarray, yaw: float, iterations: int = 15,
           qpos: np.ndarray | None = None) -> np.ndarray:
        """Arm joints, from ``q_arm``, that put the grip site at ``target`` pointing down at ``yaw``
        (damped least squares, clipped to the joint limits). ``qpos``: the world's full state to
        take the other coordinates (fingers, free bodies) from, default the model's reference pose."""
        m, d, site, dofadr = self.model, self.data, self.grip_site, self.arm_dofadr
        x_axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        R_goal = np.stack([x_axis, np.cross(DOWN, x_axis), DOWN], axis=1)
        d.qpos[:] = m.qpos0 if qpos is None else qpos
        q = np.array(q_arm, dtype=np.float64)
        quat, err_rot = np.zeros(4), np.zeros(3)
        for _ in range(iterations):
            d.qpos[self.arm_qadr] = q
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
            q = np.clip(q + dq, self.lower, self.upper)
        return q
