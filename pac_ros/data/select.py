"""New datasets from chosen episodes of others: `pac-ros dataset filter | merge | split`.

Episodes are copied file-level (DatasetWriter.copy_episode: renumbered, task ids
remapped, images not re-encoded), so a copy's rows and images read back identical to
its source's.
The output directory must be new or empty; sources must share the spec.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset
from pac_ros.data.writer import DatasetWriter, check_copyable


def select(ds: Dataset, success: bool | None = None, source: str | None = None, instruction: str | None = None,
           start: int = 0, stop: int | None = None, quality: str | None = None) -> list[int]:
    """Indices of the episodes in [start, stop) that match every given criterion
    (``quality``: the collecting expert's, in the episode's metadata, e.g. perfect, noisy, swapped)."""
    picked = []
    for e in ds.episodes[start:stop]:
        if success is not None and bool(e.get("success")) != success:
            continue
        if source is not None and e.get("source") != source:
            continue
        if quality is not None and (e.get("metadata") or {}).get("quality") != quality:
            continue
        if instruction is not None and instruction.strip().lower() not in (t.lower() for t in e["tasks"]):
            continue
        picked.append(e["episode_index"])
    return picked


def write_selection(out: str | Path, parts: Iterable[tuple[Dataset, list[int]]]) -> int:
    """Copy the chosen episodes of each source, in order, into a new dataset at ``out``; returns the count."""
    parts = list(parts)
    if not parts:
        raise DatasetError("no source datasets given")
    first = parts[0][0]
    for ds, _ in parts[1:]:  # before anything is written
        try:
            check_copyable(first.spec, first.has_features, ds)
        except DatasetError as exc:
            raise DatasetError(f"{exc}; cannot merge it with {first.root}") from exc
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out}: exists and is not empty; choose a new directory")
    n = 0
    with DatasetWriter(out, first.spec, features=first.has_features) as writer:
        for ds, indices in parts:
            for i in indices:
                writer.copy_episode(ds, i)
                n += 1
    return n


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Episode indices for training and validation: a seeded shuffle, at least one each when n >= 2."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    k = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())
