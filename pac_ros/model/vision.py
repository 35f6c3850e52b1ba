"""Image stems: what turns a camera frame into Perceiver input tokens.

``KeypointStem``: a small conv net whose first two layers have stride 2 (full-resolution
feature maps are what a CPU cannot afford), then a spatial softmax per output channel that
returns the expected (x, y) of each channel's activation: K keypoints in [-1, 1] image
coordinates (Levine et al. 2016's spatial softmax, as used by robomimic's visual
encoders). A keypoint is a coordinate, so a block a few pixels wide still moves it
by a measurable amount.
"""
from __future__ import annotations

import torch
from torch import nn


def spatial_softmax(maps: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Feature maps [B,K,H,W] -> expected coordinates [B,K,2] (x, y in [-1, 1], pixel centres)."""
    B, K, H, W = maps.shape
    attn = (maps.float().flatten(2) / temperature).softmax(-1).view(B, K, H, W)
    ys = torch.linspace(-1 + 1 / H, 1 - 1 / H, H, device=maps.device)
    xs = torch.linspace(-1 + 1 / W, 1 - 1 / W, W, device=maps.device)
    x = (attn.sum(2) * xs).sum(-1)
    y = (attn.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1)


class KeypointStem(nn.Module):
    """uint8-normalised image [B,C,H,W] -> keypoints [B,K,2]."""

    def __init__(self, in_channels: int, channels: int, n_keypoints: int):
        super().__init__()
        half = max(1, channels // 2)
        self.net = nn.Sequential(  # maps at 1/4 of the input resolution (16x16 for a 64x64 camera)
            nn.Conv2d(in_channels, half, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(half, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, n_keypoints, 1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))  # learned softmax temperature (starts at 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return spatial_softmax(self.net(image), self.log_temperature.exp())
