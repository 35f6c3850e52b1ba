"""The experiment's YAML (``config/experiment.yaml``): data, arms, seeds, evaluation, peers, improvement."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from pac_ros.config_loader import check_choices, load
from pac_ros.learning.config import ConfigError, TrainConfig
from pac_ros.seeds import EVAL_SEED, SELECT_SEED


@dataclass
class DataSection:
    root: str = "data/experiment_mixed"
    episodes: int = 300
    quality: str = "mixed"
    seed: int = 0
    end_after_attempt: int | None = None  # see pac_ros.collect.run_expert_episode


@dataclass
class SelectSection:
    """Each of ``arms``' training budget chosen on held-out episodes: every checkpoint its runs kept,
    with ``weights``, evaluated on ``episodes`` from ``seed``; the step with the most successes pooled
    over the training seeds (the earliest on a tie) is then evaluated on the report's episodes."""
    arms: list = field(default_factory=list)
    weights: Literal["online", "target"] = "target"
    episodes: int = 100
    seed: int = SELECT_SEED

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class EvalSection:
    episodes: int = 100
    seed: int = EVAL_SEED
    decoding: str = "greedy"
    curve_every: int = 0  # > 0: also evaluate checkpoints every this many steps (learning curves)
    curve_episodes: int = 20
    # these arms' final checkpoints also evaluated with these decodings (same episodes, every seed)
    decodings: list = field(default_factory=list)
    decoding_arms: list = field(default_factory=list)
    # these arms' final checkpoints also evaluated with their target network's weights (Polyak average)
    target_arms: list = field(default_factory=list)
    select: SelectSection = field(default_factory=SelectSection)


@dataclass
class ImproveSection:
    rounds: int = 0  # self-improvement rounds after the main runs (0: none)
    arm: str = "pac"  # the arm whose seed-0 checkpoint starts the loop
    episodes: int = 100  # own episodes recorded per round
    steps: int = 1000  # fine-tuning steps per round
    # fixed: every round fine-tunes `steps`; data: `steps` × (the round's episodes / the original data's)
    steps_scale: str = "fixed"
    through_ros: bool = True  # record through the node graph (bridge + policy + recorder); else in-process
    learner: dict = field(default_factory=dict)  # learner overrides for fine-tuning
    decoding: str = ""  # how own episodes are recorded, e.g. sample (exploration); "" = eval.decoding
    # every round, round 0 included, evaluated on these (0 / null = the eval section's)
    eval_episodes: int = 0
    eval_seed: int | None = None

    def evaluation(self, ev: EvalSection) -> EvalSection:
        """The evaluation of the rounds: the eval section's, with this section's episodes and seed."""
        return dataclasses.replace(ev, episodes=self.eval_episodes or ev.episodes,
                                   seed=ev.seed if self.eval_seed is None else self.eval_seed)


@dataclass
class PeersSection:
    algos: list = field(default_factory=list)  # d3rlpy peers, e.g. [bc, iql, cql, td3+bc] (pip install d3rlpy)
    steps: int = 5000
    batch_size: int = 256
    seeds: list = field(default_factory=lambda: [0])


