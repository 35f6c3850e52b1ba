"""PAC learner: C51 projection, loss semantics, target updates, config, RL sanity check."""
import json
import math

import numpy as np
import pytest
import torch

from pac_ros.learning import (
    ConfigError,
    Learner,
    LearnerConfig,
    TrainConfig,
    categorical_projection,
    load_target_state,
    policy_loss,
    save_weights_deployable,
)
from pac_ros.model import PACModel, tokenize_batch
from pac_ros.model.testing import micro_config, random_obs, small_spec

torch.set_num_threads(1)
SUPPORT = torch.linspace(0.0, 1.0, 11)


# ---- categorical projection ---------------------------------------------------------
def test_projection_conserves_mass():
    torch.manual_seed(0)
    p = torch.rand(32, 11).softmax(-1)
    r = torch.rand(32) * 2 - 0.5
    d = torch.rand(32)
    out = categorical_projection(p, r, d, SUPPORT)
    assert torch.allclose(out.sum(-1), torch.ones(32), atol=1e-6)
    assert (out >= 0).all()


def test_projection_exact_on_atoms():
    p = torch.zeros(3, 11)
    p[:, 4] = 1.0  # z = 0.4
    r = torch.tensor([0.1, 0.0, 0.3])
    d = torch.tensor([1.0, 0.5, 0.0])
    out = categorical_projection(p, r, d, SUPPORT)
    expect = torch.zeros(3, 11)
    expect[0, 5] = 1.0  # 0.1 + 0.4
    expect[1, 2] = 1.0  # 0.0 + 0.5*0.4
    expect[2, 3] = 1.0  # 0.3, no bootstrap
    assert torch.allclose(out, expect, atol=1e-6)


def test_projection_splits_between_atoms_and_keeps_mean():
    p = torch.zeros(1, 11)
    p[0, 0] = 1.0
    out = categorical_projection(p, torch.tensor([0.125]), torch.tensor([0.9]), SUPPORT)
    assert torch.allclose(out[0, 1], torch.tensor(0.75)) and torch.allclose(out[0, 2], torch.tensor(0.25))
    torch.manual_seed(1)
    p = torch.rand(8, 11).softmax(-1)
    r, d = torch.rand(8) * 0.1, torch.full((8,), 0.9)
    out = categorical_projection(p, r, d, SUPPORT)
    assert torch.allclose((out * SUPPORT).sum(-1), r + d * (p * SUPPORT).sum(-1), atol=1e-6)


def test_projection_clips_at_edges():
    p = torch.full((2, 11), 1 / 11)
    out = categorical_projection(p, torch.tensor([5.0, -5.0]), torch.tensor([0.99, 0.99]), SUPPORT)
    assert torch.allclose(out[0, -1], torch.tensor(1.0)) and torch.allclose(out[1, 0], torch.tensor(1.0))


# ---- learner semantics --------------------------------------------------------------
def make_learner(**kw):
    torch.manual_seed(0)
    spec = small_spec(n_arm=1, cameras=1)
    model = PACModel(micro_config(obs_mode="pixels+features"), spec)
    cfg = dict(lr=1e-3, lr_warmup_steps=1, amp="none", n_action_samples=4)
    cfg.update(kw)
    return Learner(model, LearnerConfig(**cfg)), spec


def make_batch(spec, B=6, seed=0, discount=0.99):
    g = torch.Generator().manual_seed(seed)
    return {"obs": random_obs(spec, B, seed), "next_obs": random_obs(spec, B, seed + 1),
            "action": torch.rand(B, spec.action_dim, generator=g) * 2 - 1,
            "reward": torch.rand(B, generator=g), "discount": torch.full((B,), discount),
            "next_action": torch.rand(B, spec.action_dim, generator=g) * 2 - 1}


def test_alpha_one_is_exact_bc_and_q_gets_no_policy_gradient():
    learner, spec = make_learner()
    learner.step(make_batch(spec, seed=5))  # move the heads off zero
    batch = learner.to_device(make_batch(spec))
    losses, metrics = learner.compute_losses(batch, alpha=1.0)
    m = learner.model
    with torch.no_grad():
        logits = m.policy_logits(m.encode(batch["obs"]))
        bc = -m.log_prob(logits, batch["action"][:, None]).mean()
    assert torch.equal(losses["policy"].detach(), bc)
    learner.optimizer.zero_grad(set_to_none=True)
    losses["policy"].backward()
    assert all(p.grad is None or not p.grad.any() for p in m.critic_parameters())
    assert m.policy_head[-1].weight.grad.abs().sum() > 0
    # and the Q decoder does get the critic's gradient
    learner.optimizer.zero_grad(set_to_none=True)
    learner.compute_losses(batch, alpha=0.3)[0]["critic"].backward()
    assert m.q_head[-1].weight.grad.abs().sum() > 0


def test_policy_loss_mixes_bc_and_improvement():
    lp_data = torch.tensor([-1.0, -3.0])
    lp_s = torch.tensor([[-1.0, -2.0], [-0.5, -4.0]])
    w = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    loss, bc, imp = policy_loss(lp_data, lp_s, w, alpha=0.25)
    assert torch.isclose(bc, torch.tensor(2.0)) and torch.isclose(imp, torch.tensor((1.5 + 0.5) / 2))
    assert torch.isclose(loss, 0.25 * bc + 0.75 * imp)


def test_no_bootstrap_when_terminal():
    learner, spec = make_learner()
    learner.step(make_batch(spec, seed=3))
    batch = make_batch(spec, discount=0.0)
    _, m1 = learner.compute_losses(learner.to_device(batch), 0.5)
    batch2 = dict(batch, next_obs=random_obs(spec, 6, seed=42))
    torch.manual_seed(0)
    l2, m2 = learner.compute_losses(learner.to_device(batch2), 0.5)
    assert m1["target_q_mean"] == pytest.approx(batch["reward"].mean().item(), abs=1e-5)
    assert m1["critic_loss"] == pytest.approx(m2["critic_loss"].item(), abs=1e-6)


def test_polyak_target_update():
    learner, spec = make_learner(tau=0.1)
    before = [t.clone() for t in learner.target.parameters()]
    learner.step(make_batch(spec))
    for b, t, p in zip(before, learner.target.parameters(), learner.model.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * p, atol=1e-6)
    assert not learner.target.policy_head[-1].weight.requires_grad


def test_hard_target_update():
    learner, spec = make_learner(target_update="hard", target_period=2)
    t0 = [t.clone() for t in learner.target.parameters()]
    learner.step(make_batch(spec))
    assert all(torch.equal(a, b) for a, b in zip(t0, learner.target.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), learner.target.parameters()))
    learner.step(make_batch(spec, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), learner.target.parameters()))


