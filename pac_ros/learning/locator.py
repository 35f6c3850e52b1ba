"""Training the block locator (pac_ros/model/locator.py) on recorded episodes.

The targets come from the simulator's block poses, a training-time signal only: each block
centre projected into each camera (pac_ros/cameras.py), whether the camera sees at least
``MIN_PIXELS`` of it (a segmentation render of the recorded state: the hand and the other
blocks occlude), and its yaw modulo 90° in the camera's frame (the world's for a fixed camera).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np
import torch
from torch.nn import functional as F

from ..cameras import CameraGeometry
from ..model.locator import BlockLocator
from ..perception import camera_yaw, estimate_poses, moves_with_arm
from .augment import augment_images

MIN_PIXELS = 3


def block_yaw(quats: np.ndarray) -> np.ndarray:
    """wxyz quaternions [..., 4] -> yaw of the block's x axis [...] (a cube's: any face's, modulo 90°)."""
    w, x, y, z = np.moveaxis(np.asarray(quats, np.float64), -1, 0)
    return np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


@dataclass
class LocatorLabels:
    uv: dict[str, np.ndarray]  # [T, n, 2] projected centre, pixels
    visible: dict[str, np.ndarray]  # [T, n] bool
    angle: dict[str, np.ndarray]  # [T, n] 4·yaw in the camera's frame (world's for fixed cameras)


def render_labels(spec, joints: np.ndarray, poses: np.ndarray, geometry: CameraGeometry, log=print) -> LocatorLabels:
    """Targets for rows of (joint positions [T, dof], block poses [T, n, 7] in spec order)."""
    from ..sim.env import StackingEnv

    T, n = poses.shape[:2]
    env = StackingEnv(spec, render=False)
    m = env.model
    blocks = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, b) for b in spec.blocks]
    renderers = {c.name: mujoco.Renderer(m, height=c.height, width=c.width) for c in spec.cameras
                 if c.name in geometry.names}
    for r in renderers.values():
        r.enable_segmentation_rendering()
    cams = geometry.batch_poses(joints)
    uv, visible, angle = {}, {}, {}
    yaw = block_yaw(poses[..., 3:])
    for c in geometry.names:
        o, R = cams[c]
        uv[c], depth = geometry.project(c, o[:, None, :], R[:, None], poses[..., :3])
        visible[c] = np.zeros((T, n), bool)
        angle[c] = 4 * (yaw - (camera_yaw(R)[:, None] if moves_with_arm(geometry, c) else 0.0))
    t0 = time.perf_counter()
    try:
        for t in range(T):
            env.set_joint_positions(joints[t])
            for i, b in enumerate(spec.blocks):
                env.set_block_pose(b, poses[t, i, :3], poses[t, i, 3:], forward=False)
            mujoco.mj_forward(m, env.data)
            for c, r in renderers.items():
                r.update_scene(env.data, camera=c)
                seg = r.render()
                ids = seg[..., 0][seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)]
                counts = np.array([(ids == g).sum() for g in blocks])
                visible[c][t] = counts >= MIN_PIXELS
            if (t + 1) % 5000 == 0:
                log(f"locator labels: {t + 1}/{T} rows ({time.perf_counter() - t0:.0f} s)")
    finally:
        for r in renderers.values():
            r.close()
        env.close()
    return LocatorLabels(uv, visible, angle)


@dataclass
class LocatorReport:
    steps: int
    seconds: float
    heldout_rows: int
    pixel_error: dict[str, float]  # mean px, visible blocks
    visibility_accuracy: dict[str, float]
    position_error_mm: float  # triangulated, mean over blocks seen by a camera
    position_p95_mm: float
    yaw_error_deg: float  # mean, modulo 90°

    def lines(self) -> list[str]:
        px = ", ".join(f"{c} {e:.2f} px" for c, e in self.pixel_error.items())
        acc = ", ".join(f"{c} {a:.1%}" for c, a in self.visibility_accuracy.items())
        return [f"locator: {self.steps} steps in {self.seconds:.0f} s; held-out {self.heldout_rows} rows",
                f"  pixel error {px}; visibility accuracy {acc}",
                f"  block position error mean {self.position_error_mm:.1f} mm, p95 {self.position_p95_mm:.1f} mm; "
                f"yaw error mean {self.yaw_error_deg:.1f} deg"]


