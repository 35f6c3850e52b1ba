"""Expert data collection in the simulated stacking world (ROS-free).

``collect`` runs the scripted expert at chosen quality knobs for N seeded episodes
and commits each one into an episode dataset, exactly as the recorder would.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from pac_ros.data import DatasetWriter
from pac_ros.sim.env import StackingEnv
from pac_ros.sim.expert import PRESETS, ExpertConfig, ScriptedExpert
from pac_ros.spec import Spec, default_spec

# Blends of expert qualities (weights sum to 1). "mixed" is the paper's sub-optimal
# setting: mostly poor and noisy demonstrations, some good ones (~30% success).
MIXES: dict[str, dict[str, float]] = {
    "mixed": {"perfect": 0.05, "noisy": 0.10, "poor": 0.85},
    # sub-optimal the way a learner can fix: the most common behaviour is a consistent mistake
    # (roles swapped), so imitating the majority fails; the reward says which episodes worked
    "suboptimal": {"perfect": 0.25, "noisy": 0.05, "swapped": 0.70},
    # the same mistake with few successes (~10%): too few to imitate alone, while the failures still
    # show every motion the task needs
    "scarce": {"perfect": 0.08, "noisy": 0.02, "swapped": 0.90},
}


@dataclass
class EpisodeResult:
    episode_index: int
    seed: int
    quality: str
    instruction: str
    success: bool
    length: int
    ret: float


@dataclass
class CollectSummary:
    episodes: list[EpisodeResult]
    wall_s: float
    total_steps: int
    size_bytes: int

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * len(self.episodes) / max(self.wall_s, 1e-9)

    def lines(self) -> list[str]:
        n = len(self.episodes)
        return [
            f"episodes:         {n}",
            f"success rate:     {self.success_rate:.1%} ({sum(e.success for e in self.episodes)}/{n})",
            f"steps:            {self.total_steps}",
            f"size on disk:     {self.size_bytes / 1e6:.2f} MB "
            f"({self.size_bytes / max(self.total_steps, 1):.0f} bytes/step)",
            f"wall time:        {self.wall_s:.1f} s ({self.episodes_per_minute:.1f} episodes/min)",
        ]


def quality_names() -> list[str]:
    return sorted(set(PRESETS) | set(MIXES))


def pick_quality(quality: str, rng: np.random.Generator) -> str:
    """The expert preset for one episode: the preset itself, or a draw from a mix."""
    if quality in MIXES:
        names = list(MIXES[quality])
        weights = np.array([MIXES[quality][n] for n in names])
        return names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if quality not in PRESETS:
        raise ValueError(f"unknown expert quality {quality!r}; choose from {quality_names()}")
    return quality


def run_expert_episode(
    env: StackingEnv,
    expert: ScriptedExpert,
    seed: int,
    writer: DatasetWriter | None = None,
    metadata: Mapping | None = None,
    instruction: str | None = None,
    end_after_attempt: int | None = None,
) -> tuple[bool, int, float]:
    """One seeded expert episode; committed to ``writer`` when given (see run_episode).

    ``end_after_attempt``: end the episode (a truncation) once the expert has released its
    stack and spent this many steps backing off, as an operator resets a finished attempt;
    None records until the spec's max_episode_steps."""
    retreating = 0

    def finished() -> bool:
        nonlocal retreating
        retreating = retreating + 1 if expert.phase == "retreat" else 0
        return end_after_attempt is not None and retreating >= end_after_attempt

    return run_episode(env, lambda obs: expert.act(), seed, writer, metadata, instruction, source="expert",
                       on_reset=expert.reset, stop=finished)


def run_episode(
    env: StackingEnv,
    act: Callable[[Mapping], np.ndarray],
    seed: int,
    writer: DatasetWriter | None = None,
    metadata: Mapping | None = None,
    instruction: str | None = None,
    source: str = "expert",
    checkpoint: str | None = None,
    on_reset: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
    label: Callable[[Mapping], np.ndarray] | None = None,
) -> tuple[bool, int, float]:
    """One seeded episode driven by ``act(obs) -> joint command``; committed to ``writer`` when given.
    ``on_reset`` runs right after the scene is reset (an expert reads the new scene); ``stop``
    after each step ends the episode early when it returns True (recorded as a truncation).
    ``label(obs)``, called before ``act``: the command recorded instead of the one executed
    (DAgger: an expert labels the states a learner visits).

    Each row pairs an observation with the (safe) command computed from it; the
    last row holds the final observation (RLDS convention, see docs/dataset.md).
    Returns (success, steps, return).
    """
    spec = env.spec
    obs = env.reset(seed=seed, instruction=instruction)
    if on_reset is not None:
        on_reset()
    episode = None
    if writer is not None:
        episode = writer.begin_episode(
            instruction=obs["instruction"], source=source, checkpoint=checkpoint, seed=seed,
            metadata=dict(metadata or {})
        )
    ret, steps, terminated, success = 0.0, 0, False, False
    while True:
        stamp = float(env.data.time)
        recorded = None if label is None else spec.safe_command(label(obs), obs["joint_positions"])
        command = spec.safe_command(act(obs), obs["joint_positions"])
        next_obs, reward, terminated, truncated, info = env.step(command)
        if episode is not None:
            episode.add_step(
                timestamp=stamp,
                joint_positions=obs["joint_positions"],
                images=obs["images"],
                action=command if recorded is None else recorded,
                reward=reward,
                features=obs["features"],
            )
        ret += float(reward)
        steps += 1
        success = bool(info["success"]) or success
        obs = next_obs
        if terminated or truncated or (stop is not None and stop()):
            break
    if episode is not None:
        hold = spec.safe_command(obs["joint_positions"], obs["joint_positions"])
        episode.add_step(
            timestamp=float(env.data.time),
            joint_positions=obs["joint_positions"],
            images=obs["images"],
            action=hold,
            reward=0.0,
            features=obs["features"],
        )
        writer.commit(episode, terminal=bool(terminated), success=success)
    return success, steps, ret