def test_step_metrics_and_lr_warmup():
    learner, spec = make_learner(lr_warmup_steps=4, lr=1e-3)
    m = learner.step(make_batch(spec))
    for key in ("loss", "policy_loss", "critic_loss", "bc_nll", "alpha", "q_mean", "q_entropy",
                "policy_entropy", "ess", "grad_norm", "lr"):
        assert key in m and np.isfinite(m[key]), key
    assert m["lr"] == pytest.approx(2.5e-4) and 0 < m["ess"] <= 1


def test_alpha_schedule():
    c = LearnerConfig(alpha_start=1.0, alpha_final=0.2, alpha_warmup_steps=10, alpha_decay_steps=20)
    assert c.alpha(0) == 1.0 and c.alpha(9) == 1.0
    assert c.alpha(20) == pytest.approx(0.6) and c.alpha(30) == pytest.approx(0.2) and c.alpha(1000) == 0.2


def test_config_yaml_and_unknown_keys(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("preset: tiny\nmodel: {obs_mode: features}\nlearner: {eta: 0.2, alpha_final: 0.1}\n"
                 "data: {root: /x, batch_size: 8}\nrun: {steps: 5}\n")
    cfg = TrainConfig.load(f)
    assert cfg.learner.eta == 0.2 and cfg.learner.gamma == 0.99 and cfg.model_config().obs_mode == "features"
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    for bad, msg in (("learner: {etaa: 1}\n", "etaa"), ("model: {widht: 1}\n", "widht"),
                     ("foo: 1\n", "foo"), ("learner: {target_update: soft}\n", "target_update")):
        f.write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.load(f)


# ---- RL sanity check: offline contextual bandit -------------------------------------
def _bandit(spec, n, rng):
    """Two contexts. Behaviour: 80% its mode (reward 0.2), 20% the best action (reward 1)."""
    ctx = rng.integers(0, 2, n)
    good = rng.random(n) < 0.2
    mode = np.where(ctx == 0, -0.6, 0.6)
    a = np.where(good, -mode, mode)[:, None].repeat(spec.action_dim, 1).astype(np.float32)
    r = np.where(good, 1.0, 0.2).astype(np.float32)
    feats = np.zeros((n, spec.feature_dim), np.float32)
    feats[:, 0] = np.where(ctx == 0, -1.0, 1.0)
    obs = {"joint_positions": torch.zeros(n, spec.action_dim), "features": torch.from_numpy(feats),
           "instruction_tokens": torch.from_numpy(tokenize_batch([spec.instructions()[0]] * n, 48))}
    return obs, torch.from_numpy(a), torch.from_numpy(r), torch.from_numpy(-mode).float()


def _train_bandit(alpha_final, steps=260, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = small_spec(n_arm=1, cameras=0)
    model = PACModel(micro_config(obs_mode="features"), spec)
    learner = Learner(model, LearnerConfig(
        lr=1e-3, lr_warmup_steps=10, alpha_warmup_steps=100, alpha_decay_steps=100, alpha_final=alpha_final,
        tau=0.05, eta=0.05, n_action_samples=16, amp="none"))
    obs, a, r, best = _bandit(spec, 512, rng)
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, 512, 64))
        o = {k: v[idx] for k, v in obs.items()}
        learner.step({"obs": o, "next_obs": o, "action": a[idx], "reward": r[idx], "discount": torch.zeros(64)})
    with torch.no_grad():
        o = {k: v[:16] for k, v in obs.items()}
        greedy = model.greedy_action(model.policy_logits(model.encode(o)))
    return greedy, best[:16]


def test_pac_beats_bc_on_offline_bandit():
    greedy_bc, best = _train_bandit(alpha_final=1.0)
    mode = -best
    assert torch.allclose(greedy_bc, mode[:, None].expand_as(greedy_bc))  # BC copies the behaviour's mode
    greedy_pac, best = _train_bandit(alpha_final=0.2)
    assert torch.allclose(greedy_pac, best[:, None].expand_as(greedy_pac))  # PAC finds the high-reward action


# ---- transitions, image cache, training loop ----------------------------------------
def _write_dataset(root, spec, lengths=(5, 4, 6), terminal=(True, False, True)):
    from pac_ros.data import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(root, spec, features=True) as w:
        for e, (T, term) in enumerate(zip(lengths, terminal)):
            ep = w.begin_episode(spec.instructions()[e % 2], seed=e)
            for t in range(T):
                q = rng.uniform(-0.5, 0.5, spec.action_dim)
                q[-1] = 0.02
                a = q + rng.uniform(-0.05, 0.05, spec.action_dim)
                img = {c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras}
                r = 1.0 if (term and t == T - 2) else 0.0
                ep.add_step(0.1 * (t + 1), q, img, a, r, features=rng.normal(size=spec.feature_dim))
            w.commit(ep, terminal=term)


@pytest.fixture
def dataset(tmp_path):
    from pac_ros.data import Dataset

    spec = small_spec(n_arm=1, cameras=1, size=16)
    _write_dataset(tmp_path / "ds", spec)
    return Dataset(tmp_path / "ds")


def test_transitions_stay_in_episodes_and_discount(dataset, tmp_path):
    from pac_ros.learning.data import TransitionStore

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    msgs = []
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=msgs.append)
    assert len(store) == 4 + 3 + 5 and store.n_rows == 15
    assert set(store.index) == set(range(0, 4)) | set(range(5, 8)) | set(range(9, 14))
    b = store.batch(np.arange(len(store)))
    assert b["obs"]["images"]["cam0"].shape == (12, 8, 8, 3) and b["obs"]["images"]["cam0"].dtype == torch.uint8
    ep0 = dataset.load_episode(0)
    assert torch.allclose(b["next_obs"]["joint_positions"][0], torch.from_numpy(np.array(ep0.joint_positions[1])))
    expect = dataset.spec.normalize_action(ep0.actions[:4], ep0.joint_positions[:4])
    assert np.allclose(b["action"][:4].numpy(), expect)
    disc = b["discount"].numpy()
    assert disc[3] == 0.0 and disc[6] == pytest.approx(0.9) and disc[11] == 0.0  # terminal, truncated, terminal
    assert np.allclose(disc[[0, 1, 2, 4, 5, 7, 8, 9, 10]], 0.9)
    assert b["reward"].numpy()[3] == 1.0 and b["reward"].numpy()[6] == 0.0
    assert len(msgs) == 1 and "building image cache" in msgs[0]
    TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=msgs.append)
    assert len(msgs) == 1  # cached, not rebuilt
    s1, s2 = store.sample(8, step=3, seed=1), store.sample(8, step=3, seed=1)
    assert torch.equal(s1["action"], s2["action"])


