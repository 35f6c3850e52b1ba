"""Small specs, configs and random observations for tests and smoke runs."""
from __future__ import annotations

import numpy as np
import torch

from ..spec import Spec, default_spec
from .config import PACConfig
from .tokenizer import tokenize_batch


def small_spec(n_arm: int = 1, cameras: int = 1, size: int = 16, blocks: int = 2) -> Spec:
    """A reduced robot spec (few joints, small cameras) for fast tests."""
    return Spec.from_dict({
        "name": "test_arm",
        "arm_joints": [{"name": f"j{i}", "lower": -2.0, "upper": 2.0, "max_step": 0.1} for i in range(n_arm)],
        "gripper": {"name": "gripper", "lower": 0.0, "upper": 0.04, "max_step": 0.04},
        "cameras": [{"name": f"cam{i}", "width": size, "height": size} for i in range(cameras)],
        "control_rate_hz": 10.0,
        "max_episode_steps": 20,
        "blocks": ["red", "green", "blue"][:blocks],
        "instruction_template": "put the {top} block on the {bottom} block",
    })


def micro_config(**kw) -> PACConfig:
    """A very small network (tens of thousands of parameters)."""
    base = dict(width=32, heads=2, n_latents=4, n_self_blocks=1, patch_size=8, mlp_ratio=2.0,
                max_instruction_len=48, n_action_bins=11, n_value_bins=21)
    base.update(kw)
    return PACConfig(**base)


def random_obs(spec: Spec, batch: int, seed: int = 0, features: bool = True) -> dict:
    """A random observation batch in the model's input format (torch tensors)."""
    rng = np.random.default_rng(seed)
    obs = {
        "images": {c.name: torch.from_numpy(rng.integers(0, 256, (batch, *c.shape), dtype=np.uint8))
                   for c in spec.cameras},
        "joint_positions": torch.from_numpy(rng.uniform(spec.lower, spec.upper, (batch, spec.action_dim))
                                            .astype(np.float32)),
        "instruction_tokens": torch.from_numpy(tokenize_batch(
            [spec.instructions()[i % len(spec.instructions())] for i in range(batch)], 48)),
    }
    if features:
        obs["features"] = torch.from_numpy(rng.normal(size=(batch, spec.feature_dim)).astype(np.float32))
    return obs


__all__ = ["small_spec", "micro_config", "random_obs", "default_spec"]