def locator_loss(out: dict, labels: LocatorLabels, rows: np.ndarray) -> torch.Tensor:
    loss = 0.0
    for c, o in out.items():
        vis = torch.from_numpy(labels.visible[c][rows])
        uv = torch.from_numpy(labels.uv[c][rows]).float()
        a = torch.from_numpy(labels.angle[c][rows]).float()
        w = vis.float()
        loss = loss + F.binary_cross_entropy_with_logits(o["visible"], w)
        px = F.smooth_l1_loss(o["uv"], uv.nan_to_num(), reduction="none").sum(-1)
        yaw = ((o["yaw"] - torch.stack([a.cos(), a.sin()], -1)) ** 2).sum(-1)
        loss = loss + ((px + yaw) * w).sum() / w.sum().clamp_min(1.0)
    return loss


def train_locator(locator: BlockLocator, images: dict[str, np.ndarray], labels: LocatorLabels,
                  train_rows: np.ndarray, steps: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                  shift: int = 0, jitter: float = 0.0, log=print, log_every: int = 200) -> None:
    opt = torch.optim.AdamW(locator.parameters(), lr=lr, weight_decay=1e-4)
    # one cycle, 5% warm-up (at least two steps: OneCycleLR divides by their number); a few steps: constant lr
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=min(0.5, max(0.05, 2.0 / steps))) if steps >= 4 else None
    rng = np.random.default_rng([seed, 23])
    gen = torch.Generator().manual_seed(seed)
    locator.train()
    recent: list[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        rows = np.sort(rng.choice(train_rows, batch_size))
        batch = {c: torch.from_numpy(np.ascontiguousarray(m[rows])) for c, m in images.items()}
        if jitter:  # brightness/contrast only: a shift would move the pixel targets
            batch = augment_images({"images": batch}, 0, jitter, gen)["images"]
        loss = locator_loss(locator(batch), labels, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(locator.parameters(), 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        recent = (recent + [float(loss.detach())])[-log_every:]
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log(f"locator {step + 1}/{steps}: loss {np.mean(recent):.3f} ({time.perf_counter() - t0:.0f} s)")
    locator.eval()


@torch.no_grad()
def locator_outputs(locator: BlockLocator, images: dict[str, np.ndarray], rows: np.ndarray,
                    chunk: int = 512) -> dict[str, dict[str, np.ndarray]]:
    parts: list[dict] = []
    locator.eval()
    for i in range(0, len(rows), chunk):
        r = rows[i:i + chunk]
        out = locator({c: torch.from_numpy(np.ascontiguousarray(m[r])) for c, m in images.items()})
        parts.append({c: {k: v.numpy() for k, v in o.items()} for c, o in out.items()})
    return {c: {k: np.concatenate([p[c][k] for p in parts]) for k in parts[0][c]} for c in parts[0]}


def pixel_errors(out: dict, labels: LocatorLabels, rows: np.ndarray) -> dict[str, float]:
    """Mean pixel error per camera over the blocks it sees in ``rows`` (NaN where it sees none)."""
    return {c: float(np.linalg.norm(o["uv"] - labels.uv[c][rows], axis=-1)[labels.visible[c][rows]].mean())
            if labels.visible[c][rows].any() else float("nan") for c, o in out.items()}


def evaluate_locator(locator: BlockLocator, geometry: CameraGeometry, out: dict, labels: LocatorLabels,
                     joints: np.ndarray, poses: np.ndarray, rows: np.ndarray, steps: int = 0,
                     seconds: float = 0.0) -> LocatorReport:
    """The locator's outputs ``out`` on ``rows`` (``locator_outputs``) scored against the labels."""
    px = pixel_errors(out, labels, rows)
    acc = {c: float(((o["visible"] > 0) == labels.visible[c][rows]).mean()) for c, o in out.items()}
    est, seen = estimate_poses(geometry, out, joints[rows], pixel_std=locator.pixel_stds())  # rows alone: no memory
    err = np.linalg.norm(est[..., :3] - poses[rows, :, :3], axis=-1)[seen] * 1000
    dyaw = block_yaw(est[..., 3:]) - block_yaw(poses[rows][..., 3:])
    dyaw = np.abs((dyaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)[seen]
    return LocatorReport(steps, seconds, len(rows), px, acc, float(err.mean()), float(np.percentile(err, 95)),
                         float(np.degrees(dyaw).mean()))


def pretrain_locator(model, store, steps: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     jitter: float = 0.0, heldout: float = 0.05, log=print) -> LocatorReport:
    """Train ``model.locator`` (in place) on the store's rows, the last ``heldout`` fraction of its
    episodes kept out and measured (pixels, visibility, triangulated poses)."""
    if model.locator is None:
        raise ValueError("locator pretraining needs image_stem: locator")
    if store.block_poses is None or not store.images:
        raise ValueError("locator pretraining needs the dataset's images and block poses (training-time targets)")
    geometry = CameraGeometry.from_mjcf(store.spec, names=model.camera_names)
    joints = store.joints.astype(np.float64)
    t0 = time.perf_counter()
    labels = render_labels(store.spec, joints, store.block_poses, geometry, log)
    log(f"locator labels for {store.n_rows} rows in {time.perf_counter() - t0:.0f} s")
    n_eps = len(store.episode_starts)
    n_train = max(1, min(n_eps - 1, int(round(n_eps * (1 - heldout)))))
    split = store.episode_starts[n_train] if n_eps > 1 else store.n_rows
    rows = np.arange(store.n_rows)
    t0 = time.perf_counter()
    train_locator(model.locator, store.images, labels, rows[:split], steps, batch_size, lr, seed, jitter=jitter,
                  log=log)
    seconds = time.perf_counter() - t0
    test = rows[split:] if split < store.n_rows else rows[-min(256, store.n_rows):]
    out = locator_outputs(model.locator, store.images, test)
    px = pixel_errors(out, labels, test)
    with torch.no_grad():  # each camera's held-out pixel error weighs its rays
        model.locator.pixel_std.copy_(torch.tensor([max(0.05, px[c]) if np.isfinite(px[c]) else 1.0
                                                    for c in model.locator.camera_names]))
    report = evaluate_locator(model.locator, geometry, out, labels, joints, store.block_poses, test, steps, seconds)
    for line in report.lines():
        log(line)
    return report


def locate_blocks(model, store, log=print) -> float:
    """Replace the store's block features by what the (trained, frozen) locator sees in each row's
    images, with each episode's memory of unseen blocks, as the deployed policy has them. Returns
    the mean position error (mm) of those estimates against the simulator's poses."""
    geometry = CameraGeometry.from_mjcf(store.spec, names=model.camera_names)
    out = locator_outputs(model.locator, store.images, np.arange(store.n_rows))
    joints = store.joints.astype(np.float64)
    est = np.empty_like(store.block_poses)
    ends = [*store.episode_starts[1:], store.n_rows]
    for s, e in zip(store.episode_starts, ends):
        est[s:e], _ = estimate_poses(geometry, {c: {k: v[s:e] for k, v in o.items()} for c, o in out.items()},
                                     joints[s:e], pixel_std=model.locator.pixel_stds())
    store.features = store.control.features(joints, est.reshape(len(est), -1), store.instructions)
    err = float(np.linalg.norm(est[..., :3] - store.block_poses[..., :3], axis=-1).mean() * 1000)
    log(f"block features of {store.n_rows} rows from the locator: position error mean {err:.1f} mm")
    return err


def load_locator(model, path, log=print) -> None:
    """Load only the block locator (weights and per-camera pixel noise) of another checkpoint into
    ``model``: perception trained once, reused by recipes that train the rest from scratch."""
    from ..checkpoint import CheckpointError, load_model_state

    if model.locator is None:
        raise CheckpointError(f"locator_from {path}: this model has no locator (image_stem: locator)")
    _, weights = load_model_state(path)
    own = {k[len("locator."):]: v for k, v in weights.items() if k.startswith("locator.")}
    if not own:
        raise CheckpointError(f"locator_from {path}: that checkpoint has no locator")
    try:
        model.locator.load_state_dict(own)
    except RuntimeError as exc:  # other cameras, blocks or channels
        raise CheckpointError(f"locator_from {path}: its locator does not fit this model's: {exc}") from exc
    log(f"locator from {path} (held-out pixel noise {model.locator.pixel_stds()})")