@dataclass
class ExperimentConfig:
    train_config: str = "config/train_tiny.yaml"
    out_dir: str = "outputs/experiment"
    steps: int = 2000
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    model: dict = field(default_factory=dict)  # model overrides for every arm
    learner: dict = field(default_factory=dict)  # learner overrides for every arm
    run: dict = field(default_factory=dict)  # run overrides for every arm, e.g. locator_from (not out_dir/seed/steps)
    arms: dict = field(default_factory=lambda: {"bc": {"alpha_final": 1.0}, "pac": {"alpha_final": 0.1}})
    data: DataSection = field(default_factory=DataSection)
    eval: EvalSection = field(default_factory=EvalSection)
    improve: ImproveSection = field(default_factory=ImproveSection)
    peers: PeersSection = field(default_factory=PeersSection)
    threads: int | None = None
    notes: str = ""  # Markdown placed in the report under "Notes" (how the setup came about)

    @classmethod
    def from_dict(cls, d: Any, where: str = "experiment") -> "ExperimentConfig":
        cfg = load(cls, d, where, ConfigError)
        if not cfg.arms or not isinstance(cfg.arms, Mapping):
            raise ConfigError(f"{where}: arms must map arm names to learner overrides")
        owned = sorted(set(cfg.run) & {"out_dir", "seed", "steps", "progress", "eval_episodes"})
        if owned:
            raise ConfigError(f"{where}: run: {owned} are set by the experiment (out_dir, seeds, steps)")
        if not cfg.seeds or cfg.steps < 1 or cfg.eval.episodes < 1:
            raise ConfigError(f"{where}: needs seeds, steps >= 1 and eval.episodes >= 1")
        for name in cfg.arms:
            cfg.train_config_for(name, cfg.seeds[0])  # every arm's learner overrides are valid
        from pac_ros.peers import ALGOS

        unknown = sorted(set(cfg.peers.algos) - set(ALGOS))
        if unknown:
            raise ConfigError(f"{where}: peers: unknown algorithm(s) {unknown}; choose from {list(ALGOS)}")
        if cfg.improve.rounds and cfg.improve.arm not in cfg.arms:
            raise ConfigError(f"{where}: improve.arm {cfg.improve.arm!r} is not an arm ({sorted(cfg.arms)})")
        from pac_ros.policy import DECODING

        for key, decoding in (("eval.decoding", cfg.eval.decoding), ("improve.decoding", cfg.improve.decoding),
                              *(("eval.decodings", d) for d in cfg.eval.decodings)):
            if decoding and decoding not in DECODING:
                raise ConfigError(f"{where}: {key} must be one of {list(DECODING)}, got {decoding!r}")
        for key, listed in (("decoding_arms", cfg.eval.decoding_arms), ("target_arms", cfg.eval.target_arms),
                            ("select.arms", cfg.eval.select.arms)):
            unknown_arms = sorted(set(listed) - set(cfg.arms))
            if unknown_arms:
                raise ConfigError(f"{where}: eval.{key} {unknown_arms} are not arms ({sorted(cfg.arms)})")
        sel = cfg.eval.select
        if sel.arms:
            if sel.episodes < 1:
                raise ConfigError(f"{where}: eval.select.episodes must be >= 1, got {sel.episodes}")
            held_out = range(sel.seed, sel.seed + sel.episodes)
            evaluations = [("eval", cfg.eval)] + ([("improve", cfg.improve.evaluation(cfg.eval))]
                                                  if cfg.improve.rounds else [])
            for key, ev in evaluations:
                reported = range(ev.seed, ev.seed + ev.episodes)
                if held_out.start < reported.stop and reported.start < held_out.stop:
                    raise ConfigError(f"{where}: eval.select's episodes (seeds {held_out.start}..{held_out.stop - 1}) "
                                      f"overlap the {key} section's (seeds {reported.start}..{reported.stop - 1}): "
                                      "a budget chosen on them would be reported on them")
        if cfg.improve.steps_scale not in ("fixed", "data"):
            raise ConfigError(f"{where}: improve.steps_scale must be fixed or data, not {cfg.improve.steps_scale!r}")
        if cfg.improve.eval_episodes < 0:
            raise ConfigError(f"{where}: improve.eval_episodes must be >= 0")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        try:
            return cls.from_dict(yaml.safe_load(Path(path).read_text()), str(path))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # an arm's ``data``: every episode, only the successful ones, or only the perfect expert's
    DATA_SUBSETS = {"all": {}, "success": {"success": True}, "perfect": {"quality": "perfect"}}

    def data_of(self, arm: str) -> str:
        """The dataset an arm trains on: the experiment's, or a subset of its episodes copied once
        into ``<root>_<subset>``: ``success`` (success-filtered BC, the baseline an offline RL method
        must beat on sub-optimal data) or ``perfect`` (the perfect expert's episodes only)."""
        subset = (self.arms[arm] or {}).get("data", "all")
        if subset not in self.DATA_SUBSETS:
            raise ConfigError(f"arm {arm}: data must be one of {list(self.DATA_SUBSETS)}, got {subset!r}")
        return self.data.root if subset == "all" else f"{self.data.root.rstrip('/')}_{subset}"

    def seeds_of(self, arm: str) -> list:
        """The arm's training seeds: its own ``seeds`` entry (e.g. a one-seed ablation) or the experiment's."""
        return list((self.arms[arm] or {}).get("seeds") or self.seeds)

    def train_config_for(self, arm: str, seed: int, steps: int | None = None, learner: Mapping | None = None,
                         root: str | None = None, out: str | None = None) -> TrainConfig:
        """The arm's training config: the base YAML with the experiment's and the arm's overrides."""
        base = TrainConfig.load(self.train_config).to_dict()
        arm_over = dict(self.arms[arm] or {})
        arm_model = arm_over.pop("model", None) or {}  # e.g. an arm with the critic's own encoder
        if not isinstance(arm_model, Mapping):
            raise ConfigError(f"arm {arm}: model must map model config keys to values, got {arm_model!r}")
        base["model"] = {**base["model"], **self.model, **arm_model}
        arm_over.pop("seeds", None)
        arm_over.pop("data", None)
        arm_steps = arm_over.pop("steps", None)  # e.g. a longer-training arm
        if "alpha_final" in arm_over and float(arm_over["alpha_final"]) >= 1.0:  # BC: α=1 throughout
            arm_over.setdefault("alpha_start", 1.0)
        base["learner"] = {**base["learner"], **self.learner, **arm_over, **dict(learner or {})}
        base["data"]["root"] = root or self.data_of(arm)
        base["run"].update(self.run)
        base["run"].update(out_dir=out or str(Path(self.out_dir) / "runs" / f"{arm}_s{seed}"), seed=seed,
                           steps=steps or arm_steps or self.steps, progress=False, eval_episodes=0,
                           threads=self.threads or base["run"].get("threads"))
        if self.eval.curve_every:
            base["run"]["checkpoint_every"] = self.eval.curve_every
            base["run"]["keep_checkpoints"] = 0  # keep every point of the learning curve
        return TrainConfig.from_dict(base, f"{self.train_config} (arm {arm})")

