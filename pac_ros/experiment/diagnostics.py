"""Critic diagnostics: how a checkpoint's Q of the data's own actions tracks the observed return."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def critic_calibration(checkpoint: str | Path, data_root: str | Path, gamma: float, n: int = 2048,
                       seed: int = 0) -> dict:
    """Q(s, a_data) of a checkpoint against the observed discounted return of the same
    transitions (Monte-Carlo, to the episode's end), on ``n`` sampled transitions."""
    import torch

    from pac_ros.data import Dataset
    from pac_ros.learning.data import TransitionStore
    from pac_ros.policy import Policy

    policy = Policy.load(checkpoint, device="cpu")
    m = policy.model
    store = TransitionStore(Dataset(data_root), m.config, gamma, log=lambda *a: None)
    idx = np.random.default_rng(seed).choice(len(store), min(n, len(store)), replace=False)
    idx = idx[np.argsort(store.index[idx], kind="stable")]  # the order store.batch returns
    b = store.batch(idx)
    with torch.no_grad():
        lat = m.encode(b["obs"])
        q = m.q_value(lat, b["action"][:, None].float())[:, 0].numpy()
        ent = float(m.entropy(m.policy_logits(lat)).sum(-1).mean())
    g = store.returns_to_go[idx]
    bins = np.linspace(0, max(float(g.max()), 1e-6), 6)
    which = np.clip(np.digitize(g, bins[1:-1]), 0, len(bins) - 2)
    table = [{"return_lo": float(bins[i]), "return_hi": float(bins[i + 1]), "n": int((which == i).sum()),
              "mean_return": float(g[which == i].mean()), "mean_q": float(q[which == i].mean())}
             for i in range(len(bins) - 1) if (which == i).any()]
    corr = float(np.corrcoef(q, g)[0, 1]) if g.std() > 0 and q.std() > 0 else float("nan")
    won = g > 0  # the rows of successful episodes (the reward comes at their end)
    return {"transitions": int(len(idx)), "mean_q": float(q.mean()), "mean_return": float(g.mean()),
            "correlation": corr, "policy_entropy": ent, "bins": table,
            "q_success": float(q[won].mean()) if won.any() else float("nan"),
            "q_failure": float(q[~won].mean()) if (~won).any() else float("nan")}
