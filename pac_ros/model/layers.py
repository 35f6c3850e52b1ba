"""Pre-LayerNorm attention blocks for the Perceiver backbone and decoders."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of queries ``x`` over context ``ctx`` (optional QK-norm)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.dropout = dropout

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # [B,N,D] -> [B,H,N,d]
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        q = self.q_norm(self._split(self.q(x)))
        k, v = self.kv(ctx).chunk(2, dim=-1)
        k, v = self.k_norm(self._split(k)), self._split(v)
        mask = None if pad is None else (~pad)[:, None, None, :]  # True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).flatten(-2))

    @torch.no_grad()
    def streamed(self, x: torch.Tensor, ctx: torch.Tensor, ctx_norm: nn.Module, chunk: int,
                 pad: torch.Tensor | None = None) -> torch.Tensor:
        """``self(x, ctx_norm(ctx), pad)`` without gradients, taking ``chunk`` context tokens at
        a time with a running softmax (max, sum, weighted values): the context's keys and
        values never exist for all N tokens at once, so memory beyond the input is O(chunk)."""
        q = self.q_norm(self._split(self.q(x)))
        q = q * self.head_dim ** -0.5
        top = torch.full(q.shape[:-1] + (1,), float("-inf"), device=q.device)
        total = torch.zeros_like(top)
        acc = torch.zeros(q.shape, device=q.device)
        for start in range(0, ctx.shape[1], chunk):
            k, v = self.kv(ctx_norm(ctx[:, start:start + chunk])).chunk(2, dim=-1)
            k, v = self.k_norm(self._split(k)), self._split(v)
            p = (q @ k.transpose(-1, -2)).float()  # scores, made probabilities in place
            if pad is not None:
                p.masked_fill_(pad[:, None, None, start:start + chunk], float("-inf"))
            new_top = torch.maximum(top, p.amax(-1, keepdim=True))
            shift = torch.where(torch.isinf(new_top), torch.zeros_like(new_top), new_top)  # all masked so far
            p.sub_(shift).exp_()
            rescale = (top - shift).exp()
            total = total * rescale + p.sum(-1, keepdim=True)
            acc = acc * rescale + (p.to(v.dtype) @ v).float()
            top = new_top
            del k, v, p  # before the next chunk's keys and values exist
        y = (acc / total).to(q.dtype)
        return self.out(y.transpose(1, 2).flatten(-2))

    @torch.no_grad()
    def entropy(self, x: torch.Tensor, ctx: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """Mean attention entropy (nats), for monitoring attention collapse."""
        q = self.q_norm(self._split(self.q(x)))
        k = self.k_norm(self._split(self.kv(ctx).chunk(2, dim=-1)[0]))
        s = q @ k.transpose(-1, -2) / self.head_dim ** 0.5
        if pad is not None:
            s = s.masked_fill(pad[:, None, None, :], float("-inf"))
        p = s.softmax(-1)
        return -(p * p.clamp_min(1e-12).log()).sum(-1).mean()


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float, dropout: float = 0.0):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class CrossBlock(nn.Module):
    """x <- x + Attn(LN(x), LN(ctx)); x <- x + MLP(LN(x)).

    ``chunk`` > 0: without gradients, a context longer than ``chunk`` tokens is attended
    ``chunk`` tokens at a time (Attention.streamed), so inference memory does not grow with it."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, dropout: float = 0.0,
                 chunk: int = 0):
        super().__init__()
        self.chunk = chunk
        self.ln_q, self.ln_kv, self.ln_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qk_norm, dropout)
        self.mlp = MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        if self.streams(ctx):
            x = x + self.attn.streamed(self.ln_q(x), ctx, self.ln_kv, self.chunk, pad)
        else:
            x = x + self.attn(self.ln_q(x), self.ln_kv(ctx), pad)
        return x + self.mlp(self.ln_mlp(x))

    def streams(self, ctx: torch.Tensor) -> bool:
        dropout_on = self.training and self.attn.dropout > 0
        return 0 < self.chunk < ctx.shape[1] and not torch.is_grad_enabled() and not dropout_on


class SelfBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, dropout: float = 0.0):
        super().__init__()
        self.ln, self.ln_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qk_norm, dropout)
        self.mlp = MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x)
        x = x + self.attn(h, h)
        return x + self.mlp(self.ln_mlp(x))
