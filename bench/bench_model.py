"""PAC model figures on this machine: size, latency, training throughput, scaling.

    .venv/bin/python bench/bench_model.py [--presets tiny small base] [--threads 2]

1. per preset: parameters (pixels and features modes), CPU latency of one policy
   step (encode + policy decoder + value of the chosen action) p50/p99, and training
   samples/s of the full PAC step (target network, sampled actions) on a synthetic
   in-memory batch;
2. encoder cost as input tokens grow (64 -> 4096): the Perceiver encoder (latents
   cross-attend the tokens) against a plain transformer of the same width and depth
   over all tokens, side by side with their ratio;
3. scoring K candidate actions with the Q decoder against one shared encoding,
   relative to K=1 and to a full single-action forward pass.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch import nn

from pac_ros.learning import Learner, LearnerConfig
from pac_ros.model import PACModel, count_parameters, preset
from pac_ros.model.layers import SelfBlock
from pac_ros.model.testing import random_obs
from pac_ros.policy import Policy
from pac_ros.spec import default_spec


def timed(fn, repeats: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out * 1000.0  # ms


def robot_obs(spec, seed=0):
    o = random_obs(spec, 1, seed)
    return {"images": {k: v[0].numpy() for k, v in o["images"].items()},
            "joint_positions": o["joint_positions"][0].double().numpy(),
            "instruction": spec.instructions()[0], "features": o["features"][0].numpy()}


def bench_presets(names, spec, repeats, train_steps, batch):
    print("\n== presets (CPU)")
    print(f"  {'preset':7s} {'params pixels':>14s} {'params features':>16s} {'act p50':>9s} {'act p99':>9s}"
          f" {'train samples/s':>16s}  (pixels mode, batch {batch})")
    for name in ("tiny", "small", "base", "large", "xl"):
        cfg = preset(name, obs_mode="pixels")
        n_pix = count_parameters(cfg, spec)
        n_feat = count_parameters(preset(name, obs_mode="features"), spec)
        row = f"  {name:7s} {n_pix / 1e6:13.2f}M {n_feat / 1e6:15.2f}M"
        if name not in names:
            print(row + "   (not timed: pass --presets to include)")
            continue
        torch.manual_seed(0)
        model = PACModel(cfg, spec)
        policy = Policy(model, spec, device="cpu")
        obs = robot_obs(spec)
        lat = timed(lambda: policy.act(obs), repeats)
        learner = Learner(model, LearnerConfig(amp="none", lr_warmup_steps=1))
        g = torch.Generator().manual_seed(0)
        data = {"obs": random_obs(spec, batch, 1), "next_obs": random_obs(spec, batch, 2),
                "action": torch.rand(batch, spec.action_dim, generator=g) * 2 - 1,
                "reward": torch.rand(batch, generator=g), "discount": torch.full((batch,), 0.99)}
        step = timed(lambda: learner.step(data), train_steps, warmup=1)
        print(row + f" {np.percentile(lat, 50):7.2f}ms {np.percentile(lat, 99):7.2f}ms"
                    f" {batch / (np.median(step) / 1000):15.0f}")


class PlainTransformer(nn.Module):
    """Self-attention over all N tokens, same width and depth as the PAC encoder."""

    def __init__(self, cfg, depth):
        super().__init__()
        blk = dict(heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qk_norm=cfg.qk_norm)
        self.blocks = nn.ModuleList(SelfBlock(cfg.width, **blk) for _ in range(depth))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def bench_scaling(spec, preset_name, tokens, repeats):
    cfg = preset(preset_name, obs_mode="pixels")
    torch.manual_seed(0)
    model = PACModel(cfg, spec).eval()
    depth = cfg.n_cross_blocks + cfg.n_self_blocks
    plain = PlainTransformer(cfg, depth).eval()
    print(f"\n== encoder cost vs input tokens ({preset_name}: width {cfg.width}, {cfg.n_latents} latents, "
          f"depth {depth}; batch 1, CPU)")
    print(f"  {'tokens':>6s} {'PAC ms':>9s} {'x prev':>7s} {'plain ms':>9s} {'x prev':>7s} {'plain/PAC':>10s}")
    prev = None
    with torch.inference_mode():
        for n in tokens:
            x = torch.randn(1, n, cfg.width)
            t_pac = np.median(timed(lambda: model.encode_tokens(x), repeats))
            t_plain = np.median(timed(lambda: plain(x), max(3, repeats // 4), warmup=1))
            grow = "" if prev is None else f"{t_pac / prev[0]:6.2f}x"
            grow_p = "" if prev is None else f"{t_plain / prev[1]:6.2f}x"
            print(f"  {n:6d} {t_pac:9.2f} {grow:>7s} {t_plain:9.2f} {grow_p:>7s} {t_plain / t_pac:9.1f}x")
            prev = (t_pac, t_plain)


def bench_candidates(spec, preset_name, ks, repeats):
    cfg = preset(preset_name, obs_mode="pixels")
    torch.manual_seed(0)
    model = PACModel(cfg, spec).eval()
    policy = Policy(model, spec, device="cpu")
    batch = policy.obs_batch(robot_obs(spec))
    print(f"\n== scoring K candidate actions with the Q decoder ({preset_name}, one shared encoding, CPU)")
    with torch.inference_mode():
        full = np.median(timed(lambda: model.q_logits(model.encode(batch), torch.zeros(1, 1, spec.action_dim)),
                               repeats))
        lat = model.encode(batch)
        base = None
        print(f"  full forward (encode + Q of 1 action): {full:.2f} ms")
        for k in ks:
            acts = torch.rand(1, k, spec.action_dim) * 2 - 1
            t = np.median(timed(lambda: model.q_logits(lat, acts), repeats))
            base = base or t
            print(f"  K={k:4d}: Q decoder {t:7.3f} ms = {t / base:5.2f}x K=1; encode + K candidates = "
                  f"{(full - base + t) / full:5.2f}x one full forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = default_spec()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    bench_presets(args.presets, spec, args.repeats, args.train_steps, args.batch)
    bench_scaling(spec, "tiny", args.tokens, max(10, args.repeats // 10))
    bench_candidates(spec, "tiny", [1, 8, 32, 128], args.repeats)


if __name__ == "__main__":
    main()
