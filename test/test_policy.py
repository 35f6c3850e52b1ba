"""Checkpoints (safetensors + JSON, exact resume) and the deployable Policy."""
import json

import numpy as np
import pytest
import torch

from pac_ros.checkpoint import CheckpointError, checkpoint_meta, load_model_state, save_deployable
from pac_ros.learning import Learner, LearnerConfig, load_into_learner, save_checkpoint
from pac_ros.model import PACModel
from pac_ros.model.testing import micro_config, random_obs, small_spec
from pac_ros.policy import Policy
from pac_ros.spec import SpecError, default_spec

torch.set_num_threads(1)


def make_learner(spec=None, obs_mode="pixels+features", seed=0):
    torch.manual_seed(seed)
    spec = spec or small_spec(n_arm=2, cameras=1)
    model = PACModel(micro_config(obs_mode=obs_mode), spec)
    return Learner(model, LearnerConfig(lr=1e-3, lr_warmup_steps=2, amp="none", n_action_samples=4, tau=0.1))


def batch(spec, seed, B=4):
    g = torch.Generator().manual_seed(seed)
    return {"obs": random_obs(spec, B, seed), "next_obs": random_obs(spec, B, seed + 100),
            "action": torch.rand(B, spec.action_dim, generator=g) * 2 - 1,
            "reward": torch.rand(B, generator=g), "discount": torch.full((B,), 0.99)}


def robot_obs(spec, seed=0):
    o = random_obs(spec, 1, seed)
    return {"images": {k: v[0].numpy() for k, v in o["images"].items()},
            "joint_positions": o["joint_positions"][0].double().numpy(),
            "instruction": spec.instructions()[seed % len(spec.instructions())],
            "features": o["features"][0].numpy()}


def saved(tmp_path, learner, name="ckpt"):
    return save_checkpoint(tmp_path / name, learner,
                           meta=checkpoint_meta(learner.model, "micro", {"x": 1}, "fp123"))


def test_roundtrip_identical_outputs(tmp_path):
    learner = make_learner()
    spec = learner.model.spec
    learner.step(batch(spec, 0))
    path = saved(tmp_path, learner)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["dataset_fingerprint"] == "fp123" and meta["step"] == 1 and meta["preset"] == "micro"
    direct = Policy(learner.model, spec, device="cpu")
    loaded = Policy.load(path, spec=spec, device="cpu")
    for s in range(3):
        c1, i1 = direct.act(robot_obs(spec, s))
        c2, i2 = loaded.act(robot_obs(spec, s))
        assert np.array_equal(c1, c2) and i1["value"] == i2["value"]
    assert Policy.load(path / "model.safetensors", device="cpu").spec == spec


def test_deployable_checkpoint_holds_only_what_a_policy_loads(tmp_path):
    learner = make_learner()
    spec = learner.model.spec
    learner.step(batch(spec, 0))
    path = save_deployable(tmp_path / "deploy", learner.model, meta=checkpoint_meta(learner.model, "micro"), step=7)
    assert sorted(f.name for f in path.iterdir()) == ["meta.json", "model.safetensors"]
    meta, _ = load_model_state(path)
    assert meta["step"] == 7 and list(meta["files"]) == ["model.safetensors"]
    command, _ = Policy.load(path, spec=spec, device="cpu").act(robot_obs(spec, 1))
    assert np.array_equal(command, Policy(learner.model, spec, device="cpu").act(robot_obs(spec, 1))[0])
    (path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="sha256"):
        load_model_state(path)


def test_auto_decoding_is_the_checkpoints_own(tmp_path):
    learner = make_learner()
    model, spec = learner.model, learner.model.spec
    plain = save_deployable(tmp_path / "plain", model, meta=checkpoint_meta(model, "micro"))
    assert Policy.load(plain, device="cpu", decoding="auto").decoding == "greedy"
    assert Policy.load(plain, device="cpu", decoding="sample").decoding == "sample"
    carded = save_deployable(tmp_path / "carded", model, meta=checkpoint_meta(model, "micro", decoding="mean"))
    assert Policy.load(carded, device="cpu", decoding="auto").decoding == "mean"
    assert Policy.load(carded, device="cpu", decoding="greedy").decoding == "greedy"  # an explicit choice wins
    odd = save_deployable(tmp_path / "odd", model, meta=checkpoint_meta(model, "micro", decoding="beam"))
    with pytest.raises(CheckpointError, match="decoding 'beam'"):
        Policy.load(odd, device="cpu", decoding="auto")
    with pytest.raises(ValueError, match="decoding must be one of"):
        Policy(model, spec, device="cpu", decoding="auto")  # only a checkpoint knows what auto means


def test_wrong_spec_is_a_clear_error(tmp_path):
    path = saved(tmp_path, make_learner())
    with pytest.raises(SpecError, match="checkpoint .*different spec"):
        Policy.load(path, spec=default_spec(), device="cpu")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage_meta", "missing"])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, damage):
    path = saved(tmp_path, make_learner())
    f = path / "model.safetensors"
    data = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        f.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    elif damage == "garbage_meta":
        f = path / "meta.json"
        f.write_text("{not json")
    else:
        f.unlink()
    with pytest.raises(CheckpointError, match=str(f)):
        Policy.load(path, device="cpu")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Policy.load(tmp_path / "nope", device="cpu")


