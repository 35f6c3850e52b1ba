"""DAgger collection: a learner drives, the perfect expert labels the states it visits."""
import numpy as np
import pytest
import torch

from pac_ros.checkpoint import checkpoint_meta, save_deployable
from pac_ros.collect import collect, collect_dagger
from pac_ros.data import Dataset
from pac_ros.model import PACModel, preset
from pac_ros.spec import default_spec


@pytest.fixture(scope="module")
def pixels_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = preset("tiny", obs_mode="pixels", image_stem="keypoints", control="task", n_self_blocks=1,
                 n_latents=8, width=32, heads=2, n_action_bins=21)
    model = PACModel(cfg, default_spec())
    path = tmp_path_factory.mktemp("ckpt") / "pixels"
    return save_deployable(path, model, meta=checkpoint_meta(model, "tiny", {}, "test"))


def test_with_beta_one_dagger_records_exactly_the_perfect_experts_episode(pixels_checkpoint, tmp_path):
    collect(tmp_path / "expert", 1, "perfect", seed=3)
    summary = collect_dagger(pixels_checkpoint, tmp_path / "dagger", 1, seed=3, beta=1.0)
    a = Dataset(tmp_path / "expert").load_episode(0, images=False)
    b = Dataset(tmp_path / "dagger").load_episode(0, images=False)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.joint_positions, b.joint_positions)
    assert summary.episodes[0].success and Dataset(tmp_path / "dagger").episodes[0]["source"] == "dagger"


def test_run_episode_records_the_label_and_executes_the_act(tmp_path):
    from pac_ros.collect import run_episode
    from pac_ros.data import DatasetWriter
    from pac_ros.sim.env import StackingEnv

    spec = default_spec()
    env = StackingEnv(spec, render=True)
    executed, labels = [], []

    def act(obs):  # stay put
        executed.append(obs["joint_positions"].copy())
        return obs["joint_positions"]

    def label(obs):  # a command that differs from what is executed (and is past max_step: clamped)
        labels.append(spec.safe_command(obs["joint_positions"] + 1.0, obs["joint_positions"]))
        return obs["joint_positions"] + 1.0

    with DatasetWriter(tmp_path / "ds", spec, features=True) as writer:
        run_episode(env, act, 0, writer, source="dagger", label=label)
    env.close()
    ep = Dataset(tmp_path / "ds").load_episode(0, images=False)
    assert np.allclose(ep.actions[:-1], np.array(labels))
    assert np.allclose(ep.joint_positions[1:], ep.joint_positions[0], atol=1e-3)  # the arm held still


def test_with_beta_zero_the_learner_drives(pixels_checkpoint, tmp_path):
    collect_dagger(pixels_checkpoint, tmp_path / "dagger", 1, seed=5, beta=0.0)
    collect(tmp_path / "expert", 1, "perfect", seed=5)
    dagger = Dataset(tmp_path / "dagger").load_episode(0, images=False)
    expert = Dataset(tmp_path / "expert").load_episode(0, images=False)
    n = min(len(dagger.timestamp), len(expert.timestamp))
    assert not np.allclose(dagger.joint_positions[1:n], expert.joint_positions[1:n], atol=1e-3)
    assert np.allclose(dagger.actions[0], expert.actions[0])  # same first state, same label


def test_dagger_beta_is_checked(pixels_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="beta"):
        collect_dagger(pixels_checkpoint, tmp_path / "d", 1, beta=1.5)
