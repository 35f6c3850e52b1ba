"""Learning from pixels: the keypoint stem, the auxiliary block-pose head, image augmentation."""
import numpy as np
import pytest
import torch

from pac_ros.learning import LearnerConfig
from pac_ros.learning.augment import augment_images, jitter, random_shift
from pac_ros.learning.learner import Learner
from pac_ros.model import PACConfig, PACModel
from pac_ros.model.testing import micro_config, random_obs, small_spec
from pac_ros.model.vision import spatial_softmax

torch.set_num_threads(1)


def keypoint_model(**kw):
    torch.manual_seed(0)
    spec = small_spec(cameras=2, size=16)
    cfg = micro_config(obs_mode="pixels", image_stem="keypoints", stem_channels=8, n_keypoints=4, **kw)
    return PACModel(cfg, spec), spec


def test_spatial_softmax_returns_the_peak_coordinates():
    maps = torch.full((1, 2, 8, 8), -50.0)
    maps[0, 0, 1, 6] = 50.0  # row 1, column 6
    maps[0, 1, 7, 0] = 50.0
    xy = spatial_softmax(maps, torch.tensor(1.0))[0]
    centres = torch.linspace(-1 + 1 / 8, 1 - 1 / 8, 8)
    assert torch.allclose(xy[0], torch.stack([centres[6], centres[1]]), atol=1e-4)
    assert torch.allclose(xy[1], torch.stack([centres[0], centres[7]]), atol=1e-4)


def test_keypoint_stem_tokens_and_state():
    model, spec = keypoint_model()
    obs = random_obs(spec, 3, features=False)
    tok, pad = model.tokens(obs)
    n_text = obs["instruction_tokens"].shape[1]
    # joints + 4 keypoints per camera + text + one state token; no patches
    assert tok.shape == (3, spec.action_dim + 2 * 4 + n_text + 1, 32)
    assert not model.patch and set(model.keypoint_stem) == {"cam0", "cam1"}
    # the state token sees the keypoints: joints + 2 cameras x 4 keypoints x (x, y)
    assert model.state_token[0].in_features == spec.action_dim + 16
    with torch.no_grad():
        z = model.encode(obs)
    assert z.shape == (3, 4, 32) and torch.isfinite(z).all()


def test_keypoints_follow_the_image():
    model, spec = keypoint_model()
    obs = random_obs(spec, 2, features=False)
    with torch.no_grad():
        a, _ = model.tokens(obs)
        obs["images"]["cam0"] = torch.flip(obs["images"]["cam0"], dims=[2])
        b, _ = model.tokens(obs)
    cam0 = slice(spec.action_dim, spec.action_dim + 4)
    cam1 = slice(spec.action_dim + 4, spec.action_dim + 8)
    assert not torch.allclose(a[:, cam0], b[:, cam0]) and torch.allclose(a[:, cam1], b[:, cam1])


def test_image_stem_is_validated():
    with pytest.raises(ValueError, match="image_stem"):
        PACConfig(image_stem="resnet")
    with pytest.raises(ValueError, match="n_keypoints"):
        PACConfig(image_stem="keypoints", n_keypoints=0)


def test_aux_head_learns_block_features_from_images():
    """The auxiliary loss trains the encoder to report what the images show (here: a bright
    square's position, the only thing that varies), and the pixels model never reads features."""
    model, spec = keypoint_model(aux_features=True)
    rng = np.random.default_rng(0)
    n = 32
    images = np.zeros((n, 16, 16, 3), np.uint8)
    feats = np.zeros((n, spec.feature_dim), np.float32)
    for i in range(n):
        r, c = rng.integers(0, 13, 2)
        images[i, r:r + 3, c:c + 3] = 255
        feats[i, :2] = (c / 13.0, r / 13.0)  # block 0's x, y
    obs = random_obs(spec, n, features=False)
    obs["images"] = {"cam0": torch.from_numpy(images), "cam1": torch.zeros(n, 16, 16, 3, dtype=torch.uint8)}
    obs["features"] = torch.from_numpy(feats)
    model.set_normalization(features=torch.from_numpy(feats))
    learner = Learner(model, LearnerConfig(lr=3e-3, lr_warmup_steps=1, amp="none", n_action_samples=2, beta=0.0))
    batch = {"obs": obs, "next_obs": obs, "action": torch.zeros(n, spec.action_dim),
             "reward": torch.zeros(n), "discount": torch.zeros(n)}
    first = learner.step(batch)["aux_loss"]
    losses = [learner.step(batch)["aux_loss"] for _ in range(400)]
    assert min(losses[-100:]) < 0.3 * first
    # features are a training target only: the encoding does not depend on them
    with torch.no_grad():
        z1 = model.encode(obs)
        z2 = model.encode({**obs, "features": torch.zeros_like(obs["features"])})
    assert torch.equal(z1, z2)


def test_aux_head_absent_unless_configured():
    model, _ = keypoint_model()
    assert model.aux_head is None
    with pytest.raises(ValueError, match="auxiliary head"):
        model.aux_prediction(torch.zeros(1, 4, 32))


def test_random_shift_moves_each_image_by_at_most_pad():
    img = torch.zeros(16, 12, 12, 3, dtype=torch.uint8)
    img[:, 6, 6] = 255
    g = torch.Generator().manual_seed(0)
    out = random_shift(img, 2, g)
    assert out.shape == img.shape and out.dtype == torch.uint8
    moves = set()
    for i in range(16):
        r, c = np.argwhere(out[i, :, :, 0].numpy() == 255)[0]
        assert abs(r - 6) <= 2 and abs(c - 6) <= 2
        moves.add((int(r), int(c)))
    assert len(moves) > 1  # per-image offsets
    assert torch.equal(random_shift(img, 0), img)
    assert torch.equal(random_shift(img, 2, torch.Generator().manual_seed(0)), out)  # seeded


def test_jitter_scales_brightness_within_bounds_and_augment_leaves_other_keys():
    img = torch.full((8, 4, 4, 3), 100, dtype=torch.uint8)
    out = jitter(img, 0.2, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and ((out >= 80) & (out <= 120)).all() and not torch.equal(out, img)
    obs = {"images": {"a": img}, "joint_positions": torch.ones(8, 2)}
    aug = augment_images(obs, 1, 0.1)
    assert aug["joint_positions"] is obs["joint_positions"] and aug["images"]["a"].shape == img.shape
    assert augment_images(obs, 0, 0.0)["images"]["a"] is img
