"""PAC network: shapes, encoders, shared encoding for K actions, presets' sizes."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pac_ros.model import PRESETS, PACConfig, PACModel, count_parameters, detokenize, preset, tokenize
from pac_ros.model.testing import micro_config, random_obs, small_spec
from pac_ros.spec import default_spec

torch.set_num_threads(1)
DOC = Path(__file__).resolve().parent.parent / "docs" / "model.md"


def make(obs_mode="pixels+features", **kw):
    torch.manual_seed(0)
    spec = small_spec()
    return PACModel(micro_config(obs_mode=obs_mode, **kw), spec).eval(), spec


def test_tokenizer_roundtrip_and_padding():
    t = tokenize("  Put the RED block on the blue block ", 48)
    assert t.dtype == np.int64 and t.shape == (48,)
    assert detokenize(t) == "put the red block on the blue block"
    assert (t[len("put the red block on the blue block"):] == 0).all()
    assert tokenize("x" * 100, 10).shape == (10,)


@pytest.mark.parametrize("mode", ["pixels", "features", "pixels+features"])
def test_shapes_all_modes(mode):
    model, spec = make(mode)
    obs = random_obs(spec, 3)
    with torch.no_grad():
        z = model.encode(obs)
        assert z.shape == (3, 4, 32)
        pl = model.policy_logits(z)
        assert pl.shape == (3, spec.action_dim, 11)
        acts = torch.rand(3, 5, spec.action_dim) * 2 - 1
        ql = model.q_logits(z, acts)
        assert ql.shape == (3, 5, 21)
        q = model.q_value(z, acts)
        assert q.shape == (3, 5) and torch.isfinite(q).all()


def test_default_robot_tiny_forward():
    torch.manual_seed(0)
    spec = default_spec()
    model = PACModel(preset("tiny", n_self_blocks=1), spec).eval()
    obs = random_obs(spec, 2)
    with torch.no_grad():
        z = model.encode(obs)
        assert model.policy_logits(z).shape == (2, 7, 101)
        assert model.q_logits(z, torch.zeros(2, 3, 7)).shape == (2, 3, 101)


def test_heads_start_uniform():
    model, spec = make()
    with torch.no_grad():
        z = model.encode(random_obs(spec, 2))
        ent = PACModel.entropy(model.policy_logits(z))
        assert torch.allclose(ent, torch.full_like(ent, np.log(11)), atol=1e-5)
        q = model.q_value(z, torch.zeros(2, 1, spec.action_dim))
        assert torch.allclose(q, torch.full_like(q, 0.5), atol=1e-5)  # mean of [0, 1]


def test_uint8_normalised_inside_and_image_matters():
    model, spec = make("pixels")
    obs = random_obs(spec, 2)
    with torch.no_grad():
        a = model.encode(obs)
        obs2 = dict(obs, images={k: 255 - v for k, v in obs["images"].items()})
        b = model.encode(obs2)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)


def test_image_resized_to_model_resolution():
    torch.manual_seed(0)
    spec = small_spec(size=32)
    model = PACModel(micro_config(obs_mode="pixels", image_size=16), spec).eval()
    with torch.no_grad():
        z32 = model.encode(random_obs(spec, 2))
    assert z32.shape == (2, 4, 32)


def test_padding_is_masked():
    model, spec = make()
    obs = random_obs(spec, 2)
    short = dict(obs, instruction_tokens=obs["instruction_tokens"][:, :40])  # only padding removed
    with torch.no_grad():
        a, b = model.encode(obs), model.encode(short)
    assert torch.allclose(a, b, atol=1e-5)


def test_instruction_changes_latents():
    model, spec = make("features")
    obs = random_obs(spec, 1)
    other = dict(obs, instruction_tokens=torch.from_numpy(tokenize(spec.instruction("green", "red"), 48))[None])
    with torch.no_grad():
        assert not torch.allclose(model.encode(obs), model.encode(other))


def test_q_candidates_share_encoding():
    model, spec = make()
    obs = random_obs(spec, 2)
    acts = torch.rand(2, 6, spec.action_dim) * 2 - 1
    with torch.no_grad():
        z = model.encode(obs)
        together = model.q_logits(z, acts)
        apart = torch.cat([model.q_logits(z, acts[:, k:k + 1]) for k in range(6)], 1)
    assert torch.allclose(together, apart, atol=1e-5)


def test_action_bins_and_sampling():
    model, spec = make()
    a = torch.tensor([[-1.0, 1.0], [0.0, 0.09], [0.11, -2.0]])
    idx = model.action_to_bins(a)
    assert idx.tolist() == [[0, 10], [5, 5], [6, 0]]
    assert torch.allclose(model.bins_to_action(torch.tensor([0, 5, 10])), torch.tensor([-1.0, 0.0, 1.0]))
    logits = torch.full((1, 2, 11), -1e9)
    logits[0, 0, 3] = 0.0
    logits[0, 1, 8] = 0.0
    torch.manual_seed(0)
    s = model.sample_actions(logits, 4)
    assert s.shape == (1, 4, 2)
    assert torch.allclose(s, model.action_bins[torch.tensor([3, 8])].expand(1, 4, 2))
    assert torch.allclose(model.greedy_action(logits)[0], model.action_bins[torch.tensor([3, 8])])
    # sampled frequencies follow the probabilities
    logits = torch.log(torch.tensor([0.7, 0.3] + [1e-9] * 9)).expand(1, 2, 11)
    s = model.sample_actions(logits, 4000)
    frac = (s[..., 0] == -1.0).float().mean().item()
    assert abs(frac - 0.7) < 0.04
    lp = model.log_prob(logits, torch.tensor([[[-1.0, -0.8]]]))
    assert torch.allclose(lp, torch.log(torch.tensor([[0.7 * 0.3]])), atol=1e-5)


def test_gradients_reach_every_parameter():
    model, spec = make()
    model.train()
    z = model.encode(random_obs(spec, 2))
    q = model.q_logits(z, torch.rand(2, 3, spec.action_dim))
    loss = model.policy_logits(z).logsumexp(-1).sum() + q.pow(2).sum()
    # heads start at zero, so push them off zero first
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_critic_own_encoder_separates_what_each_loss_reaches():
    shared, spec = make()
    model, _ = make(critic_encoder="own")
    own = {k for k in model.state_dict() if k.startswith("critic_backbone.")}
    assert own and all(torch.equal(v, model.state_dict()[k]) for k, v in shared.state_dict().items())
    model.train()
    obs, acts = random_obs(spec, 2), torch.rand(2, 3, spec.action_dim)
    z = model.encode(obs)
    assert z.shape == (2, 8, 32)  # the policy's 4 latents, then the critic's 4
    with torch.no_grad():  # the policy reads its own latents: the shared model's
        assert torch.allclose(model.policy_logits(z), shared.policy_logits(shared.encode(obs)), atol=1e-6)
    with torch.no_grad():  # the Q head starts at zero, which would stop every gradient below it
        model.q_head[-1].weight.normal_()
    model.q_logits(z, acts).pow(2).sum().backward()
    critic = {id(p) for p in model.critic_parameters()}
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert {n for n, p in model.named_parameters() if id(p) in critic and n.startswith("critic_backbone")} <= reached
    assert not reached & {n for n, _ in model.named_parameters()
                          if n.startswith(("latents", "cross.", "self_blocks.", "ln_latents", "policy_"))}
    with pytest.raises(ValueError, match="critic_encoder"):
        micro_config(critic_encoder="separate")


def test_outcome_token_conditions_on_the_episode_outcome_and_acts_for_success():
    shared, spec = make()
    model, _ = make(outcome_token=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in shared.state_dict().items())  # init unchanged
    with torch.no_grad():
        model.outcome_embed.weight.normal_()
    obs = random_obs(spec, 2)
    z = {o: model.encode({**obs, "outcome": torch.full((2,), o)}) for o in (0, 1)}
    assert not torch.allclose(z[0], z[1])
    assert torch.equal(model.encode(obs), z[1])  # no outcome given: success, as the policy asks when acting
    assert model.tokens(obs)[0].shape[1] == shared.tokens(obs)[0].shape[1] + 1


def test_config_roundtrip_and_errors():
    c = preset("tiny", obs_mode="features")
    assert PACConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="model config: unknown key"):
        PACConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="obs_mode"):
        PACConfig(obs_mode="rgb")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def _doc_table():
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in PRESETS:
            rows[cells[0]] = (float(cells[-2]), float(cells[-1]))
    return rows


def test_preset_param_counts_match_docs():
    rows = _doc_table()
    assert set(rows) == set(PRESETS)
    spec = default_spec()
    for name in PRESETS:
        for mode, documented in zip(("pixels", "features"), rows[name]):
            n = count_parameters(preset(name, obs_mode=mode), spec)  # meta device: no memory
            assert round(n / 1e6, 2) == pytest.approx(documented, abs=0.011), (name, mode, n)
    assert 1.0e6 <= count_parameters(preset("tiny"), spec) <= 3.0e6
    assert 0.9e9 <= count_parameters(preset("xl"), spec) <= 1.2e9


def test_attention_entropy_diagnostics():
    model, spec = make()
    ent = model.attention_entropy(random_obs(spec, 2), torch.zeros(2, 3, spec.action_dim))
    assert set(ent) == {"attn_entropy/input", "attn_entropy/latents", "attn_entropy/critic"}
    assert all(np.isfinite(v) and v >= 0 for v in ent.values())
    assert ent["attn_entropy/critic"] <= np.log(4) + 1e-5  # 4 latents


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)
    return module.eval()


def test_streamed_cross_attention_equals_full():
    from pac_ros.model.layers import CrossBlock
    blk = _randomised(CrossBlock(32, heads=4, mlp_ratio=2.0, qk_norm=True, chunk=7))
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 50, 32)
    pad = torch.zeros(2, 50, dtype=torch.bool)
    pad[1, :20] = True  # the first chunks of sample 1 are all padding
    pad[0, 45:] = True
    for p in (None, pad):
        full = blk.attn(blk.ln_q(x), blk.ln_kv(ctx), p)
        assert not blk.streams(ctx)  # gradients on: the whole context at once, as in training
        with torch.no_grad():
            assert blk.streams(ctx)
            streamed = blk.attn.streamed(blk.ln_q(x), ctx, blk.ln_kv, blk.chunk, p)
        torch.testing.assert_close(streamed, full.detach(), atol=2e-5, rtol=1e-4)


def test_encoder_chunking_changes_nothing_but_memory():
    spec = small_spec()
    cfg = micro_config(obs_mode="pixels")
    torch.manual_seed(0)
    whole = _randomised(PACModel(cfg.replace(input_chunk=0), spec))
    chunked = PACModel(cfg.replace(input_chunk=5), spec).eval()
    chunked.load_state_dict(whole.state_dict())
    obs = random_obs(spec, 2)
    tok, pad = whole.tokens(obs)
    assert tok.shape[1] > 5
    with torch.inference_mode():
        assert chunked.cross[0].streams(tok) and not whole.cross[0].streams(tok)  # the two paths do differ
        torch.testing.assert_close(chunked.encode_tokens(tok, pad), whole.encode_tokens(tok, pad),
                                   atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = chunked.encode_tokens(tok, pad).float(), whole.encode_tokens(tok, pad).float()
        assert (a - b).abs().max() < 0.1
    with pytest.raises(ValueError, match="input_chunk"):
        cfg.replace(input_chunk=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_cross_attention_on_cuda(dtype):
    from pac_ros.model.layers import CrossBlock
    blk = _randomised(CrossBlock(64, heads=4, mlp_ratio=2.0, qk_norm=True, chunk=100)).cuda()
    x, ctx = torch.randn(2, 8, 64, device="cuda"), torch.randn(2, 1000, 64, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        full = blk.attn(blk.ln_q(x), blk.ln_kv(ctx))
        streamed = blk.attn.streamed(blk.ln_q(x), ctx, blk.ln_kv, blk.chunk)
    tol = 2e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(streamed.float(), full.float(), atol=tol, rtol=tol)
