"""Offline transitions from an episode dataset, for the learner.

Rows 0..T-2 of every episode are transitions (s_t, a_t, r_t, s_{t+1}); the last row
is only a next observation (RLDS). discount = γ·(1 − is_terminal[t+1]): a true end
does not bootstrap, a truncation does (``truncation="terminal"``: no episode end bootstraps,
for data whose episodes end once their outcome is decided, e.g. ``collect --end-after-attempt``).
Transitions never cross episodes. With ``n_step`` > 1 a transition carries
R = Σ_{i<k} γ^i r_{t+i}, the row s_{t+k} and the discount γ^k·(1 − is_terminal[t+k]),
k = min(n, rows left in the episode).

Images are cached once as uint8 numpy memmaps at the model's resolution, keyed by
the dataset fingerprint (``<cache_dir>/<fingerprint>-<cam>-<H>x<W>.u8``). Sampling is
stateless: batch ``step`` of rank ``r`` is drawn from a generator seeded by
(seed, rank, step), so a resumed run draws exactly the batches it would have.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..control import Control
from ..model import PACConfig, tokenize
from ..spec import Spec


def _resize(images: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 [T,H,W,C] -> uint8 [T,h,w,C] (antialiased bilinear, as the model does)."""
    if images.shape[1:3] == hw:
        return images
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def episode_time(store: "TransitionStore") -> tuple[np.ndarray, np.ndarray]:
    """(episode number, time step within it) of every transition, in store order."""
    episode = np.searchsorted(store.episode_starts, store.index, side="right") - 1
    return episode, store.index - store.episode_starts[episode]


