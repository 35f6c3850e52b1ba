"""Image augmentation for training from pixels (never at deployment).

``random_shift``: pad by ``pad`` pixels (edge replicated) and crop back at a random offset
per image (DrQ's random shift): the policy cannot key on exact pixel positions, which a
camera that moved by a few millimetres would break. ``jitter``: per-image brightness and
contrast factors in [1 - amount, 1 + amount], for lighting that differs from the sim's.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B,H,W,C] -> the same shape, each image shifted by up to ``pad`` pixels in x and y."""
    if pad <= 0:
        return images
    B, H, W, _ = images.shape
    x = F.pad(images.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B), generator=generator, device=images.device)
    rows = (dy[:, None] + torch.arange(H, device=images.device))[:, None, :, None]  # [B,1,H,1]
    cols = (dx[:, None] + torch.arange(W, device=images.device))[:, None, None, :]  # [B,1,1,W]
    b = torch.arange(B, device=images.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=images.device)[None, :, None, None]
    out = x[b, c, rows, cols]
    return out.round().to(torch.uint8).permute(0, 2, 3, 1)


def jitter(images: torch.Tensor, amount: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B,H,W,C] -> brightness and contrast scaled per image by factors in [1-amount, 1+amount]."""
    if amount <= 0:
        return images
    B = images.shape[0]
    f = 1.0 + amount * (2 * torch.rand(2, B, 1, 1, 1, generator=generator, device=images.device) - 1)
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[1] + mean * f[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def augment_images(obs: Mapping[str, Any], shift: int, amount: float,
                   generator: torch.Generator | None = None) -> dict:
    """The observation with every camera image shifted and jittered (other keys untouched)."""
    if "images" not in obs or (shift <= 0 and amount <= 0):
        return dict(obs)
    images = {cam: jitter(random_shift(img, shift, generator), amount, generator) for cam, img in obs["images"].items()}
    return {**obs, "images": images}