def _train_yaml(tmp_path, root, out, steps):
    f = tmp_path / f"train_{out}.yaml"
    f.write_text(f"""
preset: tiny
model: {{width: 32, heads: 2, n_latents: 4, n_self_blocks: 1, mlp_ratio: 2.0, obs_mode: pixels+features,
        patch_size: 8, n_action_bins: 11, n_value_bins: 21}}
learner: {{lr: 1.0e-3, lr_warmup_steps: 2, n_action_samples: 4, alpha_warmup_steps: 2, alpha_decay_steps: 2,
          amp: none}}
data: {{root: {root}, batch_size: 8, cache_dir: {tmp_path / 'cache'}}}
run: {{out_dir: {tmp_path / out}, steps: {steps}, log_every: 2, checkpoint_every: 3, progress: false, threads: 1}}
""")
    return str(f)


def test_train_main_resume_is_exact(dataset, tmp_path, capsys):
    from safetensors.torch import load_file

    from pac_ros.cli import main as cli_main

    def main(argv):
        return cli_main(["train", *argv])
    from pac_ros.policy import Policy

    root = dataset.root
    assert main(["--config", _train_yaml(tmp_path, root, "full", 7)]) == 0
    assert main(["--config", _train_yaml(tmp_path, root, "part", 4)]) == 0  # checkpoints at 3 and 4
    assert main(["--config", _train_yaml(tmp_path, root, "part", 7)]) == 0  # resumes at 4
    full = load_file(str(tmp_path / "full/checkpoints/step_00000007/model.safetensors"))
    part = load_file(str(tmp_path / "part/checkpoints/step_00000007/model.safetensors"))
    assert all(torch.equal(full[k], part[k]) for k in full)
    assert (tmp_path / "full/latest").read_text() == "step_00000007"
    assert list((tmp_path / "full/tb").iterdir())
    pol = Policy.load(tmp_path / "full/checkpoints/step_00000007", spec=dataset.spec, device="cpu")
    assert pol.meta["dataset_fingerprint"] == dataset.fingerprint() and pol.meta["step"] == 7
    # a checkpoint written before input_chunk existed (or with another one) still resumes ...
    ckpt = tmp_path / "full/checkpoints/step_00000007"
    meta = json.loads((ckpt / "meta.json").read_text())
    del meta["model_config"]["input_chunk"]
    (ckpt / "meta.json").write_text(json.dumps(meta))
    assert main(["--config", _train_yaml(tmp_path, root, "full", 8)]) == 0
    assert (tmp_path / "full/latest").read_text() == "step_00000008"
    # ... but one of another architecture does not
    meta["model_config"]["width"] = 64
    (ckpt / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "full/latest").write_text("step_00000007")
    capsys.readouterr()
    assert main(["--config", _train_yaml(tmp_path, root, "full", 9)]) != 0
    assert "model config differs from the training config" in capsys.readouterr().err
    # bad config key -> exit code 2, clear message
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner: {gama: 0.9}\n")
    assert main(["--config", str(bad)]) == 2


def test_ddp_two_processes_gloo(dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): runs, ranks stay in sync, rank 0 checkpoints."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nproc_per_node=2", "--master_port=0", "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0",
           "-m", "pac_ros.cli", "train", "--config", _train_yaml(tmp_path, dataset.root, "ddp", 4)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 2" in r.stderr
    assert (tmp_path / "ddp/checkpoints/step_00000004/model.safetensors").is_file()


