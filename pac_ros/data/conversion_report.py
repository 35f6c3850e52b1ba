"""What a conversion into or out of our format reports (shared by the LeRobot and MCAP converters)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pac_ros.data.format import DatasetError


@dataclass
class ConversionReport:
    out: Path
    episodes: int
    steps: int
    seconds: float
    notes: list[str] = field(default_factory=list)  # anything skipped, dropped or mapped, in words

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (f"wrote {self.out}: {self.episodes} episodes, {self.steps} steps in {self.seconds:.2f} s "
                f"({self.steps_per_second:.0f} steps/s)")


def select_episodes(ds, episodes: Sequence[int] | None) -> list[int]:
    """Indices of the episodes to convert (all when None), checked: ints, in range, no repeats."""
    if len(ds) == 0:
        raise DatasetError(f"{ds.root}: the dataset has no committed episodes to export")
    if episodes is None:
        return list(range(len(ds)))
    selected = []
    for i in episodes:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"episode indices must be ints, got {type(i).__name__} {i!r}")
        if not 0 <= i < len(ds):
            raise IndexError(f"episode {i} out of range: dataset {ds.root} has {len(ds)} episodes")
        selected.append(int(i))
    if not selected:
        raise ValueError("no episodes selected")
    dupes = sorted({i for i in selected if selected.count(i) > 1})
    if dupes:
        raise ValueError(f"episodes selected more than once: {dupes}")
    return selected
