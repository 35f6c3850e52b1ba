"""The block locator: camera geometry, pose estimation from pixels, its training, and a pixels
policy that finds the blocks in its images with no simulator state."""
import json

import mujoco
import numpy as np
import pytest
import torch

from pac_ros.cameras import CameraGeometry, triangulate
from pac_ros.learning.locator import block_yaw, render_labels
from pac_ros.perception import camera_yaw, estimate_poses, moves_with_arm
from pac_ros.sim.env import StackingEnv

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env():
    e = StackingEnv()
    yield e
    e.close()


@pytest.fixture(scope="module")
def geometry(env):
    return CameraGeometry.from_mjcf(env.spec)


def _true_outputs(geometry, joints, poses, visible=None):
    """What a perfect locator outputs: each block's projected centre, its yaw, visible (or not)."""
    cams = geometry.batch_poses(joints)
    out = {}
    for c in geometry.names:
        o, R = cams[c]
        uv, _ = geometry.project(c, o[:, None], R[:, None], poses[..., :3])
        angle = 4 * (block_yaw(poses[..., 3:]) - (camera_yaw(R)[:, None] if moves_with_arm(geometry, c) else 0))
        vis = np.full(poses.shape[:2], 10.0) if visible is None else np.where(visible[c], 10.0, -10.0)
        out[c] = {"uv": uv, "yaw": np.stack([np.cos(angle), np.sin(angle)], -1), "visible": vis}
    return out


def _scenes(env, seeds):
    """The start of each seeded episode: joint positions [T, dof] and block poses [T, n, 7]."""
    joints, poses = [], []
    for seed in seeds:
        env.reset(seed=seed)
        joints.append(env.joint_positions())
        poses.append(env.features().reshape(-1, 7))
    return np.array(joints), np.array(poses)


def test_projection_matches_the_rendered_blocks(env, geometry):
    """The geometry agrees with MuJoCo's renderer: a block's pixels are centred on its projection."""
    seg = mujoco.Renderer(env.model, 64, 64)
    seg.enable_segmentation_rendering()
    geoms = [mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, b) for b in env.spec.blocks]
    errors = {c: [] for c in geometry.names}
    for seed in range(4):
        env.reset(seed=seed)
        for c, (o, R) in geometry.poses(env.joint_positions()).items():
            assert np.allclose(env.data.cam_xpos[geometry.ids[c]], o, atol=1e-9)
            seg.update_scene(env.data, camera=c)
            ids = seg.render()
            for g, b in zip(geoms, env.spec.blocks):
                ys, xs = np.nonzero((ids[..., 0] == g) & (ids[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)))
                if len(xs) >= 4:
                    uv, depth = geometry.project(c, o, R, env.block_pose(b)[0])
                    assert depth > 0
                    errors[c].append(np.abs(np.array([xs.mean(), ys.mean()]) - uv))
    seg.close()
    assert len(errors["front"]) == 12 and np.mean(errors["front"]) < 0.3
    assert len(errors["wrist"]) >= 6 and np.mean(errors["wrist"]) < 0.6  # a close view: visible faces pull


def test_rays_invert_the_projection_and_triangulation_finds_the_point(geometry):
    rng = np.random.default_rng(0)
    o, R = geometry.poses(np.array([0.0, 0.1008, 1.9543, 1.0865, 0.0, 0.0]))["front"]
    points = rng.uniform([0.3, -0.2, 0.0], [0.55, 0.2, 0.1], (20, 3))
    uv, _ = geometry.project("front", o, R, points)
    d = geometry.rays("front", o, R, uv)
    off_ray = (points - o) - ((points - o) * d).sum(-1, keepdims=True) * d
    assert np.abs(off_ray).max() < 1e-9
    # two rays meet at the point; one ray and a firm prior on z meet where the ray crosses that height
    o2 = np.array([0.4, 0.3, 0.5])
    d2 = (points - o2) / np.linalg.norm(points - o2, axis=-1, keepdims=True)
    both = triangulate(np.stack([np.broadcast_to(o, points.shape), np.broadcast_to(o2, points.shape)], 1),
                       np.stack([d, d2], 1), np.ones((20, 2)), np.zeros((20, 3)), np.full((20, 3), 1e-9))
    assert np.abs(both - points).max() < 1e-6
    one = triangulate(o[None, None], d[:, None], np.ones((20, 1)), points * [0, 0, 1], np.array([0.0, 0.0, 1e6]))
    assert np.abs(one - points).max() < 1e-4


