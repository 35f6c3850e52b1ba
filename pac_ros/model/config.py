"""Model configuration and size presets."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..config_loader import check, check_choices, load
from ..spec import POSE_NAMES

ObsMode = Literal["pixels", "features", "pixels+features"]
# How images become tokens: patch (one token per patch_size² patch), keypoints (a small strided conv
# stem, then a spatial softmax: n_keypoints (x, y) tokens per camera, also fed to the state token), or
# locator (a block locator, pac_ros/model/locator.py, whose pixels the calibrated cameras turn into block
# poses, pac_ros/perception.py: one token per block, as a features model has from the simulator)
ImageStem = Literal["patch", "keypoints", "locator"]
# What the model commands and, with features, how it sees the blocks (pac_ros/control.py):
# joint: each joint's step, blocks in spec order; task: grip-site motion, yaw and gripper
# (IK turns it into joint targets), blocks ordered by the instruction and relative to the grip.
Control = Literal["joint", "task"]
OBS_MODES = typing.get_args(ObsMode)
IMAGE_STEMS = typing.get_args(ImageStem)
CONTROLS = typing.get_args(Control)
TASK_ACTION_DIM = 5  # dx dy dz dyaw gripper
# a task-control block feature: its pose (x y z qw qx qy qz) then its position relative to the grip site
TASK_BLOCK_DIM = len(POSE_NAMES) + 3


@dataclass
class PACConfig:
    width: int = 128  # token width D
    heads: int = 4
    n_latents: int = 32  # Z
    n_self_blocks: int = 4  # M
    n_cross_blocks: int = 1  # latent <- input cross-attention layers
    n_decoder_blocks: int = 1  # cross-attention layers in each decoder
    # shared: the policy and the critic decode one Perceiver's latents (paper); own: the critic has a Perceiver
    # of its own (latents, cross- and self-attention) over the same input tokens (ours)
    critic_encoder: Literal["shared", "own"] = "shared"
    input_chunk: int = 512  # inference: input tokens the encoder attends at a time (0 = all at once)
    mlp_ratio: float = 4.0
    qk_norm: bool = True  # LayerNorm on queries/keys per head (docs/method.md: critic attention collapse)
    state_token: bool = True  # an MLP summary token of joints (+ block features) besides per-item tokens
    patch_size: int = 8
    image_stem: ImageStem = "patch"
    stem_channels: int = 32  # keypoints and locator stems: conv channels
    n_keypoints: int = 16  # keypoints stem: spatial-softmax keypoints per camera
    aux_features: bool = False  # a head predicting the block features from the latents (training-time target)
    # success-conditioned BC: an input token saying whether the episode succeeded; training gives each step its
    # episode's outcome, acting always asks for success (an observation without "outcome")
    outcome_token: bool = False
    freeze_stem: bool = False  # keypoints stem: trained by its own pretraining only (pac_ros/learning/stem.py),
    # then frozen, so PAC training reads cached keypoints instead of images
    image_size: int | None = None  # model resolution (square); None = each camera's own
    max_instruction_len: int = 64  # byte tokens
    obs_mode: ObsMode = "pixels"
    control: Control = "joint"
    n_action_bins: int = 101  # per action dim over [-1, 1] (ours)
    n_value_bins: int = 101  # distributional Q support (ours)
    v_min: float = 0.0
    v_max: float = 1.0  # largest discounted return: 1 for a sparse success reward that terminates (ours)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choices(self)
        if self.stem_channels < 1 or self.n_keypoints < 1:
            raise ValueError("stem_channels and n_keypoints must be >= 1")
        if self.freeze_stem and self.image_stem != "keypoints":
            raise ValueError("freeze_stem needs image_stem: keypoints")
        if self.image_stem == "locator" and (self.obs_mode != "pixels" or self.control != "task"):
            raise ValueError("image_stem: locator needs obs_mode: pixels and control: task "
                             "(its block poses become the task-space block tokens)")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} not divisible by heads {self.heads}")
        if self.input_chunk < 0:
            raise ValueError(f"input_chunk must be >= 0 (0 = no chunking), got {self.input_chunk}")
        if self.n_action_bins < 2 or self.n_value_bins < 2:
            raise ValueError("n_action_bins and n_value_bins must be >= 2")
        if not self.v_min < self.v_max:
            raise ValueError(f"v_min {self.v_min} must be < v_max {self.v_max}")

    @property
    def uses_images(self) -> bool:
        return "pixels" in self.obs_mode

    @property
    def uses_features(self) -> bool:
        """Whether the model reads the simulator's block poses (``/sim/block_poses``)."""
        return "features" in self.obs_mode

    @property
    def locates_blocks(self) -> bool:
        """Whether the model finds the block poses in its camera images (image_stem: locator)."""
        return self.uses_images and self.image_stem == "locator"

    @property
    def block_tokens(self) -> bool:
        """Whether the network has a token per block: poses from the simulator or from the locator."""
        return self.uses_features or self.locates_blocks

    def action_dim(self, spec) -> int:
        return spec.action_dim if self.control == "joint" else TASK_ACTION_DIM

    def feature_dim(self, spec) -> int:
        """Length of the model's block-feature vector (the spec's block poses, transformed)."""
        return spec.feature_dim if self.control == "joint" else len(spec.blocks) * TASK_BLOCK_DIM

    # how the network is run, not what it is: checkpoints that differ only here are interchangeable
    EXECUTION_FIELDS = ("input_chunk",)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the weights (to_dict without EXECUTION_FIELDS)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model config") -> "PACConfig":
        return load(cls, data, where)

    def replace(self, **kw: Any) -> "PACConfig":
        return dataclasses.replace(self, **kw)


# Sizes: tiny trains on a 2-core CPU; xl is ~1B parameters (the paper's largest scale).
PRESETS: dict[str, PACConfig] = {
    "tiny": PACConfig(width=128, heads=4, n_latents=32, n_self_blocks=4),
    "small": PACConfig(width=256, heads=8, n_latents=64, n_self_blocks=6),
    "base": PACConfig(width=512, heads=8, n_latents=128, n_self_blocks=8, n_decoder_blocks=2),
    "large": PACConfig(width=1024, heads=16, n_latents=256, n_self_blocks=16, n_cross_blocks=2,
                       n_decoder_blocks=2),
    "xl": PACConfig(width=2048, heads=16, n_latents=256, n_self_blocks=14, n_cross_blocks=2,
                    n_decoder_blocks=2),
}


def preset(name: str, **overrides: Any) -> PACConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    check(PACConfig, overrides, "model")
    return PRESETS[name].replace(**overrides)
