"""Learner and training configuration, loadable from YAML (unknown keys are errors)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config_loader import check_choices, load
from ..errors import PacRosError
from ..model.config import PACConfig, preset
from ..seeds import EVAL_SEED


class ConfigError(PacRosError, ValueError):
    """A config file or dict with unknown keys or bad values."""


@dataclass
class LearnerConfig:
    gamma: float = 0.99  # ours (docs/method.md)
    # critic's initial return distribution: the data's return histogram | uniform (ours)
    q_init: Literal["returns", "uniform"] = "returns"
    n_step: int = 1  # n-step TD targets (1 = one-step TD); longer carries sparse rewards back faster
    # an episode that ends without a terminal state: bootstrap its last state's value (a time limit) |
    # terminal (its outcome is final, as when collection ends an episode once the attempt is judged; ours)
    truncation: Literal["bootstrap", "terminal"] = "bootstrap"
    eta: float = 0.1  # temperature of w = softmax(Q/η), in return units (ours); initial value if learned
    eta_kl: float | None = None  # None: η fixed; else learn η by the MPO dual with this KL bound ε (≈ 0.1)
    eta_lr: float = 1e-3  # learning rate of log η under the dual (ours)
    n_action_samples: int = 16  # N samples a'_j ~ π_θ'(·|s) for the improved policy
    # a' at s' in the critic's target: policy (a' ~ π_θ', paper) | data (in-sample)
    critic_target: Literal["policy", "data"] = "policy"
    # false: the critic's (and gap term's) loss trains only the Q decoder, on the encoder's latents detached,
    # and each side's gradient is clipped on its own; the actor alone shapes the shared encoder (ours; paper: true)
    critic_trains_encoder: bool = True
    conservative: float = 0.0  # weight of E[Q(s,a'~π_θ')] − Q(s,a_data) in the loss (CQL-style; ours, 0 = off)
    # π_imp ∝ π_ref·exp(Q/η): target (π_θ', paper) | online (π_θ, ours)
    improvement_reference: Literal["target", "online"] = "target"
    # π_imp estimated on a'_j ~ π_ref (paper) | on the data's actions (ours)
    improvement_actions: Literal["samples", "data"] = "samples"
    # with improvement_actions data: advantage (per state) | value (across states)
    data_weighting: Literal["advantage", "value"] = "advantage"
    n_target_samples: int = 1  # a' ~ π_θ'(·|s') per transition for the critic target (ours)
    # with value weighting: the improvement term's own batch, drawn ∝ exp(Q_θ'(s,a)/η) over the whole
    # dataset (value; every transition's Q refreshed each priority_every steps), instead of weighting
    # the shared uniform batch (same): the same π_imp, estimated from B samples rather than ~ESS·B (ours);
    # path (with advantage weighting): drawn ∝ the per-state π_imp's importance weight along the episode
    # up to the transition (ours; learning/train.py ValuePriority); step (with value weighting): ∝ exp(Q/η)
    # within each episode time step, every time step keeping its share of the data (ours)
    actor_batch: Literal["same", "value", "step", "path"] = "same"
    # with value weighting: Q above this counts as this, so every action at least this likely to succeed
    # (γ 1, reward 1 at success) is drawn alike, wherever in its episode (ours; None: no cap)
    value_cap: float | None = None
    priority_every: int = 250
    # the α-weighted behaviour-cloning term's data: the shared uniform batch over every transition (all,
    # paper) | a batch of its own drawn uniformly from the successful episodes' transitions (success: the
    # success filter's data as the behaviour prior, the critic still learning from all of it; ours)
    bc_data: Literal["all", "success"] = "all"
    alpha_start: float = 1.0  # α schedule: BC (α=1) -> final α (paper sec. 3)
    alpha_final: float = 0.5
    alpha_warmup_steps: int = 0  # steps held at alpha_start
    alpha_decay_steps: int = 0  # linear decay steps after the warm-up
    # steps in which the policy loss is off and only the critic (with the encoder) learns, so the actor's
    # first improvement batches come from a trained critic and it never imitates the data unweighted (ours;
    # paper: 0). The α schedule counts from step 0 regardless.
    critic_warmup_steps: int = 0
    beta: float = 1.0  # L = L_π + β L_Q
    target_update: Literal["polyak", "hard"] = "polyak"
    tau: float = 0.005  # polyak rate
    target_period: int = 1000  # hard copy period (steps)
    lr: float = 1e-4
    lr_warmup_steps: int = 1000
    # the linear LR warm-up counts from step 0 (start) | again from the first step the policy learns, after
    # critic_warmup_steps, for every parameter (policy), so the untrained policy starts at a small rate (ours)
    lr_warmup_from: Literal["start", "policy"] = "start"
    # after the warm-up, a cosine from lr to lr * lr_final_fraction over this many steps, then held there
    # (0: constant lr to the end), so a run's last weights are not one noisy step at the full rate (ours)
    lr_decay_steps: int = 0
    lr_final_fraction: float = 0.0
    weight_decay: float = 0.01  # ours
    adam_betas: tuple = (0.9, 0.999)
    grad_clip: float = 1.0
    # parameters: one clip over all parameters' summed gradient (per side's parameters when the critic is off
    # the encoder) | loss: the gradient of each term (policy, critic with its gap term, aux) clipped on its
    # own over all parameters, then summed, so neither term's norm scales the other's step (ours)
    grad_clip_by: Literal["parameters", "loss"] = "parameters"
    amp: Literal["auto", "bf16", "none"] = "auto"  # auto (bf16 autocast on a GPU that supports it) | bf16 | none
    aux_weight: float = 1.0  # weight of the auxiliary block-feature loss (models with aux_features)
    image_shift: int = 0  # random-shift augmentation: pixels of padding (0 = off; DrQ uses 4 at 84 px)
    image_jitter: float = 0.0  # brightness/contrast augmentation: factors in [1 - x, 1 + x] (0 = off)
    stem_steps: int = 0  # steps of keypoint-stem pretraining (freeze_stem, learning/stem.py) or of locator
    # training (image_stem: locator, learning/locator.py; with init_from it fine-tunes the loaded locator)
    stem_batch_size: int = 128
    stem_lr: float = 1e-3

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)
        check_choices(self)
        if not self.conservative >= 0:
            raise ValueError(f"conservative must be >= 0, got {self.conservative}")
        for name in ("alpha_start", "alpha_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.eta_kl is not None and not self.eta_kl > 0:
            raise ValueError(f"eta_kl must be > 0 or null, got {self.eta_kl}")
        if self.eta <= 0 or not 0 < self.tau <= 1 or self.n_action_samples < 1 or self.n_target_samples < 1:
            raise ValueError("eta > 0, 0 < tau <= 1, n_action_samples >= 1, n_target_samples >= 1 required")
        if self.aux_weight < 0 or self.image_shift < 0 or not 0 <= self.image_jitter < 1:
            raise ValueError("aux_weight >= 0, image_shift >= 0 and 0 <= image_jitter < 1 required")
        if self.actor_batch in ("value", "step") and (self.improvement_actions,
                                                      self.data_weighting) != ("data", "value"):
            raise ValueError(f"actor_batch: {self.actor_batch} resamples the data's actions by exp(Q/η): it needs "
                             "improvement_actions: data and data_weighting: value")
        if self.actor_batch == "path" and (self.improvement_actions, self.data_weighting) != ("data", "advantage"):
            raise ValueError("actor_batch: path resamples the data's actions by per-state advantage weights "
                             "along each episode: it needs improvement_actions: data and data_weighting: advantage")
        if self.value_cap is not None and not math.isfinite(self.value_cap):
            raise ValueError(f"value_cap must be a finite number or null, got {self.value_cap}")
        if self.value_cap is not None and (self.improvement_actions, self.data_weighting) != ("data", "value"):
            raise ValueError("value_cap caps the Q of value weights exp(Q/η): it needs improvement_actions: data "
                             "and data_weighting: value")
        if self.bc_data == "success" and self.alpha_start == 0.0 and self.alpha_final == 0.0:
            raise ValueError("bc_data: success draws the behaviour-cloning term's batch, but alpha_start and "
                             "alpha_final are both 0, so that term never trains")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"critic_warmup_steps must be >= 0, got {self.critic_warmup_steps}")
        if self.lr_decay_steps < 0 or not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError(f"lr_decay_steps >= 0 and 0 <= lr_final_fraction <= 1 required, got "
                             f"{self.lr_decay_steps} and {self.lr_final_fraction}")
        if self.priority_every < 1:
            raise ValueError(f"priority_every must be >= 1, got {self.priority_every}")
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {self.n_step}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")

    def alpha(self, step: int) -> float:
        """α at a step: held at alpha_start for the warm-up, then linear to alpha_final."""
        if step < self.alpha_warmup_steps:
            return self.alpha_start
        if step >= self.alpha_warmup_steps + self.alpha_decay_steps:
            return self.alpha_final
        f = min(1.0, (step - self.alpha_warmup_steps) / self.alpha_decay_steps)
        return self.alpha_start + f * (self.alpha_final - self.alpha_start)

    def policy_learns(self, step: int) -> bool:
        """Whether the policy loss trains at a step (off during the critic's warm-up)."""
        return step >= self.critic_warmup_steps

    def lr_scale(self, step: int) -> float:
        """The factor on the learning rate at a step: the linear warm-up, then the cosine decay."""
        rewarm = self.lr_warmup_from == "policy" and self.policy_learns(step)
        since = step - self.critic_warmup_steps if rewarm else step
        warm = max(1, self.lr_warmup_steps)
        if since < warm or self.lr_decay_steps == 0:
            return min(1.0, (since + 1) / warm)
        f = min(1.0, (since - warm + 1) / self.lr_decay_steps)
        return self.lr_final_fraction + (1.0 - self.lr_final_fraction) * 0.5 * (1.0 + math.cos(math.pi * f))

    def lr_at(self, step: int) -> float:
        return self.lr * self.lr_scale(step)

    @classmethod
    def from_dict(cls, data: Any, where: str = "learner") -> "LearnerConfig":
        return load(cls, data, where, ConfigError)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


@dataclass
class DataConfig:
    root: str = "data/stacking"
    spec: str | None = None  # robot spec YAML the data must match (None: the dataset's own)
    batch_size: int = 64
    cache_dir: str | None = None  # image cache (default: <root>/.cache)
    num_episodes: int | None = None  # use only the first n episodes


@dataclass
class RunConfig:
    out_dir: str = "runs/tiny"
    seed: int = 0
    steps: int = 10000
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads
    progress: bool = True
    eval_episodes: int = 0  # > 0: evaluate each checkpoint on this many seeded sim episodes
    eval_seed: int = EVAL_SEED  # first evaluation seed (pac_ros.seeds)
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning; step and optimiser fresh)
    locator_from: str | None = None  # the block locator of this checkpoint (image_stem: locator), the rest fresh


