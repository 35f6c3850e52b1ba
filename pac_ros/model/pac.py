"""Perceiver-Actor-Critic network (PAC paper, Fig. 2).

Modality encoders -> tokens of width D; Z learned latents cross-attend all tokens;
M self-attention blocks on the latents. Policy decoder: one query per action dim ->
logits over action bins. Q decoder: a query built from the encoded action -> logits
over a fixed value support (distributional Q). The action enters only the Q decoder,
so K candidate actions are scored against one encoding.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Spec
from .config import PACConfig
from .layers import CrossBlock, SelfBlock
from .locator import BlockLocator
from .tokenizer import PAD, VOCAB_SIZE
from .vision import KeypointStem

Obs = Mapping[str, object]


class Perceiver(nn.Module):
    """Learned latents that cross-attend to the input tokens, then self-attend: [B,N,D] -> [B,Z,D]."""

    def __init__(self, n_latents: int, width: int, n_cross: int, n_self: int, chunk: int, **blk):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(n_latents, width))
        self.cross = nn.ModuleList(CrossBlock(width, **blk, chunk=chunk) for _ in range(n_cross))
        self.self_blocks = nn.ModuleList(SelfBlock(width, **blk) for _ in range(n_self))
        self.ln = nn.LayerNorm(width)

    def reset_parameters(self) -> None:
        init_modules(self.modules())
        nn.init.trunc_normal_(self.latents, std=0.02)

    def forward(self, tok: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        return perceive(self.latents, self.cross, self.self_blocks, self.ln, tok, pad)


def perceive(latents: torch.Tensor, cross: nn.ModuleList, self_blocks: nn.ModuleList, ln: nn.LayerNorm,
             tok: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
    """The Perceiver's pass: latents [Z,D] cross-attend tokens [B,N,D], then self-attend -> [B,Z,D]."""
    z = latents.expand(tok.shape[0], -1, -1)
    for blk in cross:
        z = blk(z, tok, pad)
    for blk in self_blocks:
        z = blk(z)
    return ln(z)


