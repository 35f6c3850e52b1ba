"""The block locator: each camera's image -> where each block is in it.

A small fully convolutional network (a strided stem, then dilated residual convolutions, with
pixel-coordinate channels) gives, per camera and block, a heatmap whose spatial soft-argmax is
the block centre's pixel, a visibility logit, and the block's yaw modulo 90° as the vector
(cos 4θ, sin 4θ), read from the features the heatmap attends to. Translation equivariance is
what makes it precise: the blocks are 4-6 px in a 64x64 image and their pixel is found to a
fraction of one. The geometry that turns pixels into block poses is pac_ros/cameras.py.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class BlockLocator(nn.Module):
    def __init__(self, camera_names: Sequence[str], n_blocks: int, channels: int = 32,
                 dilations: Sequence[int] = (1, 2, 4, 1)):
        super().__init__()
        self.camera_names, self.n_blocks = list(camera_names), n_blocks
        self.stem = nn.Conv2d(5, channels, 5, stride=2, padding=2)
        self.body = nn.Sequential(*[_Residual(channels, d) for d in dilations])
        self.heatmaps = nn.ModuleDict({c: nn.Conv2d(channels, n_blocks, 1) for c in self.camera_names})
        # per block: yaw vector (2) and visibility (1), from the attended features and the heatmap's peak
        self.heads = nn.ModuleDict({c: nn.Sequential(nn.Linear(channels + 1, 64), nn.ReLU(),
                                                     nn.Linear(64, 3 * n_blocks)) for c in self.camera_names})
        # each camera's pixel error (measured on held-out rows after training): how much its rays count
        self.register_buffer("pixel_std", torch.ones(len(self.camera_names)))

    def pixel_stds(self) -> dict[str, float]:
        return {c: float(s) for c, s in zip(self.camera_names, self.pixel_std)}

    @staticmethod
    def _coords(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.linspace(-1, 1, w, device=device).view(1, 1, w).expand(1, h, w),
                torch.linspace(-1, 1, h, device=device).view(1, h, 1).expand(1, h, w))

    def forward(self, images: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """uint8 images [B,H,W,3] per camera -> per camera: ``uv`` [B,n,2] (pixels of the input
        image), ``yaw`` [B,n,2] ((cos 4θ, sin 4θ), shorter where unsure), ``visible`` [B,n] (logit)."""
        out = {}
        for cam in self.camera_names:
            img = images[cam]
            B, H, W, _ = img.shape
            x = img.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            cx, cy = self._coords(H, W, x.device)
            x = torch.cat([x, cx.expand(B, 1, H, W), cy.expand(B, 1, H, W)], 1)
            f = self.body(F.relu(self.stem(x)))  # [B, C, h, w]
            logits = self.heatmaps[cam](f).flatten(2)  # [B, n, h*w]
            h, w = f.shape[2:]
            attn = logits.softmax(-1)
            # cell centres in input pixels (pixel centres at integer coordinates)
            us = (torch.arange(w, device=x.device, dtype=attn.dtype) + 0.5) * (W / w) - 0.5
            vs = (torch.arange(h, device=x.device, dtype=attn.dtype) + 0.5) * (H / h) - 0.5
            grid = torch.stack([us.repeat(h), vs.repeat_interleave(w)], -1)  # [h*w, 2]
            uv = attn @ grid
            pooled = attn @ f.flatten(2).transpose(1, 2)  # [B, n, C]
            peak = logits.max(-1).values - logits.logsumexp(-1)  # how concentrated the heatmap is
            head = self.heads[cam](torch.cat([pooled, peak[..., None]], -1))  # [B, n, 3n]
            head = head.view(B, self.n_blocks, self.n_blocks, 3).diagonal(dim1=1, dim2=2).transpose(1, 2)
            out[cam] = {"uv": uv, "yaw": head[..., :2], "visible": head[..., 2]}
        return out