def test_temperature_dual_meets_kl_bound():
    from pac_ros.learning.losses import kl_to_uniform, temperature_dual

    torch.manual_seed(0)
    q = torch.rand(64, 16)
    log_eta = torch.tensor(np.log(0.01), requires_grad=True)  # too sharp: KL far above the bound
    opt = torch.optim.Adam([log_eta], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        temperature_dual(q, log_eta, 0.1).backward()
        opt.step()
    kl = kl_to_uniform((q / log_eta.exp()).softmax(-1)).mean()
    assert kl.item() == pytest.approx(0.1, abs=0.01)


def test_learned_eta_trains_and_resumes(tmp_path):
    from pac_ros.checkpoint import checkpoint_meta
    from pac_ros.learning import load_into_learner, save_checkpoint

    learner, spec = make_learner(eta_kl=0.1, eta_lr=0.05, eta=0.5)
    for s in range(3):
        m = learner.step(make_batch(spec, seed=s))
    assert m["eta"] != pytest.approx(0.5) and np.isfinite(m["kl_imp"])
    save_checkpoint(tmp_path / "c", learner, meta=checkpoint_meta(learner.model))
    ref = learner.step(make_batch(spec, seed=9))
    fresh, _ = make_learner(eta_kl=0.1, eta_lr=0.05, eta=0.5)
    load_into_learner(tmp_path / "c", fresh)  # restores log η, its Adam state and the torch RNG
    assert fresh.step(make_batch(spec, seed=9)) == ref


def test_export_writes_the_target_networks_weights_as_a_deployable_checkpoint(tmp_path):
    """pac-ros export: a training checkpoint's target (Polyak-averaged) or online weights as a checkpoint
    a policy loads, no training state; a deployable checkpoint has no target weights to give."""
    from pac_ros.checkpoint import CheckpointError, checkpoint_meta
    from pac_ros.cli import main
    from pac_ros.learning import save_checkpoint
    from pac_ros.policy import Policy

    learner, spec = make_learner(tau=0.5)
    for s in range(3):
        learner.step(make_batch(spec, seed=s))
    save_checkpoint(tmp_path / "run" / "step_3", learner, meta=checkpoint_meta(learner.model))
    assert main(["export", str(tmp_path / "run" / "step_3"), "--out", str(tmp_path / "target")]) == 0
    assert main(["export", str(tmp_path / "run" / "step_3"), "--out", str(tmp_path / "online"),
                 "--weights", "online"]) == 0
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["meta.json", "model.safetensors"]
    from pac_ros.cli.training import WEIGHTS as CLI_WEIGHTS
    from pac_ros.learning.checkpoint import WEIGHTS

    assert set(CLI_WEIGHTS) == set(WEIGHTS)
    for weights, net in (("target", learner.target), ("online", learner.model)):
        policy = Policy.load(tmp_path / weights, device="cpu")
        assert policy.meta["weights"] == weights and policy.meta["step"] == 3
        loaded = policy.model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(learner.target.parameters(), learner.model.parameters()))
    with pytest.raises(CheckpointError, match="only a training checkpoint holds the target"):
        load_target_state(tmp_path / "target")
    assert main(["export", str(tmp_path / "run" / "step_3"), "--out", str(tmp_path / "target")]) == 0  # again
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        save_weights_deployable(tmp_path / "run" / "step_3", tmp_path / "models")
    assert (tmp_path / "models" / "keep.txt").read_text() == "mine"
    state = tmp_path / "run" / "step_3" / "train_state.safetensors"
    raw = bytearray(state.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit-pattern in the last tensor
    state.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_target_state(tmp_path / "run" / "step_3")


def test_n_step_targets_sum_rewards_and_stop_at_episode_end(dataset, tmp_path):
    from pac_ros.learning.data import TransitionStore

    cfg = micro_config(obs_mode="features")
    one = TransitionStore(dataset, cfg, gamma=0.9, log=lambda *a: None)
    three = TransitionStore(dataset, cfg, gamma=0.9, log=lambda *a: None, n_step=3)
    b1, b3 = one.batch(np.arange(len(one))), three.batch(np.arange(len(three)))
    # episode 0: rows 0-4, reward 1 at row 3, terminal; transitions 0..3
    assert np.allclose(b3["reward"][:4].numpy(), [0.0, 0.81, 0.9, 1.0])
    assert np.allclose(b3["discount"][:4].numpy(), [0.729, 0.0, 0.0, 0.0])  # rows 3, 4 (terminal), 4, 4
    assert torch.equal(b3["next_obs"]["joint_positions"][0], b1["obs"]["joint_positions"][3])
    # episode 1 (truncated, rows 5-8): the last transition bootstraps from row 8 after one step
    assert np.allclose(b3["discount"][4:7].numpy(), [0.729, 0.81, 0.9])
    assert torch.equal(b3["next_obs"]["joint_positions"][4:7], b1["next_obs"]["joint_positions"][[6, 6, 6]])
    assert torch.equal(b3["action"], b1["action"]) and torch.equal(b3["obs"]["features"], b1["obs"]["features"])
    with pytest.raises(ValueError, match="n_step"):
        TransitionStore(dataset, cfg, gamma=0.9, log=lambda *a: None, n_step=0)


def test_critic_starts_at_the_data_return_histogram(dataset):
    from pac_ros.learning.data import TransitionStore

    cfg = micro_config(obs_mode="features")
    store = TransitionStore(dataset, cfg, gamma=0.9, log=lambda *a: None)
    assert np.allclose(store.returns_to_go[:4], [0.729, 0.81, 0.9, 1.0]) and not store.returns_to_go[4:7].any()
    model = PACModel(cfg, dataset.spec)
    hist = store.return_histogram(model.value_support)
    assert hist.sum().item() == pytest.approx(1.0)
    assert (hist * model.value_support.double()).sum().item() == pytest.approx(store.returns_to_go.mean(), abs=1e-6)
    model.set_return_prior(hist)
    b = store.batch(np.arange(len(store)))
    with torch.no_grad():
        q = model.q_value(model.encode(b["obs"]), b["action"][:, None].float())
    assert torch.allclose(q, torch.full_like(q, float(store.returns_to_go.mean())), atol=2e-3)
    with pytest.raises(ValueError, match="return prior"):
        model.set_return_prior(torch.full((3,), 0.5))


def test_in_sample_target_uses_the_data_next_action():
    learner, spec = make_learner(critic_target="data", lr=3e-3)
    for i in range(20):
        learner.step(make_batch(spec, seed=i))
    learner.hard_update()  # a target critic that depends on the action
    batch = make_batch(spec)
    batch["next_action"] = torch.zeros(6, spec.action_dim)
    _, m1 = learner.compute_losses(learner.to_device(batch), 0.5)
    torch.manual_seed(1)  # other policy samples: the target must not change
    _, m2 = learner.compute_losses(learner.to_device(batch), 0.5)
    assert m1["target_q_mean"] == m2["target_q_mean"]
    batch["next_action"] = torch.ones(6, spec.action_dim)
    _, m3 = learner.compute_losses(learner.to_device(batch), 0.5)
    assert m3["target_q_mean"] != m1["target_q_mean"]


def test_conservative_term_lowers_policy_sample_values_against_the_data():
    gaps = {}
    for weight in (0.0, 5.0):
        learner, spec = make_learner(conservative=weight, lr=3e-3)
        batch = make_batch(spec, seed=7)
        for _ in range(40):
            m = learner.step(batch)
        gaps[weight] = m["q_samples_mean"] - m["q_mean"]
    assert gaps[5.0] < gaps[0.0] - 0.02
    with pytest.raises(ValueError, match="conservative"):
        LearnerConfig(conservative=-1.0)


def test_critic_off_the_encoder_leaves_what_the_actor_learns_unchanged():
    """critic_trains_encoder: false: under BC (α = 1) the actor's parameters follow the same path with and
    without a critic and gap loss; with the shared default they do not."""
    def actor_after(**kw):
        learner, spec = make_learner(alpha_final=1.0, alpha_start=1.0, grad_clip=0.05, **kw)
        torch.manual_seed(3)
        for i in range(3):
            learner.step(make_batch(spec, seed=10 + i))
        critic = {id(p) for p in learner.model.critic_parameters()}
        return [p.detach().clone() for p in learner.model.parameters() if id(p) not in critic]

    alone = actor_after(beta=0.0, critic_trains_encoder=False)
    head = actor_after(beta=1.0, conservative=1.0, critic_trains_encoder=False)
    shared = actor_after(beta=1.0, conservative=1.0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(alone, head))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(alone, shared))
    model = make_learner()[0].model
    critic = {id(p) for p in model.critic_parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in critic}
    assert names and all(n.startswith(("q_dec", "q_head", "action_embed", "q_query")) for n in names)


def test_critic_own_encoder_needs_the_critic_to_train_it():
    with pytest.raises(ConfigError, match="critic_trains_encoder"):
        TrainConfig.from_dict({"model": {"critic_encoder": "own"}, "learner": {"critic_trains_encoder": False}})


def test_online_improvement_reference_samples_the_policy_being_trained():
    learner, spec = make_learner(improvement_reference="online")
    learner.model.policy_head[-1].bias.data[0] = 30.0  # online policy: all mass on the first bin
    batch = learner.to_device(make_batch(spec))
    torch.manual_seed(0)
    seen = []
    orig = learner.model.q_value

    def spy(lat, actions):
        seen.append(actions)
        return orig(lat, actions)

    learner.model.q_value = spy
    learner.compute_losses(batch, 0.5)
    assert torch.all(seen[0] == -1.0)  # the target (still uniform) would have sampled other bins
    with pytest.raises(ValueError, match="improvement_reference"):
        LearnerConfig(improvement_reference="behaviour")