@pytest.mark.parametrize("decoding", ["greedy", "sample", "q_filter"])
def test_act_finite_within_limits_even_with_nan_weights(decoding):
    learner = make_learner()
    spec = learner.model.spec
    policy = Policy(learner.model, spec, device="cpu", decoding=decoding, n_candidates=4, seed=0)
    for s in range(3):
        obs = robot_obs(spec, s)
        cmd, info = policy.act(obs)
        assert cmd.dtype == np.float64 and cmd.shape == (spec.action_dim,)
        assert np.isfinite(cmd).all() and (cmd >= spec.lower).all() and (cmd <= spec.upper).all()
        assert np.all(np.abs(cmd - obs["joint_positions"]) <= spec.max_step + 1e-9)
        assert np.isfinite(info["value"]) and info["latency_ms"] >= 0 and not info["fallback"]
    with torch.no_grad():
        for p in learner.model.parameters():
            p.fill_(float("nan"))
    obs = robot_obs(spec, 0)
    cmd, info = policy.act(obs)
    assert info["fallback"] and np.isfinite(cmd).all()
    assert np.allclose(cmd, obs["joint_positions"])  # holds position
    obs["joint_positions"][0] = np.nan  # adversarial input too
    cmd, _ = policy.act(obs)
    assert np.isfinite(cmd).all() and (cmd >= spec.lower).all() and (cmd <= spec.upper).all()


def test_policy_input_errors():
    learner = make_learner()
    spec = learner.model.spec
    policy = Policy(learner.model, spec, device="cpu")
    obs = robot_obs(spec)
    with pytest.raises(ValueError, match="joint_positions"):
        policy.act(dict(obs, joint_positions=np.zeros(2)))
    with pytest.raises(ValueError, match="cam0"):
        policy.act(dict(obs, images={"cam0": np.zeros((8, 8, 3), np.uint8)}))
    with pytest.raises(ValueError, match="features"):
        policy.act({k: v for k, v in obs.items() if k != "features"})


def test_acceleration_options_are_checked():
    learner = make_learner()
    spec = learner.model.spec
    with pytest.raises(ValueError, match="precision"):
        Policy(learner.model, spec, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="CUDA device"):
        Policy(learner.model, spec, device="cpu", cuda_graph=True)


def trained_learner(steps=5):
    """Fresh heads start at zero (uniform outputs whatever the input): a few steps make them depend on it."""
    learner = make_learner()
    for s in range(steps):
        learner.step(batch(learner.model.spec, s))
    return learner


def test_bf16_policy_acts_like_fp32():
    learner = trained_learner()
    spec = learner.model.spec
    fp32 = Policy(learner.model, spec, device="cpu", decoding="mean")
    bf16 = Policy(learner.model, spec, device="cpu", decoding="mean", precision="bf16")
    rounded = []
    for s in range(3):
        (c32, i32), (c16, i16) = fp32.act(robot_obs(spec, s)), bf16.act(robot_obs(spec, s))
        assert np.isfinite(c16).all() and np.abs(c16 - c32).max() < 0.05 * spec.max_step.max()
        assert abs(i16["value"] - i32["value"]) < 0.05
        rounded.append(i16["value"] != i32["value"] or not np.array_equal(c16, c32))
    assert any(rounded)  # bf16 really ran: its rounding shows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_replays_the_eager_step(precision):
    learner = trained_learner()
    spec = learner.model.spec
    eager = Policy(learner.model, spec, device="cuda", decoding="mean", precision=precision)
    graphed = Policy(learner.model, spec, device="cuda", decoding="mean", precision=precision, cuda_graph=True)
    with pytest.raises(ValueError, match="greedy or mean"):
        Policy(learner.model, spec, device="cuda", decoding="sample", cuda_graph=True)
    values = set()
    for s in range(4):  # new inputs each tick: the captured graph reads them, not the first ones
        (c1, i1), (c2, i2) = eager.act(robot_obs(spec, s)), graphed.act(robot_obs(spec, s))
        assert np.allclose(c1, c2, atol=1e-5) and abs(i1["value"] - i2["value"]) < 1e-4
        values.add(round(i2["value"], 6))
    assert len(values) > 1  # the outputs depend on the input, so a stale graph input would show


def test_default_robot_policy_act(tmp_path):
    spec = default_spec()
    learner = make_learner(spec=spec, obs_mode="pixels")
    path = saved(tmp_path, learner)
    policy = Policy.load(path, spec=spec, device="auto")
    cmd, info = policy.act({k: v for k, v in robot_obs(spec).items() if k != "features"})
    assert cmd.shape == (7,) and np.isfinite(cmd).all()


def test_exact_resume(tmp_path):
    learner = make_learner()
    spec = learner.model.spec
    for s in range(3):
        learner.step(batch(spec, s))
    path = saved(tmp_path, learner)
    ref = [learner.step(batch(spec, s)) for s in (10, 11)]
    fresh = make_learner(seed=123)
    state = load_into_learner(path, fresh)
    assert state.step_count == 3
    got = [fresh.step(batch(spec, s)) for s in (10, 11)]
    for a, b in zip(ref, got):
        assert a == b
    for p, q in zip(learner.model.parameters(), fresh.model.parameters()):
        assert torch.equal(p, q)