class TransitionStore:
    """All transitions of a dataset in memory (low-dim) and memmaps (images)."""

    def __init__(self, dataset, model_config: PACConfig, gamma: float, cache_dir: str | Path | None = None,
                 num_episodes: int | None = None, log=print, n_step: int = 1, truncation: str = "bootstrap"):
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if truncation not in ("bootstrap", "terminal"):
            raise ValueError(f"truncation must be bootstrap or terminal, got {truncation!r}")
        self.spec: Spec = dataset.spec
        self.config, self.gamma, self.n_step = model_config, gamma, n_step
        n_eps = len(dataset) if num_episodes is None else min(num_episodes, len(dataset))
        if n_eps == 0:
            raise ValueError(f"dataset {getattr(dataset, 'root', '')} has no episodes")
        self.needs_features = model_config.block_tokens or model_config.aux_features
        if self.needs_features and not getattr(dataset, "has_features", True):
            why = (f"obs_mode {model_config.obs_mode!r}" if model_config.uses_features
                   else "the block locator's training" if model_config.locates_blocks else "aux_features")
            raise ValueError(f"{why} needs block features; dataset "
                             f"{getattr(dataset, 'root', '')} was recorded without them")
        self.fingerprint = dataset.fingerprint() + ("" if num_episodes is None else f"-n{n_eps}")
        self.control = Control(model_config, self.spec)
        joints, actions, rewards, terminal, feats, tokens, starts, lengths = [], [], [], [], [], [], [], []
        # the blocks' positions in spec order: the target of keypoint-stem pretraining (learning/stem.py)
        locate = model_config.freeze_stem and getattr(dataset, "has_features", True)
        poses, instructions, successes = [], [], []
        row = 0
        for i in range(n_eps):
            ep = dataset.load_episode(i, images=False)
            T = len(ep.timestamp)
            joints.append(ep.joint_positions.astype(np.float32))
            actions.append(self.control.action_labels(ep.joint_positions, ep.actions))
            rewards.append(ep.rewards.astype(np.float32))
            terminal.append(ep.is_terminal.astype(bool))
            if self.needs_features:
                feats.append(self.control.features(ep.joint_positions, ep.features, ep.instructions))
            if locate or model_config.locates_blocks:  # stem/locator targets (the locator's estimates replace them)
                poses.append(np.asarray(ep.features, np.float64).reshape(T, -1, 7))
                instructions.extend(ep.instructions)
            cache: dict[str, np.ndarray] = {}
            tokens.append(np.stack([cache.setdefault(s, tokenize(s, model_config.max_instruction_len))
                                    for s in ep.instructions]))
            successes.append(ep.meta.get("success"))
            if model_config.outcome_token and successes[-1] is None:
                raise ValueError(f"outcome_token needs each episode's outcome; episode {ep.episode_index} of "
                                 f"{getattr(dataset, 'root', '')} records no success")
            starts.append(row)
            lengths.append(T)
            row += T
        self.n_rows = row
        self.joints = np.concatenate(joints)
        self.actions = np.concatenate(actions)
        self.rewards = np.concatenate(rewards)
        self.terminal = np.concatenate(terminal)
        if truncation == "terminal":  # every episode's outcome is final: its last row earns nothing more
            self.terminal[np.asarray(starts) + np.asarray(lengths) - 1] = True
        self.features = np.concatenate(feats) if feats else None
        self.block_poses = np.concatenate(poses) if poses else None  # [N, blocks, 7], spec order
        self.instructions = instructions
        # each episode's recorded outcome (None unless every episode records one): value-draw diagnostics, and
        # with outcome_token (success-conditioned BC) every row carries its episode's as an input
        self.episode_success = (None if any(s is None for s in successes)
                                else np.asarray([bool(s) for s in successes]))
        self.outcomes = (np.repeat(self.episode_success.astype(np.int64), lengths) if model_config.outcome_token
                         else None)
        self.episode_starts = np.asarray(starts)
        self.keypoints: dict[str, np.ndarray] = {}  # cache_keypoints: a frozen stem's output per row
        self.tokens = np.concatenate(tokens)
        # transition t -> t+1 inside each episode
        self.index = np.concatenate([np.arange(s, s + T - 1) for s, T in zip(starts, lengths) if T > 1])
        if len(self.index) == 0:
            raise ValueError("dataset has no transitions (every episode has a single row)")
        self._n_step_targets(np.asarray(starts), np.asarray(lengths))
        self.n_episodes = n_eps
        self.images: dict[str, np.ndarray] = {}
        if model_config.uses_images:
            cache_dir = Path(cache_dir) if cache_dir else Path(dataset.root) / ".cache"
            self.images = self._image_cache(dataset, n_eps, cache_dir, log)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def block_positions(self) -> np.ndarray | None:
        """The blocks' positions [N, 3·blocks] in spec order: the keypoint stem's pretraining target."""
        if self.block_poses is None:
            return None
        return self.block_poses[..., :3].reshape(self.n_rows, -1).astype(np.float32)

    def _n_step_targets(self, starts: np.ndarray, lengths: np.ndarray) -> None:
        """Per transition: the n-step return ``n_return``, its bootstrap row ``n_next`` and
        ``n_discount`` (see the module docstring)."""
        last = np.repeat(starts + lengths - 1, lengths)[self.index]  # each transition's final row
        rows = self.index
        ret = np.zeros(len(rows), np.float64)
        k = np.zeros(len(rows), np.int64)
        for i in range(self.n_step):
            live = rows + i < last
            ret[live] += self.gamma ** i * self.rewards[rows[live] + i]
            k += live
        self.n_next = rows + k
        self.n_return = ret.astype(np.float32)
        self.n_discount = (self.gamma ** k * (1.0 - self.terminal[self.n_next])).astype(np.float32)
        # Monte-Carlo discounted return to the episode's end (0 after a truncation)
        g = np.zeros(self.n_rows, np.float64)
        for s, T in zip(starts, lengths):
            acc = 0.0
            for t in range(s + T - 2, s - 1, -1):
                acc = self.rewards[t] + self.gamma * acc
                g[t] = acc
        self.returns_to_go = g[self.index].astype(np.float32)

    def return_histogram(self, support: torch.Tensor) -> torch.Tensor:
        """The data's Monte-Carlo returns as a distribution over ``support`` (each return
        split between its two neighbouring atoms, as the critic's projection does)."""
        from .losses import categorical_projection

        g = torch.from_numpy(self.returns_to_go).double()
        point = torch.zeros(len(g), support.shape[0], dtype=torch.float64)
        point[:, 0] = 1.0  # r + 0·z lands on r itself
        return categorical_projection(point, g, torch.zeros_like(g), support.double()).mean(0)

    # ---- image cache --------------------------------------------------------------
    def _image_cache(self, dataset, n_eps: int, cache_dir: Path, log) -> dict[str, np.ndarray]:
        cache_dir.mkdir(parents=True, exist_ok=True)
        size = self.config.image_size
        shapes = {c.name: ((size, size) if size else (c.height, c.width), c.channels) for c in self.spec.cameras}
        files = {cam: cache_dir / f"{self.fingerprint}-{cam}-{hw[0]}x{hw[1]}.u8" for cam, (hw, _) in shapes.items()}
        done = {cam: f.with_suffix(".json") for cam, f in files.items()}
        if not all(f.is_file() and done[c].is_file() for c, f in files.items()):
            log(f"building image cache in {cache_dir} ({self.n_rows} rows)")
            pid = os.getpid()
            tmp = {cam: f.with_name(f.name + f".tmp-{pid}") for cam, f in files.items()}
            maps = {cam: np.lib.format.open_memmap(tmp[cam], mode="w+", dtype=np.uint8,
                                                   shape=(self.n_rows, *hw, ch))
                    for cam, (hw, ch) in shapes.items()}
            row = 0
            for i in range(n_eps):
                ep = dataset.load_episode(i, images=True)
                T = len(ep.timestamp)
                for cam, (hw, _) in shapes.items():
                    maps[cam][row:row + T] = _resize(ep.images[cam], hw)
                row += T
            for cam, m in maps.items():
                m.flush()
                del m
                os.replace(tmp[cam], files[cam])
                done[cam].write_text(json.dumps({"rows": self.n_rows, "shape": list(shapes[cam][0])}))
        out = {}
        for cam, f in files.items():
            arr = np.load(f, mmap_mode="r")
            if arr.shape[0] != self.n_rows:
                raise ValueError(f"{f}: image cache has {arr.shape[0]} rows, dataset {self.n_rows}; delete it")
            out[cam] = arr
        return out

    # ---- sampling -----------------------------------------------------------------
    def obs(self, rows: np.ndarray) -> dict[str, Any]:
        o: dict[str, Any] = {
            "joint_positions": torch.from_numpy(self.joints[rows]),
            "instruction_tokens": torch.from_numpy(self.tokens[rows]),
        }
        if self.keypoints:
            o["keypoints"] = {cam: torch.from_numpy(k[rows]) for cam, k in self.keypoints.items()}
        elif self.images and not self.config.locates_blocks:  # a locator model's batches carry its estimates
            o["images"] = {cam: torch.from_numpy(np.ascontiguousarray(m[rows])) for cam, m in self.images.items()}
        if self.features is not None:
            o["features"] = torch.from_numpy(self.features[rows])
        if self.outcomes is not None:
            o["outcome"] = torch.from_numpy(self.outcomes[rows])
        return o

    @torch.no_grad()
    def cache_keypoints(self, model, chunk: int = 512) -> None:
        """Run ``model``'s (frozen) keypoint stem once over every row's images; batches then carry
        the keypoints instead of the images (the same network function, a fraction of the cost)."""
        if not model.keypoint_stem or not self.images:
            raise ValueError("caching keypoints needs a keypoints image stem and images in the dataset")
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = {cam: np.empty((self.n_rows, model.config.n_keypoints, 2), np.float32) for cam in self.images}
        for start in range(0, self.n_rows, chunk):
            rows = np.arange(start, min(start + chunk, self.n_rows))
            images = {cam: torch.from_numpy(np.ascontiguousarray(m[rows])).to(device) for cam, m in self.images.items()}
            for cam, kp in model.keypoints(images).items():
                out[cam][rows] = kp.float().cpu().numpy()
        model.train(was_training)
        self.keypoints = out

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """Transitions ``idx`` (positions in ``self.index``) as a learner batch."""
        idx = np.asarray(idx)[np.argsort(self.index[idx], kind="stable")]  # sorted reads from the memmaps
        rows = self.index[idx]
        return {
            "obs": self.obs(rows), "next_obs": self.obs(self.n_next[idx]),
            "action": torch.from_numpy(self.actions[rows]), "reward": torch.from_numpy(self.n_return[idx]),
            "next_action": torch.from_numpy(self.actions[self.n_next[idx]]),
            "discount": torch.from_numpy(self.n_discount[idx]),
        }

    def successful_transitions(self) -> np.ndarray:
        """Positions (in ``self.index``) of the transitions of the episodes that record a success."""
        if self.episode_success is None:
            raise ValueError("the successful episodes' transitions need every episode's recorded outcome; "
                             "some episodes of this dataset record none")
        positions = np.flatnonzero(self.episode_success[episode_time(self)[0]])
        if len(positions) == 0:
            raise ValueError(f"no episode of the {self.n_episodes} loaded records a success")
        return positions

    def sample(self, batch_size: int, step: int, seed: int = 0, rank: int = 0) -> dict[str, Any]:
        rng = np.random.default_rng([seed, rank, step])
        return self.batch(rng.integers(0, len(self.index), batch_size))

    def sample_from(self, positions: np.ndarray, batch_size: int, step: int, seed: int = 0,
                    rank: int = 0) -> dict[str, Any]:
        """A batch drawn uniformly from ``positions`` (in ``self.index``): stateless like ``sample``,
        on a stream of its own."""
        return self.batch(np.random.default_rng([seed, rank, step, 2]).choice(positions, batch_size))

    def stats(self) -> dict[str, float]:
        r = self.rewards[self.index]
        return {"episodes": self.n_episodes, "rows": self.n_rows, "transitions": len(self.index),
                "reward_mean": float(r.mean()), "reward_max": float(r.max()),
                "return_to_go_mean": float(self.returns_to_go.mean()), "n_step": self.n_step,
                "terminal_frac": float(self.terminal.mean())}
