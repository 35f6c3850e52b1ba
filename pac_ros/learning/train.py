"""Training loop (``train(cfg)``); the command is ``pac-ros train --config config/train_tiny.yaml``.

Seeded and exactly resumable (stateless batch sampling, optimiser/target/RNG state in
the checkpoint), tqdm progress, TensorBoard scalars, periodic checkpoints
(``<out_dir>/checkpoints/step_XXXXXXXX``, ``<out_dir>/latest`` names the newest),
data parallel under ``torchrun`` (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import CheckpointError, checkpoint_meta, load_model_state, read_meta
from ..model import PACConfig, PACModel
from ..spec import Spec
from .checkpoint import load_into_learner, save_checkpoint
from .config import TrainConfig
from .data import TransitionStore, episode_time
from .learner import Learner
from .locator import load_locator, locate_blocks, pretrain_locator
from .stem import pretrain_keypoint_stem

EvalFn = Callable[[Path, int], dict]  # (checkpoint dir, step) -> scalars, e.g. sim success rate


@contextlib.contextmanager
def _distributed(device: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device) under torchrun or alone. A process group made here is destroyed on
    the way out: left to interpreter exit, gloo's threads could abort a rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    owns_group = world > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if want_cuda else "gloo")
    try:
        rank = dist.get_rank() if dist.is_initialized() else 0
        if want_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            yield rank, world, torch.device("cuda", local)
        else:
            yield rank, world, torch.device("cpu")
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _latest(out_dir: Path) -> Path | None:
    f = out_dir / "latest"
    if not f.is_file():
        return None
    path = out_dir / "checkpoints" / f.read_text().strip()
    return path if path.is_dir() else None


def same_architecture(meta: dict, model_cfg: PACConfig) -> bool:
    """Whether a checkpoint's weights fit ``model_cfg`` (execution-only fields, and fields added
    since the checkpoint was written, at their defaults, do not count)."""
    try:
        return PACConfig.from_dict(meta["model_config"]).architecture() == model_cfg.architecture()
    except (KeyError, TypeError, ValueError):
        return False


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 63)


def _check_in_sync(learner: Learner) -> None:
    """Data parallel sanity: every rank must hold the same parameters."""
    s = torch.stack([sum(p.double().sum() for p in learner.model.parameters()),
                     sum(p.double().pow(2).sum() for p in learner.model.parameters())])
    s = s.to(learner.device)
    lo, hi = s.clone(), s.clone()
    dist.all_reduce(lo, dist.ReduceOp.MIN)
    dist.all_reduce(hi, dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"rank {dist.get_rank()}: parameters differ across ranks ({lo.tolist()} vs {hi.tolist()})")


def train(cfg: TrainConfig, resume: str | None = "auto", eval_fn: EvalFn | None = None,
          dataset=None) -> Path:
    """Train per ``cfg``; returns the final checkpoint directory."""
    with _distributed(cfg.run.device) as (rank, world, device):
        return _train(cfg, resume, eval_fn, dataset, rank, world, device)


def _train(cfg: TrainConfig, resume: str | None, eval_fn: EvalFn | None, dataset, rank: int, world: int,
           device: torch.device) -> Path:
    run = cfg.run
    if run.threads:
        torch.set_num_threads(run.threads)
    main_proc = rank == 0
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if main_proc else (lambda *a: None)
    out_dir = Path(run.out_dir)

    if dataset is None:
        from pac_ros.data import Dataset  # the dataset reader (another module of this package)

        robot = Spec.load(cfg.data.spec) if cfg.data.spec else None
        dataset = Dataset(cfg.data.root, spec=robot)
    model_cfg = cfg.model_config()
    def load_store() -> TransitionStore:
        return TransitionStore(dataset, model_cfg, cfg.learner.gamma, cfg.data.cache_dir, cfg.data.num_episodes,
                               log=log, n_step=cfg.learner.n_step, truncation=cfg.learner.truncation)

    store = load_store() if main_proc else None
    if world > 1:  # rank 0 builds the image cache first, the others then open it
        dist.barrier()
        if not main_proc:
            store = load_store()
    log(f"data: {json.dumps(store.stats())}")

    torch.manual_seed(run.seed)
    model = PACModel(model_cfg, store.spec)
    set_input_statistics(model, dataset, store, cfg.data.num_episodes, log)
    if cfg.learner.q_init == "returns" and not run.init_from:
        model.set_return_prior(store.return_histogram(model.value_support))
    learner = Learner(model, cfg.learner, device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: preset {cfg.preset} ({model_cfg.obs_mode}), {n_params / 1e6:.2f} M parameters, device {device}, "
        f"world {world}")

    start = 0
    ckpt = None
    if resume == "auto":
        ckpt = _latest(out_dir)
    elif resume:
        ckpt = Path(resume)
    if ckpt is not None:
        meta = read_meta(ckpt)
        if meta.get("dataset_fingerprint") != store.fingerprint:
            raise CheckpointError(f"{ckpt}: trained on dataset {meta.get('dataset_fingerprint')}, "
                                  f"this data is {store.fingerprint}; use a new run.out_dir")
        if not same_architecture(meta, model_cfg):
            raise CheckpointError(f"{ckpt}: model config differs from the training config")
        start = load_into_learner(ckpt, learner).step_count
        log(f"resumed from {ckpt} at step {start}")
    elif run.init_from:  # fine-tuning: the weights (and input statistics) of another run, a fresh optimiser
        meta, weights = load_model_state(run.init_from)
        if not same_architecture(meta, model_cfg):
            raise CheckpointError(f"{run.init_from}: its model config differs from the training config")
        learner.model.load_state_dict(weights)
        learner.hard_update()
        log(f"initialised from {run.init_from}")
    if run.locator_from and start == 0:
        load_locator(learner.model, run.locator_from, log)
        learner.hard_update()

    stem_report = None
    if model_cfg.freeze_stem:  # the stem learns to locate the blocks first, then PAC reads its cached keypoints
        if start == 0 and not run.init_from:
            lc = cfg.learner
            torch.manual_seed(run.seed)
            stem_report = pretrain_keypoint_stem(learner.model, store, lc.stem_steps, lc.stem_batch_size, lc.stem_lr,
                                                 run.seed, lc.image_shift, lc.image_jitter, log=log)
            learner.hard_update()
        learner.model.keypoint_stem.requires_grad_(False)
        store.cache_keypoints(learner.model)
        log(f"keypoints cached for {store.n_rows} rows: PAC training reads them instead of the images")
    if model_cfg.locates_blocks:  # the locator learns first; PAC then trains on the poses it estimates
        if start == 0 and cfg.learner.stem_steps > 0:  # from scratch, or fine-tuned (init_from: e.g. DAgger data)
            lc = cfg.learner
            torch.manual_seed(run.seed)
            stem_report = pretrain_locator(learner.model, store, lc.stem_steps, lc.stem_batch_size, lc.stem_lr,
                                           run.seed, lc.image_jitter, log=log)
            learner.hard_update()
        learner.model.locator.requires_grad_(False)
        locate_blocks(learner.model, store, log)

    writer = None
    if main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        if stem_report is not None:
            (out_dir / "stem_pretraining.json").write_text(json.dumps(dataclasses.asdict(stem_report), indent=1))
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=start if start else None)
        except ImportError:  # pragma: no cover
            log("tensorboard not installed: no TensorBoard scalars")

    def save(step: int) -> Path:
        name = f"step_{step:08d}"
        meta = checkpoint_meta(learner.model, cfg.preset, cfg.to_dict(), store.fingerprint, world_size=world)
        path = save_checkpoint(out_dir / "checkpoints" / name, learner, meta=meta,
                               resume_json={"seed": run.seed, "world_size": world})
        tmp = out_dir / "latest.tmp"
        tmp.write_text(name)
        os.replace(tmp, out_dir / "latest")
        olds = sorted((out_dir / "checkpoints").glob("step_*"))
        for old in olds[:-run.keep_checkpoints] if run.keep_checkpoints > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return path

    bar = None
    if main_proc and run.progress:
        from tqdm import tqdm

        bar = tqdm(total=run.steps, initial=start, desc="train", dynamic_ncols=True, file=sys.stderr)
    last = None
    t0, s0 = time.perf_counter(), start
    priority = ValuePriority(learner, store, cfg.learner) if cfg.learner.actor_batch != "same" else None
    bc_rows = store.successful_transitions() if cfg.learner.bc_data == "success" else None
    for step in range(start, run.steps):
        torch.manual_seed(_step_seed(run.seed, rank, step))  # stateless: exact on resume
        batch = store.sample(cfg.data.batch_size, step, run.seed, rank)
        actor = None
        if priority is not None and cfg.learner.alpha(step) < 1.0 and cfg.learner.policy_learns(step):
            actor = priority.sample(cfg.data.batch_size, step, run.seed, rank)
        bc = None
        if bc_rows is not None and cfg.learner.alpha(step) > 0.0 and cfg.learner.policy_learns(step):
            bc = store.sample_from(bc_rows, cfg.data.batch_size, step, run.seed, rank)
        metrics = learner.step(batch, actor, bc)
        if priority is not None:
            metrics["priority_ess"] = priority.ess
            metrics["priority_success_mass"] = priority.success_mass
        done = step + 1
        if main_proc and (done % run.log_every == 0 or done == run.steps):
            b = learner.to_device(batch)
            metrics.update(learner.model.attention_entropy(b["obs"], b["action"][:, None]))
            sps = (done - s0) * cfg.data.batch_size * world / max(time.perf_counter() - t0, 1e-9)
            metrics["samples_per_s"] = sps
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(f"train/{k}", v, done)
            if bar is not None:
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", bc=f"{metrics['bc_nll']:.2f}",
                                q=f"{metrics['q_mean']:.3f}", a=f"{metrics['alpha']:.2f}")
        if bar is not None:
            bar.update(1)
        if main_proc and (done % run.checkpoint_every == 0 or done == run.steps):
            last = save(done)
            if eval_fn is not None:
                for k, v in eval_fn(last, done).items():
                    if writer is not None:
                        writer.add_scalar(f"eval/{k}", v, done)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    if main_proc and last is None:
        last = _latest(out_dir) or save(learner.step_count)
    if dist.is_initialized():
        _check_in_sync(learner)
        dist.barrier()
    return last if last is not None else out_dir


class ValuePriority:
    """The improvement term's own batches, drawn from the whole dataset (actor_batch value or path),
    the table refreshed from the target network every ``priority_every`` steps (and on the first draw
    after a resume).

    value: each transition ∝ exp(Q_θ'(s,a)/η), across states (Q capped at ``value_cap`` when set:
    the first steps of a success, where Q is still below the cap, then draw as often as its last).
    step: each episode time step keeps its share of the data, and within it each transition is drawn
    ∝ exp(Q_θ'(s,a)/η): the states at one time step (all from the same start distribution) stand in
    for the state π_imp is normalised over, so a state's draw no longer grows with Z(s) = E[exp(Q/η)].
    Value weighting drew the first steps of a success, where Q is still low, 0.4-1.4× uniform against
    4.4× for its middle ones (measured on the 4000-step runs).
    path: each transition ∝ Π_{k≤t} exp((Q_θ'(s_k,a_k) − V_η(s_k))/η) over its episode up to it, the
    product capped at ``max_weight`` (as AWR clips its weights): the per-state improved policy π_imp ∝ π_θ'·exp(Q/η)
    (data_weighting: advantage) importance-weighted along the path that reaches the state, so the draw
    follows the states π_imp itself visits. Unlike value, a step's weight does not depend on how high
    Q already is there: the first steps of a success, where the episode's choice is made and Q is still
    low, are not drawn less for it, and a path stays down-weighted after a step π_imp would not take."""

    def __init__(self, learner: Learner, store: TransitionStore, cfg, max_weight: float = 20.0) -> None:
        self.learner, self.store, self.every, self.mode = learner, store, cfg.priority_every, cfg.actor_batch
        self.samples, self.max_log, self.cap = cfg.n_action_samples, math.log(max_weight), cfg.value_cap
        self.probs: np.ndarray | None = None
        self.refreshed = -1
        self.ess = float("nan")  # effective sample size of the draw, as a fraction of the dataset
        self.success_mass = float("nan")  # the draw's share on successful episodes (nan: outcomes unrecorded)
        episode, _ = episode_time(store)
        self.successful = None if store.episode_success is None else store.episode_success[episode]

    def log_weights(self, step: int, seed: int) -> np.ndarray:
        eta = float(self.learner.log_eta.detach().exp())
        if self.mode in ("value", "step"):
            q, _ = self.learner.data_values(self.store)
            if self.cap is not None:
                q = np.minimum(q, self.cap)
            logw = q.astype(np.float64) / eta
            return logw if self.mode == "value" else per_step_log_weights(self.store, logw)
        g = torch.Generator(device=self.learner.device).manual_seed(seed * 1_000_003 + step)
        q, v = self.learner.data_values(self.store, baseline_samples=self.samples, generator=g)
        return np.minimum(path_log_weights(self.store, (q.astype(np.float64) - v) / eta), self.max_log)

    def sample(self, batch_size: int, step: int, seed: int, rank: int) -> dict:
        if self.probs is None or step - self.refreshed >= self.every:
            logw = self.log_weights(step, seed)
            w = np.exp(logw - logw.max())
            self.probs = w / w.sum()
            self.ess = float(1.0 / (self.probs ** 2).sum() / len(self.probs))
            if self.successful is not None:
                self.success_mass = float(self.probs[self.successful].sum())
            self.refreshed = step
        rng = np.random.default_rng([seed, rank, step, 1])
        return self.store.batch(rng.choice(len(self.probs), size=batch_size, p=self.probs))


def per_step_log_weights(store: TransitionStore, logw: np.ndarray) -> np.ndarray:
    """``logw`` normalised within each episode time step t, plus log n_t: the draw gives time step t
    the share n_t / N of the data has, split ∝ exp(logw) among its transitions."""
    _, t = episode_time(store)
    out = np.empty_like(logw, dtype=np.float64)
    for step in np.unique(t):
        at = t == step
        w = logw[at]
        top = w.max()
        out[at] = w - (top + np.log(np.exp(w - top).sum())) + np.log(at.sum())
    return out


def path_log_weights(store: TransitionStore, step_log: np.ndarray) -> np.ndarray:
    """Σ_{k≤t} step_log[k] over each transition's episode up to and including it (store order)."""
    episode, _ = episode_time(store)
    first = np.flatnonzero(np.r_[True, np.diff(episode) != 0])
    total = np.cumsum(step_log)
    before = total[first] - step_log[first]  # the running sum just before each episode
    return total - np.repeat(before, np.diff(np.r_[first, len(step_log)]))


def set_input_statistics(model: PACModel, dataset, store: TransitionStore, num_episodes: int | None, log) -> None:
    """Standardise inputs with the dataset's meta/stats.json when it describes exactly the
    episodes trained on, else with statistics computed from the loaded rows (same numbers)."""
    from pac_ros.data.stats import load_stats

    raw_features = store.features is None or model.config.control == "joint"  # stats.json has the raw poses
    stats = load_stats(dataset) if num_episodes is None and raw_features else None
    if stats is not None:
        f = stats["features"]
        state = f["observation.state"]
        env = f.get("observation.environment_state") if store.features is not None else None
        model.set_normalization_stats((state["mean"], state["std"]), env and (env["mean"], env["std"]))
        log(f"input statistics from {dataset.root}/meta/stats.json")
        return
    model.set_normalization(torch.from_numpy(store.joints), None if store.features is None
                            else torch.from_numpy(store.features))
