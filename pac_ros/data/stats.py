"""Per-feature statistics of a dataset, stored in meta/stats.json: `pac-ros dataset stats`.

Training standardises the model's inputs with the mean and std of ``observation.state``
and ``observation.environment_state`` over every row; it takes them from here when the
file's fingerprint matches the dataset (a writer that appends episodes makes the file
stale, and training then computes them afresh). std is the sample std (ddof=1), as
``torch.std``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pac_ros.data import format as fmt
from pac_ros.data.reader import Dataset

STATS_PATH = "meta/stats.json"


def _describe(x: np.ndarray) -> dict[str, list[float]]:
    x = x.astype(np.float64).reshape(len(x), -1)
    q = np.percentile(x, [1, 50, 99], axis=0)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": (x.std(0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])).tolist(),
            "q01": q[0].tolist(), "q50": q[1].tolist(), "q99": q[2].tolist(), "count": int(len(x))}


def compute_stats(ds: Dataset) -> dict[str, Any]:
    if not len(ds):
        raise ValueError(f"{ds.root}: no episodes to describe")
    cols: dict[str, list[np.ndarray]] = {"observation.state": [], "action": [], "next.reward": []}
    if ds.has_features:
        cols["observation.environment_state"] = []
    for i in range(len(ds)):
        ep = ds.load_episode(i, images=False)
        cols["observation.state"].append(ep.joint_positions)
        cols["action"].append(ep.actions)
        cols["next.reward"].append(ep.rewards)
        if ds.has_features:
            cols["observation.environment_state"].append(ep.features)
    return {"fingerprint": ds.fingerprint(), "episodes": len(ds), "steps": ds.total_steps,
            "features": {k: _describe(np.concatenate(v)) for k, v in cols.items()}}


def write_stats(ds: Dataset, stats: dict[str, Any] | None = None) -> Path:
    """Store ``stats`` (computed here if not given) as the dataset's meta/stats.json."""
    stats = compute_stats(ds) if stats is None else stats
    path = ds.root / STATS_PATH
    fmt.atomic_write(path, json.dumps(stats, indent=1, allow_nan=False).encode())
    return path


def load_stats(ds: Dataset) -> dict[str, Any] | None:
    """The stored statistics if they describe exactly this dataset's episodes, else None."""
    path = ds.root / STATS_PATH
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stats, dict) or stats.get("fingerprint") != ds.fingerprint():
        return None
    return stats