def test_estimated_poses_from_perfect_pixels_are_the_blocks_poses(env, geometry):
    joints, poses = _scenes(env, range(3))
    est, seen = estimate_poses(geometry, _true_outputs(geometry, joints, poses), joints)
    assert seen.all()
    assert np.abs(est[..., :3] - poses[..., :3]).max() < 1e-3  # 1 mm: the table prior pulls a little
    dyaw = block_yaw(est[..., 3:]) - block_yaw(poses[..., 3:])
    assert np.abs((dyaw + np.pi / 4) % (np.pi / 2) - np.pi / 4).max() < 1e-6


def test_each_camera_counts_by_its_pixel_error(env, geometry):
    """A camera whose pixels are off by 3 px moves the estimate less once its error is declared."""
    joints, poses = _scenes(env, range(3))
    out = _true_outputs(geometry, joints, poses)
    out["wrist"]["uv"] = out["wrist"]["uv"] + 3.0

    def error(pixel_std):
        est, _ = estimate_poses(geometry, out, joints, pixel_std=pixel_std)
        return np.linalg.norm(est[..., :3] - poses[..., :3], axis=-1).mean()

    assert error({"front": 0.2, "wrist": 3.0}) < 0.5 * error(None)


def test_a_block_no_camera_sees_keeps_its_last_estimate(env, geometry):
    env.reset(seed=1)
    joints = np.repeat(env.joint_positions()[None], 2, 0)
    poses = np.repeat(env.features().reshape(1, -1, 7), 2, 0)
    hidden = {c: np.array([[True] * 3, [False, True, True]]) for c in geometry.names}
    est, seen = estimate_poses(geometry, _true_outputs(geometry, joints, poses, hidden), joints)
    assert seen[0].all() and not seen[1, 0] and seen[1, 1:].all()
    assert np.array_equal(est[1, 0], est[0, 0])
    previous = np.zeros((3, 7))  # a caller's memory from an earlier row is used for row 0
    later = _true_outputs(geometry, joints[1:], poses[1:], {c: v[1:] for c, v in hidden.items()})
    est, _ = estimate_poses(geometry, later, joints[1:], previous)
    assert np.array_equal(est[0, 0], previous[0])


def test_labels_see_occlusion_and_frames(env, geometry):
    """A block moved out of every view is not visible; one under the hand is hidden from the front camera."""
    env.reset(seed=2)
    q = env.joint_positions()
    poses = env.features().reshape(1, -1, 7).copy()
    poses[0, 0, :3] = [3.0, 3.0, 0.02]  # far away, behind the front camera's view
    grip = env.grip_position()
    poses[0, 1, :3] = [grip[0], grip[1], 0.02]  # under the hand: the wrist camera is offset, the palm covers
    labels = render_labels(env.spec, q[None], poses, geometry, log=lambda *_: None)
    assert not labels.visible["front"][0, 0] and not labels.visible["wrist"][0, 0]
    assert labels.visible["front"][0, 2]
    assert labels.uv["front"].shape == (1, 3, 2) and labels.angle["wrist"].shape == (1, 3)


def _locator_yaml(collected, tmp_path, stem_steps=30):
    return f"""
preset: tiny
model: {{width: 32, heads: 2, n_latents: 4, n_self_blocks: 1, mlp_ratio: 2.0, obs_mode: pixels, control: task,
        image_stem: locator, stem_channels: 8, n_action_bins: 11, n_value_bins: 21}}
learner: {{lr: 1.0e-3, lr_warmup_steps: 2, n_action_samples: 4, amp: none, stem_steps: {stem_steps},
          stem_batch_size: 8, image_jitter: 0.2}}
data: {{root: {collected}, batch_size: 8, cache_dir: {tmp_path / 'cache'}}}
run: {{out_dir: {tmp_path / 'run'}, steps: 4, log_every: 2, checkpoint_every: 2, progress: false, threads: 1}}
"""


def test_locator_config_needs_pixels_and_task_control():
    from pac_ros.model import PACConfig

    with pytest.raises(ValueError, match="locator"):
        PACConfig(obs_mode="pixels+features", image_stem="locator", control="task")
    with pytest.raises(ValueError, match="locator"):
        PACConfig(obs_mode="pixels", image_stem="locator", control="joint")
    cfg = PACConfig(obs_mode="pixels", image_stem="locator", control="task")
    assert cfg.locates_blocks and cfg.block_tokens and not cfg.uses_features