@dataclass
class TrainConfig:
    preset: str = "tiny"
    model: dict = field(default_factory=dict)  # overrides of the preset's PACConfig
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def model_config(self) -> PACConfig:
        """The preset's PACConfig with the ``model`` overrides (ValueError naming a bad one)."""
        return preset(self.preset, **self.model)

    def to_dict(self) -> dict:
        return {"preset": self.preset, "model": dict(self.model), "learner": self.learner.to_dict(),
                "data": dataclasses.asdict(self.data), "run": dataclasses.asdict(self.run)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "train config") -> "TrainConfig":
        cfg = load(cls, data, where, ConfigError)
        try:
            model = cfg.model_config()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if model.critic_encoder == "own" and not cfg.learner.critic_trains_encoder:
            raise ConfigError(f"{where}: model.critic_encoder: own needs learner.critic_trains_encoder: true "
                              "(the critic's own Perceiver would get no gradient)")
        if model.outcome_token and (cfg.learner.alpha_start, cfg.learner.alpha_final) != (1.0, 1.0):
            raise ConfigError(f"{where}: model.outcome_token (success-conditioned BC) needs learner alpha_start "
                              "and alpha_final 1: the critic would read the episode's outcome as the answer")
        if cfg.run.locator_from and not model.locates_blocks:
            raise ConfigError(f"{where}: run.locator_from needs a model with a locator (obs_mode: pixels, "
                              "image_stem: locator)")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, str(path))
