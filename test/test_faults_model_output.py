"""Whatever the model outputs (random, NaN, inf or huge weights, logits or actions), every decoding and
control: the command is finite, within the joint limits and a max step of the position."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fault_helpers import FUZZ, SPEC, values
from hypothesis import given, settings
from hypothesis import strategies as st

from pac_ros.policy import DECODING


@pytest.fixture(scope="module")
def tiny_policies():
    """A tiny features-mode PAC model per control, with random, NaN, inf and huge weights."""
    from pac_ros.control import Control
    from pac_ros.model import PACModel
    from pac_ros.model.config import preset
    from pac_ros.policy import Policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait for each other
    out = {}
    for control in ("joint", "task"):
        shared = None
        for weights in ("random", "nan", "inf", "huge"):
            torch.manual_seed(0)
            model = PACModel(preset("tiny", obs_mode="features", control=control, width=32, heads=2, n_latents=4,
                                    n_self_blocks=1), SPEC)
            if weights != "random":
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_({"nan": float("nan"), "inf": float("inf"), "huge": 1e30}[weights])
            policy = Policy(model, SPEC, device="cpu", n_candidates=4, seed=0)
            shared = shared or policy.control
            policy.control = shared  # one arm model (MuJoCo) for the task-control IK
            assert isinstance(shared, Control)
            out[control, weights] = policy
    yield out
    torch.set_num_threads(threads)


adversarial = st.one_of(values, st.sampled_from([1e30, -1e30, 1e6, -1e6, 2.0, -2.0]))


@settings(FUZZ, max_examples=300)
@given(control=st.sampled_from(["joint", "task"]), weights=st.sampled_from(["random", "nan", "inf", "huge"]),
       decoding=st.sampled_from(DECODING), seed=st.integers(0, 2**16),
       override=st.sampled_from([None, "logits", "action"]), fill=st.lists(adversarial, min_size=1, max_size=8))
def test_command_is_safe_whatever_the_model_outputs(tiny_policies, control, weights, decoding, seed, override, fill):
    """For any weights, logits or actions (NaN, inf, huge), joint or task control and every decoding
    (pac_ros.policy.DECODING), the command is finite, within the joint limits and within max step
    of the current position."""
    policy = tiny_policies[control, weights]
    policy.decoding = decoding
    rng = np.random.default_rng(seed)
    q = rng.uniform(SPEC.lower, SPEC.upper)
    obs = {"joint_positions": q, "instruction": SPEC.instructions()[seed % 6],
           "features": rng.normal(size=SPEC.feature_dim) * 0.2}
    a_dim, bins = policy.control.action_dim, policy.model.config.n_action_bins
    pattern = np.resize(np.array(fill, dtype=np.float64), a_dim * bins)
    try:
        with np.errstate(all="ignore"):
            if override == "logits":
                logits = torch.as_tensor(pattern.reshape(1, a_dim, bins), dtype=torch.float32)
                policy.model.policy_logits = lambda latents: logits
            elif override == "action":
                policy.act_normalized = lambda o: (pattern[:a_dim].copy(), {"value": 0.0, "fallback": False})
            command, _ = policy.act(obs)
    finally:
        policy.model.__dict__.pop("policy_logits", None)
        policy.__dict__.pop("act_normalized", None)
    assert command.shape == (SPEC.action_dim,) and np.all(np.isfinite(command)), command
    assert np.all(command >= SPEC.lower) and np.all(command <= SPEC.upper), command
    assert np.all(np.abs(command - q) <= SPEC.max_step + 1e-9), (command, q)
