"""What a conversion into or out of our format reports (shared by the LeRobot and MCAP converters)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