def test_data_improvement_weights_favour_better_data_actions_and_reduce_to_bc():
    from pac_ros.learning.losses import data_improvement_weights

    flat = data_improvement_weights(torch.full((4,), 0.3), torch.full((4, 8), 0.3), eta=0.05)
    assert torch.allclose(flat, torch.ones(4))
    q_samples = torch.tensor([[0.1, 0.7]] * 3)  # each state: one good and one poor action in reach
    w = data_improvement_weights(torch.tensor([0.7, 0.1, 0.4]), q_samples, eta=0.05, max_weight=20.0)
    assert w[0] > w[2] > w[1] and torch.isclose(w.mean(), torch.tensor(1.0))
    clipped = data_improvement_weights(torch.tensor([0.9, 0.1]), torch.full((2, 4), 0.1), eta=0.05, max_weight=20.0)
    assert float(clipped[0] / clipped[1]) == pytest.approx(20.0)  # exp(16) clipped to 20


def test_in_sample_improvement_with_a_flat_critic_is_exactly_bc():
    learner, spec = make_learner(improvement_actions="data")
    with torch.no_grad():  # Q(s, a) the same everywhere: nothing to prefer
        learner.model.q_head[-1].weight.zero_()
    batch = learner.to_device(make_batch(spec))
    _, m = learner.compute_losses(batch, 0.0)
    assert m["improvement_loss"] == pytest.approx(float(m["bc_nll"]), rel=1e-5)
    assert m["ess"] == pytest.approx(1.0, rel=1e-5)
    m = learner.step(make_batch(spec))
    assert math.isfinite(m["loss"])
    with pytest.raises(ValueError, match="improvement_actions"):
        LearnerConfig(improvement_actions="behaviour")


