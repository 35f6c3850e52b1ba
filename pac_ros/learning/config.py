"""Learner and training configuration, loadable from YAML (unknown keys are errors)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import PacRosError
from ..model.config import PACConfig, check_field_types, preset


class ConfigError(PacRosError, ValueError):
    """A config file or dict with unknown keys or bad values."""


def _build(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    try:
        check_field_types(cls, data)
        return cls(**dict(data))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@dataclass
class LearnerConfig:
    gamma: float = 0.99  # ours (docs/method.md)
    q_init: str = "returns"  # critic's initial return distribution: the data's return histogram | uniform (ours)
    n_step: int = 1  # n-step TD targets (1 = one-step TD); longer carries sparse rewards back faster
    eta: float = 0.1  # temperature of w = softmax(Q/η), in return units (ours); initial value if learned
    eta_kl: float | None = None  # None: η fixed; else learn η by the MPO dual with this KL bound ε (≈ 0.1)
    eta_lr: float = 1e-3  # learning rate of log η under the dual (ours)
    n_action_samples: int = 16  # N samples a'_j ~ π_θ'(·|s) for the improved policy
    critic_target: str = "policy"  # a' at s' in the critic's target: policy (a' ~ π_θ', paper) | data (in-sample)
    conservative: float = 0.0  # weight of E[Q(s,a'~π_θ')] − Q(s,a_data) in the loss (CQL-style; ours, 0 = off)
    improvement_reference: str = "target"  # π_imp ∝ π_ref·exp(Q/η): target (π_θ', paper) | online (π_θ, ours)
    improvement_actions: str = "samples"  # π_imp estimated on a'_j ~ π_ref (paper) | on the data's actions (ours)
    data_weighting: str = "advantage"  # with improvement_actions data: advantage (per state) | value (across states)
    n_target_samples: int = 1  # a' ~ π_θ'(·|s') per transition for the critic target (ours)
    alpha_start: float = 1.0  # α schedule: BC (α=1) -> final α (paper sec. 3)
    alpha_final: float = 0.5
    alpha_warmup_steps: int = 0  # steps held at alpha_start
    alpha_decay_steps: int = 0  # linear decay steps after the warm-up
    beta: float = 1.0  # L = L_π + β L_Q
    target_update: str = "polyak"  # polyak | hard
    tau: float = 0.005  # polyak rate
    target_period: int = 1000  # hard copy period (steps)
    lr: float = 1e-4
    lr_warmup_steps: int = 1000
    weight_decay: float = 0.01  # ours
    adam_betas: tuple = (0.9, 0.999)
    grad_clip: float = 1.0
    amp: str = "auto"  # auto (bf16 autocast on a GPU that supports it) | bf16 | none
    aux_weight: float = 1.0  # weight of the auxiliary block-feature loss (models with aux_features)
    image_shift: int = 0  # random-shift augmentation: pixels of padding (0 = off; DrQ uses 4 at 84 px)
    image_jitter: float = 0.0  # brightness/contrast augmentation: factors in [1 - x, 1 + x] (0 = off)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)
        if self.target_update not in ("polyak", "hard"):
            raise ValueError(f"target_update must be 'polyak' or 'hard', got {self.target_update!r}")
        if not self.conservative >= 0:
            raise ValueError(f"conservative must be >= 0, got {self.conservative}")
        if self.improvement_reference not in ("target", "online"):
            raise ValueError(f"improvement_reference must be 'target' or 'online', got {self.improvement_reference!r}")
        if self.improvement_actions not in ("samples", "data"):
            raise ValueError(f"improvement_actions must be 'samples' or 'data', got {self.improvement_actions!r}")
        if self.data_weighting not in ("advantage", "value"):
            raise ValueError(f"data_weighting must be 'advantage' or 'value', got {self.data_weighting!r}")
        if self.critic_target not in ("policy", "data"):
            raise ValueError(f"critic_target must be 'policy' or 'data', got {self.critic_target!r}")
        if self.q_init not in ("returns", "uniform"):
            raise ValueError(f"q_init must be 'returns' or 'uniform', got {self.q_init!r}")
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be auto, bf16 or none, got {self.amp!r}")
        for name in ("alpha_start", "alpha_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.eta_kl is not None and not self.eta_kl > 0:
            raise ValueError(f"eta_kl must be > 0 or null, got {self.eta_kl}")
        if self.eta <= 0 or not 0 < self.tau <= 1 or self.n_action_samples < 1 or self.n_target_samples < 1:
            raise ValueError("eta > 0, 0 < tau <= 1, n_action_samples >= 1, n_target_samples >= 1 required")
        if self.aux_weight < 0 or self.image_shift < 0 or not 0 <= self.image_jitter < 1:
            raise ValueError("aux_weight >= 0, image_shift >= 0 and 0 <= image_jitter < 1 required")
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

    def lr_at(self, step: int) -> float:
        return self.lr * min(1.0, (step + 1) / max(1, self.lr_warmup_steps))

    @classmethod
    def from_dict(cls, data: Any, where: str = "learner") -> "LearnerConfig":
        return _build(cls, data, where)

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
    eval_seed: int = 100_000  # first evaluation seed (collection seeds start at 0)
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning; step and optimiser fresh)


@dataclass
class TrainConfig:
    preset: str = "tiny"
    model: dict = field(default_factory=dict)  # overrides of the preset's PACConfig
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def model_config(self) -> PACConfig:
        try:
            return preset(self.preset, **self.model)
        except TypeError as exc:
            raise ConfigError(f"model: {exc}") from exc

    def to_dict(self) -> dict:
        return {"preset": self.preset, "model": dict(self.model), "learner": self.learner.to_dict(),
                "data": dataclasses.asdict(self.data), "run": dataclasses.asdict(self.run)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "train config") -> "TrainConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        allowed = {"preset", "model", "learner", "data", "run"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        model = data.get("model") or {}
        names = {f.name for f in dataclasses.fields(PACConfig)}
        bad = sorted(set(model) - names)
        if bad:
            raise ConfigError(f"{where}: model: unknown key(s) {bad}; allowed: {sorted(names)}")
        cfg = cls(
            preset=data.get("preset", "tiny"),
            model=dict(model),
            learner=LearnerConfig.from_dict(data.get("learner"), f"{where}: learner"),
            data=_build(DataConfig, data.get("data"), f"{where}: data"),
            run=_build(RunConfig, data.get("run"), f"{where}: run"),
        )
        try:
            cfg.model_config()
        except ValueError as exc:
            raise ConfigError(f"{where}: model: {exc}") from exc
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
