"""Offline-RL peers from d3rlpy (BC, IQL, CQL, TD3+BC) on our datasets, evaluated by our harness.

d3rlpy is a test/bench dependency only (``pip install d3rlpy``). The peers see state
features, no images: joint positions, the block features exactly as PAC's ``control``
builds them (role-ordered, grip-relative) and the instruction as a one-hot over the
task's instructions. Their actions are the same labels PAC learns (the Control's
normalised actions, continuous in [-1, 1]), and the same Control turns them into joint
commands, so the comparison differs only in the learner.
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np

from pac_ros.control import Control
from pac_ros.model import PACConfig
from pac_ros.spec import Spec

ALGOS = ("bc", "iql", "cql", "td3+bc")


class PeerFeatures:
    """Observation -> the peers' flat state vector."""

    def __init__(self, model_config: PACConfig, spec: Spec):
        self.control = Control(model_config, spec)
        self.instructions = spec.instructions()
        self.index = {s: i for i, s in enumerate(self.instructions)}

    def one_hot(self, instructions) -> np.ndarray:
        out = np.zeros((len(instructions), len(self.instructions)), np.float32)
        for row, s in enumerate(instructions):
            if s not in self.index:
                raise ValueError(f"instruction {s!r} is not one of the task's {len(self.instructions)}")
            out[row, self.index[s]] = 1.0
        return out

    def __call__(self, joints: np.ndarray, poses: np.ndarray, instructions) -> np.ndarray:
        joints = np.asarray(joints, np.float32).reshape(len(instructions), -1)
        feats = self.control.features(joints, np.asarray(poses).reshape(len(instructions), -1), list(instructions))
        return np.concatenate([joints, feats.astype(np.float32), self.one_hot(instructions)], axis=1)


def to_mdp_dataset(dataset, features: PeerFeatures, num_episodes: int | None = None):
    """Our episodes as a d3rlpy MDPDataset: rows 0..T-2 are transitions; the last one is
    terminal when the episode ended in success, a timeout otherwise."""
    import d3rlpy

    obs, act, rew, term, tout = [], [], [], [], []
    n = len(dataset) if num_episodes is None else min(num_episodes, len(dataset))
    for i in range(n):
        ep = dataset.load_episode(i, images=False)
        T = len(ep.timestamp)
        if T < 2:
            continue
        x = features(ep.joint_positions, ep.features, ep.instructions)
        a = features.control.action_labels(ep.joint_positions, ep.actions)
        obs.append(x[:T - 1])
        act.append(a[:T - 1].astype(np.float32))
        rew.append(ep.rewards[:T - 1].astype(np.float32))
        end_term = bool(ep.is_terminal[-1])
        t = np.zeros(T - 1, np.float32)
        o = np.zeros(T - 1, np.float32)
        (t if end_term else o)[-1] = 1.0
        term.append(t)
        tout.append(o)
    return d3rlpy.dataset.MDPDataset(np.concatenate(obs), np.concatenate(act), np.concatenate(rew),
                                     np.concatenate(term), np.concatenate(tout),
                                     action_space=d3rlpy.constants.ActionSpace.CONTINUOUS)


def make_algo(name: str, batch_size: int = 256, seed: int = 0):
    import logging

    import d3rlpy
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # d3rlpy's info lines

    d3rlpy.seed(seed)
    if name == "bc":
        cfg = d3rlpy.algos.BCConfig(batch_size=batch_size)
    elif name == "iql":  # expectile 0.7 and temperature 3 as in the IQL paper's locomotion/kitchen settings
        cfg = d3rlpy.algos.IQLConfig(batch_size=batch_size, expectile=0.7, weight_temp=3.0)
    elif name == "cql":
        cfg = d3rlpy.algos.CQLConfig(batch_size=batch_size, conservative_weight=5.0)
    elif name == "td3+bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(batch_size=batch_size, alpha=2.5)
    else:
        raise ValueError(f"unknown peer {name!r}; choose from {ALGOS}")
    return cfg.create(device="cpu:0")


class PeerPolicy:
    """A trained d3rlpy algorithm behind the interface ``pac_ros.evaluate`` drives."""

    def __init__(self, algo, features: PeerFeatures, spec: Spec):
        self.algo, self.features, self.spec = algo, features, spec
        self.model = SimpleNamespace(config=SimpleNamespace(uses_images=False))  # what evaluate() reads

    def reset(self) -> None:
        """A new episode: nothing to forget (the d3rlpy policies here are memoryless)."""

    def act(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        current = np.asarray(obs["joint_positions"], dtype=np.float64).reshape(-1)
        x = self.features(current[None], np.asarray(obs["features"])[None], [obs["instruction"]])
        a = np.clip(np.asarray(self.algo.predict(x))[0].astype(np.float64), -1.0, 1.0)
        command = self.spec.safe_command(self.features.control.command(a, current), current)
        return command, {"latency_ms": (time.perf_counter() - t0) * 1e3, "action": a}


def train_and_evaluate(name: str, data_root: str | Path, model_config: PACConfig, steps: int, episodes: int,
                       eval_seed: int, seed: int = 0, batch_size: int = 256) -> dict:
    """Train peer ``name`` for ``steps`` gradient steps and evaluate it on seeded sim episodes."""
    from d3rlpy.logging import NoopAdapterFactory

    from pac_ros.data import Dataset
    from pac_ros.evaluate import evaluate

    ds = Dataset(data_root)
    feats = PeerFeatures(model_config, ds.spec)
    mdp = to_mdp_dataset(ds, feats)
    algo = make_algo(name, batch_size, seed)
    t0 = time.perf_counter()
    algo.fit(mdp, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, save_interval=10 ** 9,
             logger_adapter=NoopAdapterFactory())
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = evaluate(PeerPolicy(algo, feats, ds.spec), episodes, eval_seed, ds.spec)
    out = r.scalars()
    out.update(successes=int(sum(r.successes)), episodes=r.n, eval_s=time.perf_counter() - t0, train_s=train_s,
               steps=steps, seed=seed, algo=name, batch_size=batch_size)
    return out
