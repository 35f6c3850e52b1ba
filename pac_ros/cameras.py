"""Where the cameras are, from the arm's MJCF model and its joint positions: pinhole
projection and back-projection for the block locator (pac_ros/model/locator.py).

A fixed camera's pose is the model's; a wrist camera's follows the arm (forward kinematics
of the measured joint positions), as on a robot where TF gives a hand-eye calibrated camera.
Frames are ROS optical frames: x right, y down, z forward; pixel centres at integer
coordinates, as ``StackingEnv.camera_matrix``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import mujoco
import numpy as np

from pac_ros.kinematics import default_model_path, lookup
from pac_ros.spec import Spec

# MuJoCo cameras look along their -z with y up; the optical frame flips y and z
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


class CameraGeometry:
    """Poses and pinhole matrices of ``names`` cameras of ``model`` at the spec's image sizes."""

    def __init__(self, model: mujoco.MjModel, spec: Spec, names: Sequence[str] | None = None,
                 where: str = "MJCF model"):
        self.model, self.spec, self.where = model, spec, where
        self.names = list(names if names is not None else spec.camera_names)
        self.ids = {n: lookup(model, mujoco.mjtObj.mjOBJ_CAMERA, n, where, spec) for n in self.names}
        joints = [lookup(model, mujoco.mjtObj.mjOBJ_JOINT, j.name, where, spec) for j in spec.arm_joints]
        self.arm_qadr = np.array([model.jnt_qposadr[j] for j in joints])
        self.data = mujoco.MjData(model)
        sizes = {c.name: (c.width, c.height) for c in spec.cameras}
        self.K = {}
        for n, cam in self.ids.items():
            if np.any(model.cam_sensorsize[cam] > 0):
                raise ValueError(f"{where}: camera {n!r} sets sensorsize/focal; only fovy cameras are supported")
            w, h = sizes.get(n, (64, 64))
            f = 0.5 * h / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
            self.K[n] = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])

    @classmethod
    def from_mjcf(cls, spec: Spec, path: str | Path | None = None,
                  names: Sequence[str] | None = None) -> "CameraGeometry":
        path = Path(path) if path is not None else default_model_path()
        return cls(mujoco.MjModel.from_xml_path(str(path)), spec, names, str(path))

    def poses(self, q: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each camera's (position [3], optical-to-world rotation [3,3]) at arm joints ``q``."""
        d = self.data
        d.qpos[self.arm_qadr] = np.asarray(q, np.float64)[: len(self.arm_qadr)]
        mujoco.mj_kinematics(self.model, d)
        mujoco.mj_comPos(self.model, d)
        mujoco.mj_camlight(self.model, d)
        return {n: (d.cam_xpos[c].copy(), d.cam_xmat[c].reshape(3, 3) @ MUJOCO_TO_OPTICAL)
                for n, c in self.ids.items()}

    def batch_poses(self, joints: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``poses`` for rows of joints [T, n]: positions [T,3] and rotations [T,3,3] per camera."""
        out = {n: (np.empty((len(joints), 3)), np.empty((len(joints), 3, 3))) for n in self.names}
        for t, q in enumerate(np.asarray(joints, np.float64)):
            for n, (o, R) in self.poses(q).items():
                out[n][0][t], out[n][1][t] = o, R
        return out

    def project(self, name: str, origin: np.ndarray, R: np.ndarray,
                points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [..., 3] -> (pixel (u, v) [..., 2], depth [...]) in camera ``name`` at pose
        (origin [..., 3], R [..., 3, 3]); leading dims broadcast."""
        p = np.einsum("...ji,...j->...i", R, points - origin)  # R^T (X - o)
        z = p[..., 2]
        K = self.K[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([K[0, 0] * p[..., 0] / z + K[0, 2], K[1, 1] * p[..., 1] / z + K[1, 2]], -1)
        return uv, z

    def rays(self, name: str, origin: np.ndarray, R: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Unit world directions [..., 3] through pixels ``uv`` [..., 2]."""
        K = self.K[name]
        d = np.stack([(uv[..., 0] - K[0, 2]) / K[0, 0], (uv[..., 1] - K[1, 2]) / K[1, 1], np.ones(uv.shape[:-1])], -1)
        w = np.einsum("...ij,...j->...i", R, d)
        return w / np.linalg.norm(w, axis=-1, keepdims=True)


def triangulate(origins: np.ndarray, directions: np.ndarray, weights: np.ndarray,
                prior: np.ndarray, prior_weight: np.ndarray) -> np.ndarray:
    """The point nearest, in weighted least squares, to rays (origins, unit directions [..., C, 3],
    weights [..., C], each the inverse variance of the point's distance from that ray) and to
    ``prior`` [..., 3] with per-axis inverse variances ``prior_weight`` [..., 3]."""
    eye = np.eye(3)
    P = eye - directions[..., :, None] * directions[..., None, :]  # projector off each ray
    A = np.einsum("...c,...cij->...ij", weights, P) + prior_weight[..., None] * eye
    b = np.einsum("...c,...cij,...cj->...i", weights, P, origins) + prior_weight * prior
    return np.linalg.solve(A, b[..., None])[..., 0]
