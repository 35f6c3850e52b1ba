"""Evaluation-time perturbations of the stacking world (pac_ros.sim.perturb)."""
import numpy as np
import pytest

from pac_ros.sim.env import BLOCK_REGION, MIN_SEPARATION, StackingEnv
from pac_ros.sim.perturb import PERTURBATIONS, Perturbation, edge_layout, perturbation


def _front(p: Perturbation, seed: int = 3) -> np.ndarray:
    env = StackingEnv(render=True)
    try:
        p.apply(env)
        return p.reset(env, seed)["images"]["front"].astype(np.float64)
    finally:
        env.close()


def test_camera_and_light_perturbations_change_what_the_camera_sees():
    base = _front(perturbation("none"))
    assert np.abs(_front(perturbation("camera_shift_2cm")) - base).mean() > 1.0
    assert np.abs(_front(perturbation("camera_zoom")) - base).mean() > 1.0
    assert _front(perturbation("dim_light")).mean() < base.mean() - 10
    assert _front(perturbation("bright_light")).mean() > base.mean() + 5
    assert np.array_equal(_front(perturbation("none")), base)  # deterministic


def test_edge_layout_keeps_blocks_on_the_border_and_apart():
    (x0, x1), (y0, y1) = BLOCK_REGION
    for seed in range(20):
        layout = edge_layout(np.random.default_rng(seed), 3, 0.03)
        xy = np.array([p for p, _ in layout])
        border = np.minimum.reduce([xy[:, 0] - x0, x1 - xy[:, 0], xy[:, 1] - y0, y1 - xy[:, 1]])
        assert (border >= 0).all() and (border <= 0.03).all()
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(3)
        assert (d >= MIN_SEPARATION).all()


def test_edge_blocks_reset_places_the_blocks_and_is_seeded():
    env = StackingEnv(render=False)
    try:
        p = perturbation("edge_blocks")
        p.reset(env, 5)
        first = env.features()
        p.reset(env, 5)
        assert np.allclose(env.features(), first)
        (x0, x1), (y0, y1) = BLOCK_REGION
        for b in env.spec.blocks:
            x, y = env.block_pose(b)[0][:2]
            assert min(x - x0, x1 - x, y - y0, y1 - y) <= 0.031
    finally:
        env.close()


def test_unknown_perturbation_and_camera_are_named():
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        perturbation("fog")
    env = StackingEnv(render=False)
    with pytest.raises(ValueError, match="no camera named 'top'"):
        Perturbation("x", camera="top", fovy_delta=2.0).apply(env)
    Perturbation("y", camera="top", light_scale=0.9).apply(env)  # names no camera it changes: fine
    env.close()
    assert "none" in PERTURBATIONS