def test_value_weighting_drops_states_whose_actions_all_fail():
    from pac_ros.learning.losses import data_improvement_weights

    q_data = torch.tensor([0.9, 0.85, 0.07, 0.06])  # two rows on a successful path, two doomed
    q_samples = q_data[:, None].expand(-1, 8)  # every action alike in each state: advantage is flat
    adv = data_improvement_weights(q_data, q_samples, eta=0.05)
    val = data_improvement_weights(q_data, q_samples, eta=0.05, baseline="value")
    assert torch.allclose(adv, torch.ones(4))
    assert val[2] < 1e-6 and val[3] < 1e-6 and val[0] > val[1] > 1.0 and torch.isclose(val.mean(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="data_weighting"):
        LearnerConfig(data_weighting="return")


def test_target_network_standardises_inputs_like_the_online_one_after_init_from(dataset, tmp_path):
    """Fine-tuning (init_from) loads another run's weights and input statistics into the online
    network; the target must get them too, or every bootstrap target sees other inputs."""
    from safetensors.torch import load_file

    from pac_ros.cli import main as cli_main

    def main(argv):
        return cli_main(["train", *argv])

    assert main(["--config", _train_yaml(tmp_path, dataset.root, "first", 3)]) == 0
    other = tmp_path / "other"
    spec = dataset.spec
    _write_dataset(other, spec, lengths=(7, 6), terminal=(True, True))
    cfg = tmp_path / "train_second.yaml"
    cfg.write_text(open(_train_yaml(tmp_path, other, "second", 2)).read().replace(
        "run: {", f"run: {{init_from: {tmp_path / 'first/checkpoints/step_00000003'}, "))
    assert main(["--config", str(cfg)]) == 0
    ckpt = tmp_path / "second/checkpoints/step_00000002"
    online = load_file(str(ckpt / "model.safetensors"))
    state = load_file(str(ckpt / "train_state.safetensors"))
    first = load_file(str(tmp_path / "first/checkpoints/step_00000003/model.safetensors"))
    for name in ("joint_loc", "joint_scale", "feature_loc", "feature_scale"):
        assert torch.equal(state[f"target.{name}"], online[name]), name
        assert torch.equal(online[name], first[name]), name  # the checkpoint's statistics, not the new data's


def test_hard_update_copies_buffers():
    spec = small_spec(n_arm=1, cameras=0)
    model = PACModel(micro_config(obs_mode="features"), spec)
    learner = Learner(model, LearnerConfig(amp="none"))
    model.set_normalization(torch.randn(10, spec.action_dim), torch.randn(10, spec.feature_dim))
    learner.hard_update()
    for (name, b), t in zip(model.named_buffers(), learner.target.buffers()):
        assert torch.equal(b, t), name


def test_value_resampled_actor_batch_needs_in_sample_value_weighting():
    with pytest.raises(ValueError, match="actor_batch: value"):
        LearnerConfig(actor_batch="value")  # improvement_actions samples
    LearnerConfig(actor_batch="value", improvement_actions="data", data_weighting="value")


def test_data_values_are_the_target_q_of_each_transition_in_store_order(dataset, tmp_path):
    """The priority table: Q_θ'(s, a_data) per transition, in the store's order (its batches come
    back sorted by row, so a shuffled read must be put back in place)."""
    from pac_ros.learning.data import TransitionStore

    torch.manual_seed(0)
    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    learner = Learner(PACModel(cfg, store.spec), LearnerConfig(amp="none"))
    with torch.no_grad():  # a critic that is not flat (its head starts at zero)
        for prm in learner.target.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    table, none = learner.data_values(store, chunk=5)
    assert none is None
    for i in (0, 4, 11):
        b = store.batch(np.array([i]))
        with torch.no_grad():
            q = learner.target.q_value(learner.target.encode(b["obs"]), b["action"].float()[:, None])
        assert table[i] == pytest.approx(float(q[0, 0]), abs=1e-5)
    assert len(np.unique(table)) > 1


def test_value_priority_draws_the_transitions_that_succeed(dataset, tmp_path):
    """With Q = 1 on a few transitions and 0 elsewhere, η = 0.1 draws those ~e^10 times as often:
    the actor imitates them with B samples a batch instead of the ~ESS·B a weighted batch gives."""
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import ValuePriority

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    lc = LearnerConfig(amp="none", eta=0.1, actor_batch="value", improvement_actions="data",
                       data_weighting="value", priority_every=10)
    learner = Learner(PACModel(cfg, store.spec), lc)
    good = np.zeros(len(store), np.float32)
    good[[2, 7]] = 1.0
    calls = []
    learner.data_values = lambda s: calls.append(1) or (good, None)
    priority = ValuePriority(learner, store, lc)
    b = priority.sample(64, step=0, seed=0, rank=0)
    wanted = store.batch(np.array([2, 7]))["action"]
    hits = sum(any(torch.equal(a, w) for w in wanted) for a in b["action"])
    assert hits >= 62 and priority.ess == pytest.approx(2 / len(store), rel=1e-3)
    assert torch.equal(priority.sample(64, 0, 0, 0)["action"], b["action"])  # seeded by step
    priority.sample(64, step=9, seed=0, rank=0)
    priority.sample(64, step=10, seed=0, rank=0)
    assert len(calls) == 2  # refreshed at step 0 and after priority_every steps


def test_path_weights_sum_each_episodes_steps_up_to_the_transition(dataset, tmp_path):
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import path_log_weights

    store = TransitionStore(dataset, micro_config(obs_mode="pixels+features", image_size=8), gamma=0.9,
                            cache_dir=tmp_path / "cache", log=lambda *a: None)
    step = np.arange(1.0, len(store) + 1)
    got = path_log_weights(store, step)
    episode = np.searchsorted(store.episode_starts, store.index, side="right") - 1
    for i in range(len(store)):
        same = (episode == episode[i]) & (np.arange(len(store)) <= i)
        assert got[i] == pytest.approx(step[same].sum())
    assert len(np.unique(episode)) > 1  # more than one episode, so the restarts were tested


def test_path_priority_follows_the_improved_policy_along_each_episode(dataset, tmp_path):
    """A step π_imp would not take (Q < V) down-weights its transition and every later one of its
    episode; the steps before it, and a path that keeps Q = V, keep their weight; an advantage
    early on lifts the whole rest of its path, capped at max_weight."""
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import ValuePriority

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    lc = LearnerConfig(amp="none", eta=0.1, actor_batch="path", improvement_actions="data",
                       data_weighting="advantage", priority_every=10, n_action_samples=3)
    learner = Learner(PACModel(cfg, store.spec), lc)
    episode = np.searchsorted(store.episode_starts, store.index, side="right") - 1
    first, second = (np.flatnonzero(episode == e) for e in np.unique(episode)[:2])
    q = np.full(len(store), 0.5, np.float32)
    v = q.copy()
    q[first[1]] = 0.0  # a bad step in the first episode
    q[second[0]] = 0.9  # a good first step in the second: e^4 > max_weight 20
    seen = []
    learner.data_values = lambda s, baseline_samples, generator: seen.append(baseline_samples) or (q, v)
    priority = ValuePriority(learner, store, lc)
    priority.sample(8, step=0, seed=0, rank=0)
    p = priority.probs / priority.probs.min()
    assert seen == [3]  # V_η from n_action_samples samples of π_θ'
    assert p[first[0]] == pytest.approx(np.exp(5.0)) and p[first[1:]] == pytest.approx(1.0)
    assert p[second] == pytest.approx(20 * np.exp(5.0))
    with pytest.raises(ValueError, match="actor_batch: path"):
        LearnerConfig(actor_batch="path", improvement_actions="data", data_weighting="value")


def test_step_priority_keeps_each_time_steps_share_and_weights_by_value_within_it(dataset, tmp_path):
    """actor_batch: step: time step t gets n_t / N of the draw whatever its Q (a success's first
    step, where Q is still low, is not drawn less than its middle ones), split ∝ exp(Q/η) in it."""
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import ValuePriority, episode_time

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    lc = LearnerConfig(amp="none", eta=0.1, actor_batch="step", improvement_actions="data",
                       data_weighting="value", priority_every=10)
    learner = Learner(PACModel(cfg, store.spec), lc)
    episode, t = episode_time(store)
    assert len(np.unique(episode)) > 1 and (t[episode == episode[0]] == np.arange((episode == episode[0]).sum())).all()
    q = np.where(episode == episode[0], 0.2, 0.0).astype(np.float32)  # the first episode is better everywhere
    q[t >= 3] += 0.7  # and every episode's later steps are worth more than the first three
    learner.data_values = lambda s: (q, None)
    priority = ValuePriority(learner, store, lc)
    priority.sample(8, step=0, seed=0, rank=0)
    for step in np.unique(t):
        at = t == step
        assert priority.probs[at].sum() == pytest.approx(at.sum() / len(store))
        if (at & (episode == episode[0])).any() and (at & (episode != episode[0])).any():
            ratio = priority.probs[at & (episode == episode[0])].max() / priority.probs[at].min()
            assert ratio == pytest.approx(np.exp(2.0), rel=1e-4)
    with pytest.raises(ValueError, match="actor_batch: step"):
        LearnerConfig(actor_batch="step", improvement_actions="data", data_weighting="advantage")


def test_value_cap_draws_every_transition_above_it_alike(dataset, tmp_path):
    """value_cap: Q above the cap counts as the cap, so a success's early steps (Q still 0.6) draw as
    often as its late ones (0.95), while a failure's (0.05) stay e^((0.5 − 0.05)/η) times rarer."""
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.losses import data_improvement_weights
    from pac_ros.learning.train import ValuePriority

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    q = np.full(len(store), 0.05, np.float32)
    q[:3], q[3:6] = 0.6, 0.95
    draws = {}
    for cap in (None, 0.5):
        lc = LearnerConfig(amp="none", eta=0.1, actor_batch="value", improvement_actions="data",
                           data_weighting="value", value_cap=cap)
        learner = Learner(PACModel(cfg, store.spec), lc)
        learner.data_values = lambda s: (q, None)
        priority = ValuePriority(learner, store, lc)
        priority.sample(8, step=0, seed=0, rank=0)
        draws[cap] = priority.probs
    assert draws[None][5] / draws[None][0] == pytest.approx(np.exp(3.5), rel=1e-4)  # uncapped: 33× rarer
    assert draws[0.5][:6] == pytest.approx(np.full(6, draws[0.5][0]))
    assert draws[0.5][0] / draws[0.5][-1] == pytest.approx(np.exp(4.5), rel=1e-4)
    # the in-batch weights cap the same way
    w = data_improvement_weights(torch.tensor([0.6, 0.95, 0.05]), torch.zeros(3, 2), 0.1, baseline="value",
                                 value_cap=0.5)
    assert w[0] == pytest.approx(float(w[1])) and float(w[0] / w[2]) == pytest.approx(np.exp(4.5), rel=1e-4)
    with pytest.raises(ValueError, match="value_cap"):
        LearnerConfig(value_cap=0.5, improvement_actions="data", data_weighting="advantage")
    with pytest.raises(ValueError, match="value_cap must be a finite number"):
        LearnerConfig(value_cap=float("nan"), improvement_actions="data", data_weighting="value")


def test_success_conditioned_bc_gives_each_step_its_episodes_outcome(dataset, tmp_path):
    """model.outcome_token: every row's "outcome" is its episode's success (episodes 0 and 2 of the
    fixture succeed), batches carry it, and only BC may train on it."""
    from pac_ros.learning.config import ConfigError, TrainConfig
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import episode_time

    cfg = micro_config(obs_mode="pixels+features", image_size=8, outcome_token=True)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    assert store.outcomes.tolist() == [1] * 5 + [0] * 4 + [1] * 6
    episode, _ = episode_time(store)
    b = store.batch(np.arange(len(store)))
    assert b["obs"]["outcome"].tolist() == b["next_obs"]["outcome"].tolist() == [1 - e % 2 for e in episode]
    learner = Learner(PACModel(cfg, store.spec), LearnerConfig(amp="none", alpha_final=1.0))
    assert np.isfinite(learner.step(store.sample(8, 0))["bc_nll"])
    TrainConfig.from_dict({"model": {"outcome_token": True}, "learner": {"alpha_final": 1.0}})
    with pytest.raises(ConfigError, match="outcome_token"):
        TrainConfig.from_dict({"model": {"outcome_token": True}, "learner": {"alpha_final": 0.5}})


@pytest.mark.parametrize("actor_batch,weighting,critic", [("value", "value", "shared"), ("step", "value", "shared"),
                                                            ("path", "advantage", "shared"), ("value", "value", "own")])
def test_training_with_value_resampled_actor_batches(dataset, tmp_path, actor_batch, weighting, critic):
    from pac_ros.cli import main
    from pac_ros.policy import Policy

    cfg = tmp_path / "value.yaml"
    cfg.write_text(open(_train_yaml(tmp_path, dataset.root, "value", 4)).read().replace(
        "amp: none}", f"amp: none, actor_batch: {actor_batch}, improvement_actions: data, "
                      f"data_weighting: {weighting}, critic_target: data, priority_every: 2}}").replace(
        "n_value_bins: 21}", f"n_value_bins: 21, critic_encoder: {critic}}}"))
    assert main(["train", "--config", str(cfg)]) == 0
    policy = Policy.load(tmp_path / "value")
    assert policy.model.config.critic_encoder == critic
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "value" / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    ess = [s.value for s in ea.Scalars("train/priority_ess")]
    assert ess and all(0 < e <= 1 for e in ess[1:])  # nan until α first drops below 1


def test_truncation_terminal_ends_every_episode_without_bootstrapping(dataset, tmp_path):
    """Episode 1 (4 rows) ends truncated: by default its last transition bootstraps (γ); with
    truncation: terminal its outcome is final (discount 0), as after a judged attempt."""
    from pac_ros.learning.data import TransitionStore

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    kw = dict(gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None, n_step=2)
    boot = TransitionStore(dataset, cfg, **kw).batch(np.arange(12))["discount"].numpy()
    final = TransitionStore(dataset, cfg, truncation="terminal", **kw).batch(np.arange(12))["discount"].numpy()
    assert boot[6] == pytest.approx(0.9) and final[6] == 0.0  # one row left: k = 1
    assert boot[5] == pytest.approx(0.81) and final[5] == 0.0  # its 2-step window reaches the end
    assert np.array_equal(boot[[0, 1, 7, 8, 9]], final[[0, 1, 7, 8, 9]])  # away from the ends: unchanged
    with pytest.raises(ValueError, match="truncation"):
        TransitionStore(dataset, cfg, truncation="never", **kw)


def test_critic_warmup_trains_the_critic_alone_then_the_policy():
    """critic_warmup_steps: the policy head stays exactly at its initial weights (no gradient, so no
    weight decay either) while the critic learns; from that step on the policy trains."""
    learner, spec = make_learner(critic_warmup_steps=2, alpha_start=0.5, alpha_final=0.5)
    m = learner.model
    policy0 = [p.detach().clone() for p in m.policy_head.parameters()]
    q0 = m.q_head[-1].weight.detach().clone()
    for seed in range(2):
        metrics = learner.step(make_batch(spec, seed=seed))
        assert metrics["policy_learns"] == 0.0 and math.isfinite(metrics["policy_loss"])
    assert all(torch.equal(p, p0) for p, p0 in zip(m.policy_head.parameters(), policy0))
    assert not torch.equal(m.q_head[-1].weight, q0)
    assert learner.step(make_batch(spec, seed=3))["policy_learns"] == 1.0
    assert not torch.equal(m.policy_head[-1].weight, policy0[-1])
    with pytest.raises(ValueError, match="critic_warmup_steps"):
        LearnerConfig(critic_warmup_steps=-1)


def test_lr_warmup_restarts_when_the_policy_starts_learning():
    """lr_warmup_from: policy: the warm-up runs from step 0 for the critic, and again for every parameter
    from the step the policy starts learning; start (the default) warms up once."""
    rewarm = LearnerConfig(lr=1e-3, lr_warmup_steps=4, critic_warmup_steps=10, lr_warmup_from="policy")
    assert [rewarm.lr_scale(s) for s in (0, 3, 9, 10, 11, 13, 20)] == [0.25, 1.0, 1.0, 0.25, 0.5, 1.0, 1.0]
    once = LearnerConfig(lr=1e-3, lr_warmup_steps=4, critic_warmup_steps=10)
    assert [once.lr_scale(s) for s in (0, 3, 10)] == [0.25, 1.0, 1.0]
    learner, spec = make_learner(lr_warmup_steps=4, critic_warmup_steps=2, lr_warmup_from="policy")
    lrs = [learner.step(make_batch(spec, seed=s))["lr"] for s in range(4)]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 2.5e-4, 5e-4])
    assert [g["lr"] for g in learner.optimizer.param_groups[:2]] == pytest.approx([5e-4, 5e-4])
    with pytest.raises(ValueError, match="lr_warmup_from"):
        LearnerConfig(lr_warmup_from="never")


