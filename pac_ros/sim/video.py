"""Rollout videos without a codec dependency: animated GIFs through Pillow."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gif(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Save RGB frames as an animated GIF (Pillow; no video codec needed)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise ValueError("no frames to write (was rendering off?)")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