def record_episodes(out: str | Path, episodes: int, seed: int, spec: Spec,
                    run_one: Callable[[StackingEnv, DatasetWriter, int, int], EpisodeResult],
                    progress: Callable[[EpisodeResult], None] | None = None) -> CollectSummary:
    """Seeded episodes (seeds seed, seed+1, ...) committed into ``out`` with every spec camera;
    ``run_one(env, writer, episode_index, seed)`` runs and commits one."""
    env = StackingEnv(spec, render=True)
    results: list[EpisodeResult] = []
    start = time.perf_counter()
    try:
        with DatasetWriter(out, spec, features=True) as writer:
            first_index = writer.num_episodes
            for i in range(episodes):
                result = run_one(env, writer, first_index + i, seed + i)
                results.append(result)
                if progress is not None:
                    progress(result)
    finally:
        env.close()
    wall = time.perf_counter() - start
    from pac_ros.data import Dataset

    return CollectSummary(results, wall, sum(e.length + 1 for e in results), Dataset(out, spec).size_bytes())


def collect(
    out: str | Path,
    episodes: int,
    quality: str = "mixed",
    seed: int = 0,
    spec: Spec | None = None,
    overrides: Mapping[str, float] | None = None,
    progress: Callable[[EpisodeResult], None] | None = None,
    end_after_attempt: int | None = None,
) -> CollectSummary:
    """Run ``episodes`` seeded expert episodes (seeds seed, seed+1, ...) into ``out``
    (``end_after_attempt``: see run_expert_episode)."""

    def run_one(env, writer, index, ep_seed):
        name = pick_quality(quality, np.random.default_rng([ep_seed, 7919]))
        config = dataclasses.replace(ExpertConfig.preset(name), **dict(overrides or {}))
        expert = ScriptedExpert(env, config, seed=ep_seed)
        meta = {"quality": name, "mix": quality, "expert": dataclasses.asdict(config),
                "end_after_attempt": end_after_attempt}
        success, steps, ret = run_expert_episode(env, expert, ep_seed, writer, meta,
                                                 end_after_attempt=end_after_attempt)
        return EpisodeResult(index, ep_seed, name, env.instruction, success, steps, ret)

    return record_episodes(out, episodes, seed, spec or default_spec(), run_one, progress)


def record_policy_episodes(checkpoint: str | Path, out: str | Path, episodes: int, seed: int = 0,
                           decoding: str = "greedy", spec: Spec | None = None) -> CollectSummary:
    """A checkpoint's own seeded episodes in sim, committed into ``out`` as the recorder
    would (source "policy", the checkpoint in the metadata): the in-process data loop."""
    from pac_ros.checkpoint import resolve
    from pac_ros.policy import Policy

    spec = spec or default_spec()
    policy = Policy.load(checkpoint, spec=spec, device="auto", decoding=decoding, seed=seed)
    ckpt = str(resolve(checkpoint))

    def run_one(env, writer, index, ep_seed):
        success, steps, ret = run_episode(env, lambda obs: policy.act(obs)[0], ep_seed, writer,
                                          {"decoding": decoding}, source="policy", checkpoint=ckpt,
                                          on_reset=policy.reset)
        return EpisodeResult(index, ep_seed, "policy", env.instruction, success, steps, ret)

    return record_episodes(out, episodes, seed, spec, run_one)


def collect_dagger(checkpoint: str | Path, out: str | Path, episodes: int, seed: int = 0, beta: float = 0.5,
                   decoding: str = "greedy", spec: Spec | None = None,
                   progress: Callable[[EpisodeResult], None] | None = None) -> CollectSummary:
    """DAgger (Ross et al., 2011): a checkpoint drives seeded episodes (the perfect expert instead,
    with probability ``beta`` per step), and every row is labelled with the perfect expert's command
    at the visited state. Episodes have source "dagger"; their rewards and outcomes are those of
    what was executed, so they are imitation data, not RL data."""
    from pac_ros.checkpoint import resolve
    from pac_ros.policy import Policy

    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    spec = spec or default_spec()
    policy = Policy.load(checkpoint, spec=spec, device="auto", decoding=decoding, seed=seed)
    ckpt = str(resolve(checkpoint))
    mix = np.random.default_rng([seed, 4243])

    def run_one(env, writer, index, ep_seed):
        expert = ScriptedExpert(env, ExpertConfig(), seed=ep_seed)
        last: dict[str, np.ndarray] = {}

        def label(obs):
            last["command"] = expert.act()
            return last["command"]

        def act(obs):
            return last["command"] if mix.random() < beta else policy.act(obs)[0]

        meta = {"beta": beta, "decoding": decoding, "labels": "perfect expert"}
        success, steps, ret = run_episode(env, act, ep_seed, writer, meta, source="dagger", checkpoint=ckpt,
                                          on_reset=lambda: (expert.reset(), policy.reset()), label=label)
        return EpisodeResult(index, ep_seed, "dagger", env.instruction, success, steps, ret)

    return record_episodes(out, episodes, seed, spec, run_one, progress)