def test_lr_decays_on_a_cosine_after_the_warm_up_and_holds_its_final_fraction():
    """lr_decay_steps: after the warm-up the rate falls on a half cosine to lr * lr_final_fraction, then
    stays there; 0 (the default) keeps the full rate to the end."""
    cfg = LearnerConfig(lr=1e-3, lr_warmup_steps=2, lr_decay_steps=4, lr_final_fraction=0.1)
    scales = [cfg.lr_scale(s) for s in range(8)]
    half = 0.1 + 0.9 * 0.5  # the cosine's midpoint, two of its four steps in
    assert scales[:2] == pytest.approx([0.5, 1.0])
    assert scales[3] == pytest.approx(half) and scales[5:] == pytest.approx([0.1, 0.1, 0.1])
    assert all(a > b for a, b in zip(scales[1:6], scales[2:6]))
    assert [LearnerConfig(lr_warmup_steps=2).lr_scale(s) for s in (1, 100)] == [1.0, 1.0]
    learner, spec = make_learner(lr_warmup_steps=1, lr_decay_steps=2, lr_final_fraction=0.0)
    lrs = [learner.step(make_batch(spec, seed=s))["lr"] for s in range(4)]
    assert lrs == pytest.approx([1e-3, 5e-4, 0.0, 0.0], abs=1e-12)
    for bad in ({"lr_decay_steps": -1}, {"lr_final_fraction": 1.5}):
        with pytest.raises(ValueError, match="lr_decay_steps"):
            LearnerConfig(**bad)


