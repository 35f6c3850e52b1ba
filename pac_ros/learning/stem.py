"""Keypoint-stem pretraining: the image stem learns where the blocks are, on its own.

A full PAC step pays for the whole Perceiver, the target network and the sampled actions,
so on a CPU the image stem sees ~50 samples/s and learns to find 4-6 px blocks slowly. Here
the stem alone (plus a small MLP) regresses the blocks' positions, in spec order, from all
cameras' keypoints and the joint positions (the wrist camera moves with the arm), at about
ten times the rate. The simulator's poses are a training target only. Afterwards the stem
is frozen (``model.freeze_stem``) and its keypoints are computed once per dataset row
(``TransitionStore.cache_keypoints``), so PAC training costs what a features model costs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..model import PACModel
from .augment import augment_images


@dataclass
class StemReport:
    steps: int
    train_error_mm: float  # mean block position error, last 100 steps (augmented)
    heldout_error_mm: float  # mean error on the held-out episodes' rows (no augmentation)
    heldout_p95_mm: float
    heldout_rows: int


def block_locator(model: PACModel) -> nn.Module:
    cfg = model.config
    n_in = 2 * cfg.n_keypoints * len(model.camera_names) + model.spec.action_dim
    n_out = 3 * len(model.spec.blocks)
    return nn.Sequential(nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n_out))


def pretrain_keypoint_stem(model: PACModel, store, steps: int, batch_size: int = 128, lr: float = 1e-3,
                           seed: int = 0, shift: int = 0, jitter: float = 0.0, heldout: float = 0.05,
                           log=print) -> StemReport:
    """Train ``model.keypoint_stem`` (in place) to locate the blocks; the last ``heldout`` fraction
    of the store's episodes is kept out and measured."""
    if not model.keypoint_stem:
        raise ValueError("stem pretraining needs image_stem: keypoints")
    if store.block_positions is None:
        raise ValueError("stem pretraining needs block poses in the dataset (a training-time target)")
    rows = np.arange(store.n_rows)
    n_eps = len(store.episode_starts)
    n_train = max(1, min(n_eps - 1, int(round(n_eps * (1 - heldout)))))
    split = store.episode_starts[n_train] if n_eps > 1 else store.n_rows
    train_rows, test_rows = rows[:split], rows[split:]
    target = torch.from_numpy(store.block_positions)
    loc, scale = target[train_rows].mean(0), target[train_rows].std(0).clamp_min(1e-3)
    head = block_locator(model)
    params = [*model.keypoint_stem.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng([seed, 17])
    gen = torch.Generator().manual_seed(seed)
    joints_loc, joints_scale = model.joint_loc, model.joint_scale

    def predict(idx: np.ndarray, augment: bool) -> torch.Tensor:
        obs = store.obs(np.sort(idx))
        if augment:
            obs = augment_images(obs, shift, jitter, gen)
        kp = model.keypoints(obs["images"])
        q = (obs["joint_positions"] - joints_loc) / joints_scale
        return head(torch.cat([*(kp[c].flatten(1) for c in model.camera_names), q], 1)) * scale + loc

    def error_mm(pred: torch.Tensor, idx: np.ndarray) -> np.ndarray:
        d = (pred.detach() - target[np.sort(idx)]).view(len(idx), -1, 3)
        return d.norm(dim=-1).numpy().ravel() * 1000.0

    model.train()
    recent: list[float] = []
    for step in range(steps):
        idx = rng.choice(train_rows, batch_size)
        pred = predict(idx, augment=True)
        loss = nn.functional.smooth_l1_loss((pred - loc) / scale, (target[np.sort(idx)] - loc) / scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        recent = (recent + [float(error_mm(pred, idx).mean())])[-100:]
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"stem pretraining {step + 1}/{steps}: block error {np.mean(recent):.1f} mm (train, last 100)")
    errors = []
    with torch.no_grad():
        model.eval()
        for i in range(0, len(test_rows), 256):
            idx = test_rows[i:i + 256]
            errors.append(error_mm(predict(idx, augment=False), idx))
    err = np.concatenate(errors) if errors else np.zeros(1)
    report = StemReport(steps, float(np.mean(recent)) if recent else float("nan"), float(err.mean()),
                        float(np.percentile(err, 95)), len(test_rows))
    log(f"stem pretraining: held-out block error mean {report.heldout_error_mm:.1f} mm, "
        f"p95 {report.heldout_p95_mm:.1f} mm over {report.heldout_rows} rows")
    return report