def test_training_a_locator_model_then_acting_from_images_alone(collected, tmp_path):
    """The locator learns first and is then frozen; PAC trains on the poses it estimates; the
    policy acts from images, joints and the instruction, with no block poses given."""
    from safetensors.torch import load_file

    from pac_ros.cli import main
    from pac_ros.policy import Policy

    cfg = tmp_path / "train.yaml"
    cfg.write_text(_locator_yaml(collected, tmp_path))
    assert main(["train", "--config", str(cfg)]) == 0
    report = json.loads((tmp_path / "run" / "stem_pretraining.json").read_text())
    assert report["steps"] == 30 and set(report["pixel_error"]) == {"front", "wrist"}
    stds = load_file(str(tmp_path / "run/checkpoints/step_00000002/model.safetensors"))["locator.pixel_std"]
    assert stds.shape == (2,) and torch.all(stds != 1.0)  # measured on the held-out episode
    assert np.isfinite(report["position_error_mm"])
    a = load_file(str(tmp_path / "run/checkpoints/step_00000002/model.safetensors"))
    b = load_file(str(tmp_path / "run/checkpoints/step_00000004/model.safetensors"))
    locator = [k for k in a if k.startswith("locator.")]
    assert locator and all(torch.equal(a[k], b[k]) for k in locator)  # frozen during PAC training
    assert not all(torch.equal(a[k], b[k]) for k in a)

    policy = Policy.load(tmp_path / "run", decoding="greedy")
    assert policy.model.config.obs_mode == "pixels" and policy.tracker is not None
    env = StackingEnv(policy.spec)
    try:
        obs = env.reset(seed=5)
        obs.pop("features")  # nothing of the simulator
        for _ in range(3):
            command, info = policy.act(obs)
            assert np.all(np.isfinite(command)) and not info["fallback"]
            assert np.all(command >= policy.spec.lower) and np.all(command <= policy.spec.upper)
            obs, *_ = env.step(command)
            obs.pop("features")
        assert policy.tracker.last is not None
        policy.reset()
        assert policy.tracker.last is None
    finally:
        env.close()


def _train_after(collected, tmp_path, stem_steps: int, run_extra: str):
    """A locator run (10 locator steps), then a second run on the same data whose run section adds
    ``run_extra``: the final weights of both."""
    from safetensors.torch import load_file

    from pac_ros.cli import main

    first = tmp_path / "first.yaml"
    first.write_text(_locator_yaml(collected, tmp_path / "a", stem_steps=10))
    assert main(["train", "--config", str(first)]) == 0
    second = tmp_path / "second.yaml"
    second.write_text(_locator_yaml(collected, tmp_path / "b", stem_steps=stem_steps).replace(
        "progress: false", f"progress: false, {run_extra}"))
    assert main(["train", "--config", str(second)]) == 0
    return tuple(load_file(str(tmp_path / f"{d}/run/checkpoints/step_00000004/model.safetensors")) for d in "ab")


def test_fine_tuning_with_init_from_trains_the_loaded_locator_further(collected, tmp_path):
    """A DAgger round: init_from the previous model, the locator fine-tuned on the new data."""
    before, after = _train_after(collected, tmp_path, 5, f"init_from: {tmp_path / 'a/run'}")
    assert json.loads((tmp_path / "b/run/stem_pretraining.json").read_text())["steps"] == 5
    assert not torch.equal(before["locator.stem.weight"], after["locator.stem.weight"])


def test_locator_from_reuses_another_runs_locator_and_trains_the_rest_afresh(collected, tmp_path):
    """run.locator_from: the locator (weights and pixel noise) of another checkpoint, frozen with
    stem_steps 0; the Perceiver and heads start from this run's own seed, not the other's."""
    from pac_ros.checkpoint import load_model_state
    from pac_ros.data import Dataset
    from pac_ros.learning.config import ConfigError, TrainConfig
    from pac_ros.learning.locator import load_locator
    from pac_ros.model import PACConfig, PACModel

    source, reused = _train_after(collected, tmp_path, 0, f"seed: 7, locator_from: {tmp_path / 'a/run'}")
    locator = [k for k in source if k.startswith("locator.")]
    assert "locator.pixel_std" in locator and all(torch.equal(source[k], reused[k]) for k in locator)
    # at load: the locator is the other run's, everything else this seed's fresh initialisation
    meta, _ = load_model_state(tmp_path / "a/run")
    cfg, spec = PACConfig(**meta["model_config"]), Dataset(collected).spec
    torch.manual_seed(7)
    fresh = PACModel(cfg, spec).state_dict()
    torch.manual_seed(7)
    model = PACModel(cfg, spec)
    load_locator(model, tmp_path / "a/run", log=lambda *a: None)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], source[k]) for k in locator)
    assert all(torch.equal(loaded[k], fresh[k]) for k in loaded if not k.startswith("locator."))

    blind = tmp_path / "blind.yaml"  # a model without a locator cannot take one
    blind.write_text(_locator_yaml(collected, tmp_path / "c", stem_steps=0).replace(
        "image_stem: locator", "image_stem: patch").replace(
        "progress: false", f"progress: false, locator_from: {tmp_path / 'a/run'}"))
    with pytest.raises(ConfigError, match="locator_from needs a model with a locator"):
        TrainConfig.load(blind)