def test_value_draw_reports_its_share_on_successful_episodes(dataset, tmp_path):
    """The value draw's mass on the episodes that recorded success (episodes 0 and 2 of the fixture)."""
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import ValuePriority, episode_time

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    assert store.episode_success.tolist() == [True, False, True]
    lc = LearnerConfig(amp="none", eta=0.1, actor_batch="value", improvement_actions="data", data_weighting="value")
    learner = Learner(PACModel(cfg, store.spec), lc)
    episode, _ = episode_time(store)
    q = np.where(episode == 1, 0.0, 0.3).astype(np.float32)
    learner.data_values = lambda s: (q, None)
    priority = ValuePriority(learner, store, lc)
    priority.sample(8, step=0, seed=0, rank=0)
    n_fail, n_ok = (episode == 1).sum(), (episode != 1).sum()
    assert priority.success_mass == pytest.approx(n_ok * np.exp(3.0) / (n_ok * np.exp(3.0) + n_fail), rel=1e-5)


def test_grad_clip_by_loss_clips_each_terms_gradient_on_its_own():
    """grad_clip_by: loss: the step's gradient is clip(∇ policy) + clip(∇ critic with its gap term), each
    clipped over all parameters; the policy head's gradient then does not depend on how large the critic's is."""
    learner, spec = make_learner(grad_clip_by="loss", grad_clip=0.05, conservative=1.0, alpha_final=0.5)
    batch = make_batch(spec, seed=4)
    params = list(learner.model.parameters())
    torch.manual_seed(7)
    sides = learner.compute_losses(learner.to_device(batch), learner.config.alpha(0))[0]["sides"]
    assert set(sides) == {"policy", "critic"}
    expected = [torch.zeros_like(p) for p in params]
    for loss in sides.values():
        grads = [torch.zeros_like(p) if g is None else g
                 for p, g in zip(params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))]
        norm = torch.stack([g.norm() for g in grads]).norm()
        assert norm > 0.05  # the clip acts on both terms
        expected = [e + g * (0.05 / (norm + 1e-6)) for e, g in zip(expected, grads)]
    torch.manual_seed(7)
    metrics = learner.step(batch)
    assert metrics["grad_norm_policy"] > 0.05 and metrics["grad_norm_critic"] > 0.05
    for p, e in zip(params, expected):
        assert torch.allclose(p.grad if p.grad is not None else torch.zeros_like(p), e, atol=1e-7)

    def policy_head_grad(beta, by):
        learner, spec = make_learner(grad_clip_by=by, grad_clip=0.05, beta=beta, alpha_final=0.5)
        torch.manual_seed(7)
        learner.step(make_batch(spec, seed=4))
        return learner.model.policy_head[-1].weight.grad.clone()

    assert torch.allclose(policy_head_grad(1.0, "loss"), policy_head_grad(100.0, "loss"))
    assert not torch.allclose(policy_head_grad(1.0, "parameters"), policy_head_grad(100.0, "parameters"))
    learner, spec = make_learner(grad_clip_by="loss", eta_kl=0.1)  # the dual's gradient reaches log η unclipped
    metrics = learner.step(make_batch(spec, seed=4))
    assert learner.log_eta.grad is not None and learner.log_eta.grad != 0 and "grad_norm_temperature" not in metrics
    with pytest.raises(ValueError, match="grad_clip_by"):
        LearnerConfig(grad_clip_by="term")


def test_success_behaviour_prior_draws_only_successful_episodes(dataset, tmp_path, monkeypatch):
    """bc_data: success: the BC term's batches come from the episodes that recorded success (0 and 2
    of the fixture), drawn statelessly, and training runs with them."""
    from pac_ros.cli import main
    from pac_ros.learning.data import TransitionStore
    from pac_ros.learning.train import episode_time

    cfg = micro_config(obs_mode="pixels+features", image_size=8)
    store = TransitionStore(dataset, cfg, gamma=0.9, cache_dir=tmp_path / "cache", log=lambda *a: None)
    episode, _ = episode_time(store)
    rows = store.successful_transitions()
    assert rows.tolist() == np.flatnonzero(episode != 1).tolist()
    a = store.sample_from(rows, 32, step=5, seed=1)
    assert torch.equal(a["action"], store.sample_from(rows, 32, step=5, seed=1)["action"])
    ok = {tuple(x) for x in store.actions[store.index[rows]].tolist()}
    assert {tuple(x) for x in a["action"].tolist()} <= ok

    seen = []
    step = Learner.step
    monkeypatch.setattr(Learner, "step", lambda self, batch, actor=None, bc=None: (
        seen.append(bc), step(self, batch, actor, bc))[1])
    yaml = tmp_path / "prior.yaml"
    yaml.write_text(open(_train_yaml(tmp_path, dataset.root, "prior", 5)).read().replace(
        "amp: none}", "amp: none, bc_data: success, alpha_final: 0.5}"))
    assert main(["train", "--config", str(yaml)]) == 0
    assert len(seen) == 5 and all(b is not None for b in seen)
    assert all({tuple(x) for x in b["action"].tolist()} <= ok for b in seen)


def test_success_behaviour_prior_replaces_the_bc_terms_data():
    learner, spec = make_learner(bc_data="success")
    learner.step(make_batch(spec, seed=5))  # move the heads off zero
    batch, prior = (learner.to_device(make_batch(spec, seed=s)) for s in (1, 2))
    losses, metrics = learner.compute_losses(batch, alpha=1.0, bc=prior)
    m = learner.model
    with torch.no_grad():
        nll = -m.log_prob(m.policy_logits(m.encode(prior["obs"])), prior["action"][:, None]).mean()
    assert torch.allclose(losses["policy"].detach(), nll) and metrics["bc_nll"] == pytest.approx(float(nll))
    assert not torch.allclose(learner.compute_losses(batch, alpha=1.0)[0]["policy"].detach(), nll)


def test_success_behaviour_prior_needs_a_bc_term_and_recorded_outcomes(dataset, tmp_path):
    from pac_ros.learning.data import TransitionStore

    with pytest.raises(ValueError, match="bc_data: success"):
        LearnerConfig(bc_data="success", alpha_start=0.0, alpha_final=0.0)
    LearnerConfig(bc_data="success", alpha_start=1.0, alpha_final=0.0)
    store = TransitionStore(dataset, micro_config(obs_mode="pixels+features", image_size=8), gamma=0.9,
                            cache_dir=tmp_path / "cache", log=lambda *a: None)
    store.episode_success = None
    with pytest.raises(ValueError, match="recorded outcome"):
        store.successful_transitions()
    store.episode_success = np.zeros(3, bool)
    with pytest.raises(ValueError, match="records a success"):
        store.successful_transitions()