class PACModel(nn.Module):
    def __init__(self, config: PACConfig, spec: Spec):
        super().__init__()
        self.config, self.spec = config, spec
        c, D = config, config.width
        self.action_dim = c.action_dim(spec)
        n_joints, feature_dim = spec.action_dim, c.feature_dim(spec)
        blk = dict(heads=c.heads, mlp_ratio=c.mlp_ratio, qk_norm=c.qk_norm, dropout=c.dropout)

        # proprioception: shared value MLP + joint identity embedding
        # input normalisation x -> (x - loc) / scale, saved with the weights; defaults map the
        # joint limits to [-1, 1]; training sets data statistics (set_normalization)
        lower = torch.tensor(spec.lower, dtype=torch.float32)
        upper = torch.tensor(spec.upper, dtype=torch.float32)
        self.register_buffer("joint_loc", (lower + upper) / 2)
        self.register_buffer("joint_scale", (upper - lower) / 2)
        self.register_buffer("feature_loc", torch.zeros(feature_dim))
        self.register_buffer("feature_scale", torch.ones(feature_dim))
        self.joint_value = nn.Sequential(nn.Linear(1, D), nn.GELU(), nn.Linear(D, D))
        self.joint_id = nn.Parameter(torch.zeros(n_joints, D))

        # images: patch embedding per camera + factorised 2-D position + camera embedding
        self.camera_names = list(spec.camera_names) if c.uses_images else []
        if c.uses_images and not self.camera_names:
            raise ValueError(f"obs_mode {c.obs_mode!r} needs cameras; the spec has none")
        self.image_hw: dict[str, tuple[int, int]] = {}
        self.patch = nn.ModuleDict()
        self.keypoint_stem = nn.ModuleDict()
        keypoints = c.image_stem == "keypoints"
        # the locator is run by the policy (pac_ros/perception.py) and in training before the network:
        # the network itself gets its block poses, like a features model
        self.locator = BlockLocator(self.camera_names, len(spec.blocks), c.stem_channels) if c.locates_blocks else None
        grid_h = grid_w = 0
        for cam in spec.cameras if c.uses_images and not c.locates_blocks else ():
            h, w = (c.image_size, c.image_size) if c.image_size else (cam.height, cam.width)
            self.image_hw[cam.name] = (h, w)
            if keypoints:
                self.keypoint_stem[cam.name] = KeypointStem(cam.channels, c.stem_channels, c.n_keypoints)
                continue
            if h % c.patch_size or w % c.patch_size:
                raise ValueError(f"camera {cam.name}: {h}x{w} not divisible by patch_size {c.patch_size}")
            self.patch[cam.name] = nn.Conv2d(cam.channels, D, c.patch_size, stride=c.patch_size)
            grid_h, grid_w = max(grid_h, h // c.patch_size), max(grid_w, w // c.patch_size)
        if self.camera_names and not c.locates_blocks:  # (creation order fixes the seeded initialisation)
            if keypoints:  # a keypoint token: its coordinates through an MLP + which keypoint it is
                self.keypoint_value = nn.Sequential(nn.Linear(2, D), nn.GELU(), nn.Linear(D, D))
                self.keypoint_id = nn.Parameter(torch.zeros(c.n_keypoints, D))
            else:
                self.pos_row = nn.Parameter(torch.zeros(grid_h, D))
                self.pos_col = nn.Parameter(torch.zeros(grid_w, D))
            self.camera_id = nn.Parameter(torch.zeros(len(self.camera_names), D))
        n_keypoint_values = 2 * c.n_keypoints * len(self.camera_names) if keypoints else 0

        # language: byte tokens + position embedding
        self.byte_embed = nn.Embedding(VOCAB_SIZE, D)
        self.text_pos = nn.Parameter(torch.zeros(c.max_instruction_len, D))

        # privileged block features: one token per block (position + quaternion) + block id
        self.n_feature_tokens = len(spec.blocks) if c.block_tokens else 0
        if c.block_tokens:
            self.feature_embed = nn.Linear(feature_dim // len(spec.blocks), D)
            self.feature_id = nn.Parameter(torch.zeros(self.n_feature_tokens, D))
        # one summary token of the whole low-dimensional state (joints [+ block features])
        # through an MLP: per-joint tokens alone make the latents assemble the state by
        # attention, which learned several times slower on a CPU budget (ours, measured)
        state_dim = n_joints + (feature_dim if c.block_tokens else 0) + n_keypoint_values
        self.state_token = nn.Sequential(nn.Linear(state_dim, D), nn.GELU(), nn.Linear(D, D)) \
            if c.state_token else None

        # Perceiver backbone
        self.latents = nn.Parameter(torch.zeros(c.n_latents, D))
        self.cross = nn.ModuleList(CrossBlock(D, **blk, chunk=c.input_chunk) for _ in range(c.n_cross_blocks))
        self.self_blocks = nn.ModuleList(SelfBlock(D, **blk) for _ in range(c.n_self_blocks))
        self.ln_latents = nn.LayerNorm(D)

        # policy decoder: one learned query per action dim
        self.policy_queries = nn.Parameter(torch.zeros(self.action_dim, D))
        self.policy_dec = nn.ModuleList(CrossBlock(D, **blk) for _ in range(c.n_decoder_blocks))
        self.policy_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, c.n_action_bins))

        # Q decoder: query = learned token + MLP(action)
        self.q_query = nn.Parameter(torch.zeros(D))
        self.action_embed = nn.Sequential(nn.Linear(self.action_dim, D), nn.GELU(), nn.Linear(D, D))
        self.q_dec = nn.ModuleList(CrossBlock(D, **blk) for _ in range(c.n_decoder_blocks))
        self.q_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, c.n_value_bins))

        # auxiliary: the block features (standardised) predicted from the mean latent; trained on
        # the simulator's poses, never an input, so a pixels model learns where the blocks are
        self.aux_head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, D), nn.GELU(), nn.Linear(D, feature_dim)) \
            if c.aux_features else None

        # critic_encoder own: the critic's Perceiver (built on a forked RNG and initialised last, so the rest
        # of the model starts as a shared model of the same seed does)
        self.critic_backbone = None
        if c.critic_encoder == "own":
            self.critic_backbone = built_aside(lambda: Perceiver(c.n_latents, D, c.n_cross_blocks, c.n_self_blocks,
                                                                 c.input_chunk, **blk))

        # outcome_token: 0 failure, 1 success (built aside and initialised last, as the critic's Perceiver)
        self.outcome_embed = built_aside(lambda: nn.Embedding(2, D)) if c.outcome_token else None

        self.register_buffer("action_bins", evenly_spaced(-1.0, 1.0, c.n_action_bins), persistent=False)
        self.register_buffer("value_support", evenly_spaced(c.v_min, c.v_max, c.n_value_bins), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def set_normalization(self, joints: torch.Tensor | None = None, features: torch.Tensor | None = None,
                          min_scale: float = 1e-2) -> None:
        """Standardise inputs with data statistics: rows of joint positions [N,A] and block
        features [N,F] (their mean and std; std floored at ``min_scale`` so near-constant
        inputs are not blown up into noise)."""
        def mean_std(x):
            if x is None:
                return None
            x = torch.as_tensor(x, dtype=torch.float64)
            return x.mean(0), x.std(0)

        self.set_normalization_stats(mean_std(joints), mean_std(features), min_scale)

    @torch.no_grad()
    def set_normalization_stats(self, joints: tuple | None = None, features: tuple | None = None,
                                min_scale: float = 1e-2) -> None:
        """As set_normalization, from precomputed (mean, std) pairs (e.g. a dataset's meta/stats.json)."""
        for ms, loc, scale in ((joints, self.joint_loc, self.joint_scale),
                               (features, self.feature_loc, self.feature_scale)):
            if ms is None:
                continue
            mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in ms)
            if mean.shape != loc.shape or std.shape != scale.shape:
                raise ValueError(f"statistics of shape {tuple(mean.shape)}, the model expects {tuple(loc.shape)}")
            loc.copy_(mean)
            scale.copy_(std.clamp_min(min_scale))

    # ---- init ---------------------------------------------------------------------
    def reset_parameters(self) -> None:
        own_init = set(self.locator.modules()) if self.locator is not None else set()  # convolutions: PyTorch's
        # the optional modules built aside: initialised last, so the rest starts as a model without them
        late = [m for m in (self.critic_backbone, self.outcome_embed) if m is not None]
        elsewhere = own_init | {sub for m in late for sub in m.modules()}
        init_modules(m for m in self.modules() if m not in elsewhere)
        for name, p in self.named_parameters(recurse=False):
            nn.init.trunc_normal_(p, std=0.02)
        for m in late:
            m.reset_parameters() if isinstance(m, Perceiver) else init_modules(m.modules())
        # zero heads: uniform policy and uniform return distribution at step 0 (ours)
        for head in (self.policy_head[-1], self.q_head[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @torch.no_grad()
    def set_return_prior(self, probs: torch.Tensor, floor: float = 1e-4) -> None:
        """Start the critic at a return distribution over the support (e.g. the data's
        histogram of returns) instead of uniform: the zero-weight Q head then outputs
        exactly these logits, so bootstrapped targets start near the data's returns."""
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.shape != self.value_support.shape or not torch.isfinite(probs).all() or (probs < 0).any():
            raise ValueError(f"return prior must be {self.config.n_value_bins} finite non-negative values")
        p = probs / probs.sum() if probs.sum() > 0 else torch.full_like(probs, 1.0 / probs.numel())
        self.q_head[-1].bias.copy_(p.clamp_min(floor).log())

    # ---- encoders -----------------------------------------------------------------
    def tokens(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor]:
        """All input tokens [B,N,D] and their padding mask [B,N] (True = padding)."""
        joints = obs["joint_positions"].float()
        B, dev = joints.shape[0], joints.device
        x = (joints - self.joint_loc) / self.joint_scale
        toks = [self.joint_value(x.unsqueeze(-1)) + self.joint_id]
        pads = [torch.zeros(B, joints.shape[1], dtype=torch.bool, device=dev)]
        state = [x]

        if self.keypoint_stem:
            # precomputed keypoints (training with a frozen stem) or the stem on the images
            keypoints = obs.get("keypoints") or self.keypoints(obs["images"])
            for i, cam in enumerate(self.camera_names):
                kp = keypoints[cam]  # [B,K,2]
                state.append(kp.flatten(1).float())
                toks.append(self.keypoint_value(kp.float()) + self.keypoint_id + self.camera_id[i])
                pads.append(torch.zeros(B, kp.shape[1], dtype=torch.bool, device=dev))
        elif self.camera_names and self.locator is None:
            images = obs["images"]
            for i, cam in enumerate(self.camera_names):
                img = self.image_input(images, cam)
                p = self.patch[cam](img)  # [B,D,gh,gw]
                gh, gw = p.shape[-2:]
                pos = self.pos_row[:gh, None, :] + self.pos_col[None, :gw, :]
                p = p.flatten(2).transpose(1, 2) + pos.reshape(gh * gw, -1) + self.camera_id[i]
                toks.append(p)
                pads.append(torch.zeros(B, gh * gw, dtype=torch.bool, device=dev))

        text = obs["instruction_tokens"].long()[:, : self.config.max_instruction_len]
        toks.append(self.byte_embed(text) + self.text_pos[: text.shape[1]])
        pads.append(text == PAD)

        if self.n_feature_tokens:
            feats = obs.get("features")
            if feats is None:
                raise KeyError(f"obs_mode {self.config.obs_mode!r} needs 'features' in the observation"
                               + (" (the locator's block poses)" if self.locator is not None else ""))
            f = self.standardize_features(feats)
            state.append(f)
            toks.append(self.feature_embed(f.reshape(B, self.n_feature_tokens, -1)) + self.feature_id)
            pads.append(torch.zeros(B, self.n_feature_tokens, dtype=torch.bool, device=dev))
        if self.state_token is not None:
            toks.append(self.state_token(torch.cat(state, -1))[:, None])
            pads.append(torch.zeros(B, 1, dtype=torch.bool, device=dev))
        if self.outcome_embed is not None:  # the episode's outcome in training; success when acting
            outcome = obs.get("outcome")
            outcome = torch.ones(B, dtype=torch.long, device=dev) if outcome is None else outcome.long()
            toks.append(self.outcome_embed(outcome)[:, None])
            pads.append(torch.zeros(B, 1, dtype=torch.bool, device=dev))
        return torch.cat(toks, 1), torch.cat(pads, 1)

    def image_input(self, images: Mapping[str, torch.Tensor], cam: str) -> torch.Tensor:
        """uint8 [B,H,W,C] camera image -> normalised float [B,C,h,w] at the model's resolution."""
        if cam not in images:
            raise KeyError(f"observation lacks camera {cam!r} (has {sorted(images)})")
        img = images[cam].permute(0, 3, 1, 2).float() * (1.0 / 255.0)  # uint8 BHWC -> float BCHW in [0,1]
        img = (img - 0.5) / 0.25
        hw = self.image_hw[cam]
        if tuple(img.shape[-2:]) != hw:
            img = F.interpolate(img, size=hw, mode="bilinear", align_corners=False, antialias=True)
        return img

    def keypoints(self, images: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Camera images -> keypoints [B,K,2] per camera (image_stem keypoints)."""
        return {cam: self.keypoint_stem[cam](self.image_input(images, cam)) for cam in self.camera_names}

    def encode(self, obs: Obs) -> torch.Tensor:
        """Observation batch -> latents [B,Z,D]."""
        return self.encode_tokens(*self.tokens(obs))

    def encode_tokens(self, tok: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """Input tokens [B,N,D] (pad: True = ignore) -> latents [B,Z,D]; cost O(N·Z), not O(N²).
        With the critic's own Perceiver: [B,2Z,D], the policy's Z latents then the critic's."""
        z = perceive(self.latents, self.cross, self.self_blocks, self.ln_latents, tok, pad)
        return z if self.critic_backbone is None else torch.cat([z, self.critic_backbone(tok, pad)], 1)

    def actor_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.critic_backbone is None else latents[:, : self.config.n_latents]

    def critic_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.critic_backbone is None else latents[:, self.config.n_latents:]

    # ---- auxiliary -----------------------------------------------------------------
    def aux_prediction(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B,Z,D] -> predicted standardised block features [B,F] (needs aux_features)."""
        if self.aux_head is None:
            raise ValueError("this model has no auxiliary head (aux_features: false)")
        return self.aux_head(self.actor_latents(latents).mean(1))

    def standardize_features(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.feature_loc) / self.feature_scale

    # ---- decoders -----------------------------------------------------------------
    def policy_logits(self, latents: torch.Tensor) -> torch.Tensor:
        """[B,Z,D] -> logits [B,A,n_action_bins]."""
        q = self.policy_queries.expand(latents.shape[0], -1, -1)
        latents = self.actor_latents(latents)
        for blk in self.policy_dec:
            q = blk(q, latents)
        return self.policy_head(q)

    def q_logits(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latents [B,Z,D], actions [B,K,A] in [-1,1] -> logits [B,K,n_value_bins]."""
        if actions.dim() == 2:
            raise ValueError("actions must be [B,K,A]; use actions[:, None] for one action")
        q = self.q_query + self.action_embed(actions.to(latents.dtype))
        latents = self.critic_latents(latents)
        for blk in self.q_dec:
            q = blk(q, latents)  # the K queries attend independently: shared encoding
        return self.q_head(q)

    def critic_parameters(self) -> list[nn.Parameter]:
        """The parameters only the critic uses: the Q decoder, and the critic's own Perceiver if it has one."""
        own = [*self.critic_backbone.parameters()] if self.critic_backbone is not None else []
        return [*own, *self.action_embed.parameters(), self.q_query, *self.q_dec.parameters(),
                *self.q_head.parameters()]

    def q_value(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Expected return Σ_k p(z_k|s,a) z_k, [B,K]."""
        return self.expected_value(self.q_logits(latents, actions))

    def expected_value(self, q_logits: torch.Tensor) -> torch.Tensor:
        return (q_logits.float().softmax(-1) * self.value_support).sum(-1)

    @torch.no_grad()
    def attention_entropy(self, obs: Obs, actions: torch.Tensor) -> dict[str, float]:
        """Mean attention entropy (nats) of the input cross-attention, the last latent
        self-attention and the Q decoder, to watch for attention collapse (docs/method.md)."""
        tok, pad = self.tokens(obs)
        z = self.latents.expand(tok.shape[0], -1, -1)
        out = {"attn_entropy/input": 0.0}
        for blk in self.cross:
            out["attn_entropy/input"] = float(blk.attn.entropy(blk.ln_q(z), blk.ln_kv(tok), pad))
            z = blk(z, tok, pad)
        for blk in self.self_blocks:
            h = blk.ln(z)
            out["attn_entropy/latents"] = float(blk.attn.entropy(h, h))
            z = blk(z)
        z = self.ln_latents(z) if self.critic_backbone is None else self.critic_backbone(tok, pad)
        q = self.q_query + self.action_embed(actions.to(z.dtype))
        for blk in self.q_dec:
            out["attn_entropy/critic"] = float(blk.attn.entropy(blk.ln_q(q), blk.ln_kv(z)))
            q = blk(q, z)
        return out

    # ---- action bins --------------------------------------------------------------
    def action_to_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """Continuous actions in [-1,1] -> nearest bin index (long, same shape)."""
        n = self.config.n_action_bins
        idx = torch.round((actions.clamp(-1, 1) + 1.0) * 0.5 * (n - 1))
        return idx.long().clamp(0, n - 1)

    def bins_to_action(self, idx: torch.Tensor) -> torch.Tensor:
        return self.action_bins[idx]

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) = Σ_dims log softmax at a's bin. logits [B,A,n], actions [B,K,A] -> [B,K]."""
        logp = logits.float().log_softmax(-1)  # [B,A,n]
        idx = self.action_to_bins(actions)  # [B,K,A]
        lp = logp.unsqueeze(1).expand(-1, idx.shape[1], -1, -1).gather(-1, idx.unsqueeze(-1))
        return lp.squeeze(-1).sum(-1)

    def sample_actions(self, logits: torch.Tensor, n: int, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """n independent samples per state (Gumbel-max per dim): [B,A,bins] -> [B,n,A]."""
        B, A, nb = logits.shape
        u = torch.rand((B, n, A, nb), device=logits.device, generator=generator)
        g = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        idx = (logits.float().unsqueeze(1) / max(temperature, 1e-6) + g).argmax(-1)
        return self.action_bins[idx]

    def greedy_action(self, logits: torch.Tensor) -> torch.Tensor:
        """Mode of each dimension: [B,A,bins] -> [B,A]."""
        return self.action_bins[logits.argmax(-1)]

    @staticmethod
    def entropy(logits: torch.Tensor) -> torch.Tensor:
        """Entropy over the last axis (nats)."""
        logp = logits.float().log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)


def built_aside(build):
    """``build()`` on a forked RNG: the modules built after it draw the same as without it."""
    with torch.random.fork_rng(devices=[]):
        return build()


def init_modules(modules) -> None:
    """Linear/conv/embedding weights truncated normal (std 0.02), biases zero, LayerNorms identity."""
    for m in modules:
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def evenly_spaced(lo: float, hi: float, n: int) -> torch.Tensor:
    """n atoms from lo to hi, computed in float64 so centre and ends are exact."""
    return (lo + torch.arange(n, dtype=torch.float64) * ((hi - lo) / (n - 1))).float()


def count_parameters(config: PACConfig, spec: Spec) -> int:
    """Parameter count, built on the meta device (no memory, fast even for xl)."""
    with torch.device("meta"):
        model = PACModel(config, spec)
    return sum(p.numel() for p in model.parameters())
