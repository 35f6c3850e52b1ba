"""Block poses from camera images: the locator's pixels, rays from calibrated cameras, and a
weighted least-squares triangulation with a table prior; what the pixels policy sees of the
blocks (``Control.features`` on these poses, as the features model does on the simulator's).

When no camera sees a block (the hand covers it), its last estimate is kept: ``BlockTracker``
holds that memory for one episode; ``reset`` it when a new one starts.
"""
from __future__ import annotations

import numpy as np
import torch

from pac_ros.cameras import CameraGeometry, triangulate
from pac_ros.model.locator import BlockLocator

BLOCK_CENTRE_Z = 0.02  # a block resting on the table (half its 4 cm size)
# Prior on a block's centre: on the table, in front of the arm; loose, so any view outweighs it
PRIOR_CENTRE = np.array([0.425, 0.0, BLOCK_CENTRE_Z])
PRIOR_STD = np.array([0.5, 0.5, 0.04])
VISIBLE = 0.5  # visibility probability above which a camera's pixel counts


def yaw_quaternions(yaw: np.ndarray) -> np.ndarray:
    """Upright wxyz quaternions for yaw angles [...]."""
    return np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], -1)


def camera_yaw(R: np.ndarray) -> np.ndarray:
    """A camera's heading in the world's xy plane: the yaw of its optical x axis [...]."""
    return np.arctan2(R[..., 1, 0], R[..., 0, 0])


def moves_with_arm(geometry: CameraGeometry, name: str) -> bool:
    """A camera on the arm sees a block's yaw in its own frame, a fixed one in the world's."""
    return bool(geometry.model.cam_bodyid[geometry.ids[name]] != 0)


def estimate_poses(geometry: CameraGeometry, outputs: dict[str, dict[str, np.ndarray]], joints: np.ndarray,
                   previous: np.ndarray | None = None,
                   pixel_std: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Locator outputs (numpy, per camera: uv [T,n,2], yaw [T,n,2], visible [T,n] logits) at arm
    joints [T,dof] -> block poses [T,n,7] (x y z qw qx qy qz, upright) and seen [T,n] (bool).
    A camera's ray counts by the inverse variance of its pixel error (``pixel_std``, px; default 1)
    at the block's range. Blocks no camera sees take ``previous`` [n,7] (row by row, the last
    estimate) or the prior."""
    T = len(joints)
    poses_by_cam = geometry.batch_poses(joints)
    names = [c for c in geometry.names if c in outputs]
    n = outputs[names[0]]["uv"].shape[1]
    origins, dirs, weights, yaw_vec = [], [], [], np.zeros((T, n, 2))
    for c in names:
        o, R = poses_by_cam[c]
        uv, vis = outputs[c]["uv"], 1.0 / (1.0 + np.exp(-outputs[c]["visible"]))
        d = geometry.rays(c, o[:, None, :], R[:, None], uv)
        origins.append(np.broadcast_to(o[:, None, :], (T, n, 3)))
        dirs.append(d)
        weights.append(np.where(vis > VISIBLE, vis, 0.0))
        y = outputs[c]["yaw"] * weights[-1][..., None]
        if moves_with_arm(geometry, c):  # rotate its angle 4θ from the camera's frame into the world's
            a = 4 * camera_yaw(R)[:, None]
            c4, s4 = np.cos(a), np.sin(a)
            y = np.stack([c4 * y[..., 0] - s4 * y[..., 1], s4 * y[..., 0] + c4 * y[..., 1]], -1)
        yaw_vec += y
    origins, dirs, weights = np.stack(origins, 2), np.stack(dirs, 2), np.stack(weights, 2)  # [T, n, C, ...]
    seen = weights.max(-1) > 0
    prior = np.broadcast_to(PRIOR_CENTRE, (T, n, 3))
    prior_w = np.broadcast_to(1.0 / PRIOR_STD ** 2, (T, n, 3))
    f = np.array([geometry.K[c][1, 1] / (pixel_std or {}).get(c, 1.0) for c in names])  # px per rad, per px of error
    dist = np.ones((T, n, len(names)))
    for _ in range(2):  # weights: inverse variance of the distance from a ray, which grows with range
        w = weights / (dist / f) ** 2
        X = triangulate(origins, dirs, w, prior, prior_w)
        dist = np.linalg.norm(X[:, :, None, :] - origins, axis=-1).clip(0.05, None)
    yaw = np.arctan2(yaw_vec[..., 1], yaw_vec[..., 0]) / 4
    out = np.concatenate([X, yaw_quaternions(yaw)], -1)
    for t in range(T):  # unseen blocks: the last estimate
        if previous is not None:
            out[t, ~seen[t]] = previous[~seen[t]]
        previous = out[t]
    return out, seen


class BlockTracker:
    """The locator, the cameras' geometry and the last estimate of one episode."""

    def __init__(self, locator: BlockLocator, geometry: CameraGeometry):
        self.locator, self.geometry = locator, geometry
        self.last: np.ndarray | None = None

    def reset(self) -> None:
        self.last = None

    @torch.no_grad()
    def __call__(self, images: dict[str, torch.Tensor], joints: np.ndarray) -> np.ndarray:
        """One observation's images (uint8 [1,H,W,3] tensors) and joints [dof] -> poses [n*7] (spec order)."""
        out = {c: {k: v.float().cpu().numpy() for k, v in o.items()} for c, o in self.locator(images).items()}
        poses, _ = estimate_poses(self.geometry, out, np.asarray(joints, np.float64)[None], self.last,
                                  self.locator.pixel_stds())
        self.last = poses[0]
        return poses[0].reshape(-1)
