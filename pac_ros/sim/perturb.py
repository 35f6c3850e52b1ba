"""What changes between a simulator and a room, applied to a stacking world for evaluation.

A ``Perturbation`` moves or zooms a camera, scales the lighting, or starts the blocks at
the edge of their start region. None is ever seen in training data (collection uses the
unperturbed world), so success under them measures robustness, not fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from pac_ros.sim.env import BLOCK_HALF, BLOCK_REGION, MIN_SEPARATION, StackingEnv, _yaw_quat


@dataclass(frozen=True)
class Perturbation:
    name: str
    camera: str = "front"
    camera_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m added to the camera position
    fovy_delta: float = 0.0  # degrees added to the camera's vertical field of view
    light_scale: float = 1.0  # factor on every light's and the headlight's intensity
    edge_band: float = 0.0  # > 0: blocks start within this many m of the start region's border

    def apply(self, env: StackingEnv) -> None:
        """Change ``env``'s model in place (cameras, lights); layouts change in ``reset``."""
        m = env.model
        if any(self.camera_shift) or self.fovy_delta:  # an MJCF without this camera is fine otherwise
            cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
            if cam < 0:
                raise ValueError(f"perturbation {self.name}: no camera named {self.camera!r}")
            m.cam_pos[cam] += np.asarray(self.camera_shift, dtype=np.float64)
            m.cam_fovy[cam] += self.fovy_delta
        if self.light_scale != 1.0:
            m.light_diffuse[:] *= self.light_scale
            m.light_ambient[:] *= self.light_scale
            m.vis.headlight.diffuse[:] = np.clip(np.asarray(m.vis.headlight.diffuse) * self.light_scale, 0, 1)
            m.vis.headlight.ambient[:] = np.clip(np.asarray(m.vis.headlight.ambient) * self.light_scale, 0, 1)

    def reset(self, env: StackingEnv, seed: int) -> dict:
        """``env.reset(seed)``, then (with ``edge_band``) the blocks moved to the region's border."""
        obs = env.reset(seed=seed)
        if self.edge_band <= 0:
            return obs
        rng = np.random.default_rng([seed, 2])
        for name, (xy, yaw) in zip(env.spec.blocks, edge_layout(rng, len(env.spec.blocks), self.edge_band)):
            env.set_block_pose(name, [xy[0], xy[1], BLOCK_HALF], _yaw_quat(yaw), forward=False)
        mujoco.mj_forward(env.model, env.data)
        for _ in range(10):  # let contacts settle, as reset does
            mujoco.mj_step(env.model, env.data)
        return env.observation()


def edge_layout(rng: np.random.Generator, n: int, band: float, tries: int = 10_000) -> list:
    """``n`` block (xy, yaw) inside BLOCK_REGION, each within ``band`` of its border, MIN_SEPARATION apart."""
    (x0, x1), (y0, y1) = BLOCK_REGION
    placed: list[np.ndarray] = []
    for _ in range(tries):
        xy = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        if min(xy[0] - x0, x1 - xy[0], xy[1] - y0, y1 - xy[1]) > band:
            continue
        if all(np.linalg.norm(xy - p) >= MIN_SEPARATION for p in placed):
            placed.append(xy)
            if len(placed) == n:
                return [(p, rng.uniform(-np.pi / 4, np.pi / 4)) for p in placed]
    raise ValueError(f"cannot place {n} blocks within {band} m of the start region's border")


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("none"),
    Perturbation("camera_shift_2cm", camera_shift=(0.02, -0.02, 0.0)),
    Perturbation("camera_shift_5cm", camera_shift=(0.0, 0.05, 0.03)),
    Perturbation("camera_zoom", fovy_delta=-4.0),
    Perturbation("dim_light", light_scale=0.6),
    Perturbation("bright_light", light_scale=1.5),
    Perturbation("edge_blocks", edge_band=0.03),
)}


def perturbation(name: str) -> Perturbation:
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise ValueError(f"unknown perturbation {name!r}; choose from {sorted(PERTURBATIONS)}") from None
