"""The experiment's runs: its dataset, each arm x seed trained and evaluated, the d3rlpy peers, pooling.

Every run leaves its result in a JSON file with the key of what produced it (``cached``), so an
interrupted experiment resumes where it stopped and a changed setting reruns only what it touches.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from pac_ros.errors import PacRosError
from pac_ros.experiment.config import EvalSection, ExperimentConfig
from pac_ros.learning.config import TrainConfig

Log = Callable[..., None]


# ---- the result cache ------------------------------------------------------------------
def cache_key(payload: Any, within: str = "") -> str:
    """16 hex digits naming what a result was made from: ``payload`` as sorted JSON, after ``within``
    (the key of the run a result builds on, if any)."""
    return hashlib.sha256((within + json.dumps(payload, sort_keys=True)).encode()).hexdigest()[:16]


class RunBusy(PacRosError, RuntimeError):
    """Another process is making the same run (two experiments share an output directory)."""


class NoKeptCheckpoint(PacRosError, FileNotFoundError):
    """No checkpoint step kept by every run of an arm, so no training budget to choose among."""


@contextmanager
def held(lock: Path, what: str) -> Iterator[None]:
    """This process's exclusive claim on ``what`` (an flock on ``lock``) while the block runs: a second
    experiment sharing the output directory stops at once instead of emptying what this one makes."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            raise RunBusy(f"{what} is being made by another process (pid {holder}, lock {lock}); "
                          "give each concurrent experiment its own out_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def cached(file: Path, key: str, label: str, log: Log, compute: Callable[[], dict],
           workdir: Path | None = None) -> dict:
    """The result stored in ``file`` if it was made with ``key``; else ``compute()``'s, stored there with it.
    ``workdir``, the run's own directory, is emptied before computing so no stale or half-done run mixes in;
    it is held (``held``) meanwhile, so another process cannot empty it under this one."""
    lock = held(workdir.parent / f".{workdir.name}.lock", label) if workdir is not None else nullcontext()
    with lock:
        stored = _stored(file, key)
        if stored is not None:
            log(f"{label}: cached ({stored['final']['success_rate']:.1%})")
            return stored
        if workdir is not None and workdir.exists():
            shutil.rmtree(workdir)
        result = {"key": key, **compute()}
        _save(file, result)
        return result


def _save(file: Path, result: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(result, indent=1))


def _stored(file: Path, key: str) -> dict | None:
    """The result in ``file`` if it was made with ``key``."""
    if not file.is_file():
        return None
    stored = json.loads(file.read_text())
    return stored if stored.get("key") == key else None


# ---- data ----------------------------------------------------------------------------
def ensure_dataset(cfg: ExperimentConfig, log: Log) -> dict:
    """Collect the experiment's dataset if it is not there; returns its description."""
    from pac_ros.collect import collect
    from pac_ros.data import Dataset

    root = Path(cfg.data.root)
    if not (root / "meta" / "info.json").is_file():
        log(f"collecting {cfg.data.episodes} '{cfg.data.quality}' episodes into {root} (seed {cfg.data.seed})")
        collect(root, cfg.data.episodes, cfg.data.quality, seed=cfg.data.seed,
                end_after_attempt=cfg.data.end_after_attempt)
    return describe_dataset(Dataset(root))


def ensure_arm_data(cfg: ExperimentConfig, log: Log) -> None:
    """Write the subsets that arms train on (``data: success | perfect``), once, from the experiment's dataset."""
    from pac_ros.data import Dataset
    from pac_ros.data.select import select, write_selection

    for arm in cfg.arms:
        root = Path(cfg.data_of(arm))
        if root == Path(cfg.data.root) or (root / "meta" / "info.json").is_file():
            continue
        source = Dataset(cfg.data.root)
        subset = (cfg.arms[arm] or {}).get("data", "all")
        picked = select(source, **cfg.DATA_SUBSETS[subset])
        log(f"arm {arm}: writing the {len(picked)} '{subset}' episodes of {cfg.data.root} into {root}")
        write_selection(root, [(source, picked)])


def describe_dataset(ds) -> dict:
    eps = ds.episodes
    qualities: dict[str, list[int]] = {}
    for e in eps:
        q = (e.get("metadata") or {}).get("quality") or e.get("source") or "?"
        qualities.setdefault(q, []).append(bool(e.get("success")))
    return {"root": str(ds.root), "fingerprint": ds.fingerprint(), "episodes": len(eps),
            "steps": int(sum(e["length"] for e in eps)),
            "success_rate": float(np.mean([bool(e.get("success")) for e in eps])) if eps else 0.0,
            "by_quality": {q: {"episodes": len(v), "success_rate": float(np.mean(v))}
                           for q, v in sorted(qualities.items())}}


# ---- one run -------------------------------------------------------------------------
def evaluate_checkpoint(checkpoint: Path, ev: EvalSection, episodes: int) -> dict:
    from pac_ros.evaluate import evaluate
    from pac_ros.policy import Policy

    t0 = time.perf_counter()
    r = evaluate(Policy.load(checkpoint, device="cpu", decoding=ev.decoding, seed=ev.seed), episodes, ev.seed)
    out = r.scalars()
    out.update(successes=int(sum(r.successes)), episodes=r.n, eval_s=time.perf_counter() - t0)
    return out


def final_metrics(run_dir: Path) -> dict:
    """The last logged training scalars (TensorBoard), for the critic diagnostics."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # pragma: no cover
        return {}
    ea = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    out = {}
    for tag in ea.Tags().get("scalars", []):
        if tag.startswith("train/"):
            out[tag[6:]] = float(ea.Scalars(tag)[-1].value)
    return out


# Options added to the training config after runs were first cached, with the value that does what
# the code did before them: at that value they are left out of a run's key, so those runs stay valid.
NEUTRAL_OPTIONS = {"learner": {"actor_batch": "same", "priority_every": 250, "truncation": "bootstrap",
                               "value_cap": None, "critic_warmup_steps": 0,
                               "lr_warmup_from": "start", "grad_clip_by": "parameters",
                               "lr_decay_steps": 0, "lr_final_fraction": 0.0, "bc_data": "all"},
                   "run": {"locator_from": None}}


def evaluation_key(ev) -> dict:
    """What decides an evaluation's result: the eval section less the report's extra evaluations
    (other decodings, target weights, the budget chosen on held-out episodes)."""
    d = dataclasses.asdict(ev)
    for name in ("decodings", "decoding_arms", "target_arms", "select"):
        d.pop(name, None)
    return d


def run_key(cfg: ExperimentConfig, tcfg: TrainConfig) -> str:
    """The key of a training run: its whole config (less the progress bar and options at their
    neutral value) and the evaluation."""
    d = tcfg.to_dict()
    d["run"].pop("progress", None)
    for section, options in NEUTRAL_OPTIONS.items():
        for name, neutral in options.items():
            if d[section].get(name, neutral) == neutral:
                d[section].pop(name, None)
    d["eval"] = evaluation_key(cfg.eval)
    return cache_key(d)


def run_one(cfg: ExperimentConfig, arm: str, seed: int, log: Log) -> dict:
    """Train one arm/seed and evaluate it; cached in ``<run>/result.json``."""
    from pac_ros.learning.train import train

    tcfg = cfg.train_config_for(arm, seed)
    run_dir = Path(tcfg.run.out_dir)

    def compute() -> dict:
        log(f"{arm} seed {seed}: training {tcfg.run.steps} steps (α {tcfg.learner.alpha_start} -> "
            f"{tcfg.learner.alpha_final}) into {run_dir}")
        t0 = time.perf_counter()
        final = Path(train(tcfg, resume=None))
        train_s = time.perf_counter() - t0
        curve = []
        if cfg.eval.curve_every:
            for ck in sorted((run_dir / "checkpoints").glob("step_*")):
                step = int(ck.name.split("_")[1])
                if step < tcfg.run.steps:
                    r = evaluate_checkpoint(ck, cfg.eval, cfg.eval.curve_episodes)
                    curve.append({"step": step, "success_rate": r["success_rate"], "episodes": r["episodes"]})
        result = evaluate_checkpoint(final, cfg.eval, cfg.eval.episodes)
        curve.append({"step": tcfg.run.steps, "success_rate": result["success_rate"],
                      "episodes": result["episodes"]})
        log(f"{arm} seed {seed}: success {result['success_rate']:.1%} "
            f"({result['successes']}/{result['episodes']}), train {train_s:.0f} s, eval {result['eval_s']:.0f} s")
        return {"arm": arm, "seed": seed, "checkpoint": str(final), "train_s": train_s,
                "alpha_final": tcfg.learner.alpha_final, "final": result, "curve": curve,
                "train_metrics": final_metrics(run_dir)}

    return cached(run_dir / "result.json", run_key(cfg, tcfg), f"{arm} seed {seed}", log, compute, workdir=run_dir)


def _with_threads(threads: int, fn: Callable, *args: Any) -> Any:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return fn(*args)


def in_processes(fn: Callable, calls: list[tuple], jobs: int, threads: int) -> list:
    """``fn(*call)`` for every call, ``jobs`` at a time in spawned processes with ``threads`` torch
    threads each; the results in the order of ``calls``. ``fn`` must be a module-level function."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(min(jobs, len(calls))) as workers:
        return workers.starmap(_with_threads, [(threads, fn, *call) for call in calls], chunksize=1)


def _run_one_logging_to_stderr(cfg: ExperimentConfig, arm: str, seed: int) -> dict:
    return run_one(cfg, arm, seed, lambda *a: print(*a, file=sys.stderr, flush=True))


def run_arms(cfg: ExperimentConfig, log: Log, jobs: int = 1) -> dict[str, list[dict]]:
    """Every arm x seed, ``jobs`` at a time (separate processes, each with ``cfg.threads`` threads)."""
    ensure_arm_data(cfg, log)
    todo = [(arm, seed) for arm in cfg.arms for seed in cfg.seeds_of(arm)]
    if jobs <= 1 or len(todo) <= 1:
        results = [run_one(cfg, arm, seed, log) for arm, seed in todo]
    else:
        log(f"{len(todo)} runs, {jobs} at a time")
        results = in_processes(_run_one_logging_to_stderr, [(cfg, arm, seed) for arm, seed in todo], jobs, cfg.threads)
    runs: dict[str, list[dict]] = {}
    for (arm, _), r in zip(todo, results):
        runs.setdefault(arm, []).append(r)
    return runs


def run_peer(cfg: ExperimentConfig, algo: str, seed: int, log: Log) -> dict:
    """One d3rlpy peer on the same data and evaluation seeds; cached in ``peers/<algo>_s<seed>.json``."""
    from pac_ros.peers import train_and_evaluate

    def compute() -> dict:
        log(f"peer {algo} seed {seed}: training {cfg.peers.steps} steps (d3rlpy)")
        model_cfg = cfg.train_config_for(next(iter(cfg.arms)), seed).model_config()
        r = train_and_evaluate(algo, cfg.data.root, model_cfg, cfg.peers.steps, cfg.eval.episodes, cfg.eval.seed,
                               seed=seed, batch_size=cfg.peers.batch_size)
        log(f"peer {algo} seed {seed}: success {r['success_rate']:.1%} ({r['successes']}/{r['episodes']}), "
            f"train {r['train_s']:.0f} s")
        return {"arm": f"d3rlpy {algo}", "seed": seed, "train_s": r["train_s"], "final": r}

    key = cache_key([dataclasses.asdict(cfg.peers), evaluation_key(cfg.eval), cfg.data.root, cfg.model])
    file = Path(cfg.out_dir) / "peers" / f"{algo.replace('+', '_')}_s{seed}.json"
    return cached(file, key, f"peer {algo} seed {seed}", log, compute)


@dataclasses.dataclass
class Planned:
    """One seed's evaluation for the report, cached in ``file`` under ``key``: the run ``run``'s final
    checkpoint, or ``checkpoint(run)`` (what is made of it, e.g. its exported target weights), with ``ev``."""
    file: Path
    key: str
    label: str
    run: dict
    ev: EvalSection
    checkpoint: Callable[[dict], Path] | None = None


def plan_finals(cfg: ExperimentConfig, arm: str, arm_runs: list[dict], ev: EvalSection, payload: Any, name: str,
                label: str, checkpoint: Callable[[dict], Path] | None = None) -> list[Planned]:
    """One arm's final checkpoints (or ``checkpoint(run)``) evaluated with ``ev``, each seed's result
    cached in its run directory as ``name``.json under the key of ``payload`` within the run's."""
    return [Planned(Path(cfg.out_dir) / "runs" / f"{arm}_s{r['seed']}" / f"{name}.json",
                    cache_key(payload, within=r["key"]), f"{arm} seed {r['seed']} {label}", r, ev, checkpoint)
            for r in arm_runs]


def evaluate_planned(cfg: ExperimentConfig, plans: list[Planned], log: Log, jobs: int = 1) -> list[dict]:
    """Each plan's cached result, or its evaluation: the uncached ones ``jobs`` at a time (separate
    processes, each with ``cfg.threads`` threads), in the order of ``plans``."""
    results: list[dict | None] = []
    todo: list[int] = []
    for i, p in enumerate(plans):
        stored = _stored(p.file, p.key)
        if stored is not None:
            log(f"{p.label}: cached ({stored['final']['success_rate']:.1%})")
        else:
            todo.append(i)
        results.append(stored)
    calls = [(plans[i].checkpoint(plans[i].run) if plans[i].checkpoint else Path(plans[i].run["checkpoint"]),
              plans[i].ev, plans[i].ev.episodes) for i in todo]
    if jobs <= 1 or len(calls) <= 1:
        finals = [evaluate_checkpoint(*call) for call in calls]
    else:
        log(f"{len(calls)} evaluations, {jobs} at a time")
        finals = in_processes(evaluate_checkpoint, calls, jobs, cfg.threads)
    for i, final in zip(todo, finals):
        p = plans[i]
        log(f"{p.label}: evaluated ({final['success_rate']:.1%})")
        results[i] = {"key": p.key, "final": final, "train_s": 0.0}
        _save(p.file, results[i])
    return results


def evaluate_arms(cfg: ExperimentConfig, plans: dict[Any, list[Planned]], log: Log, jobs: int = 1) -> dict:
    """{name: pool} for named groups of plans (an arm's seeds), all evaluated together."""
    flat = [p for group in plans.values() for p in group]
    results = iter(evaluate_planned(cfg, flat, log, jobs))
    return {name: pool([next(results) for _ in group]) for name, group in plans.items()}


def compare_decodings(cfg: ExperimentConfig, runs: dict, log: Log, jobs: int = 1) -> dict:
    """{arm: {decoding: pool}}: the final checkpoints of ``eval.decoding_arms`` evaluated with each of
    ``eval.decodings`` on the eval section's episodes and seeds, each cached next to its run."""
    plans = {}
    for arm in cfg.eval.decoding_arms:
        for decoding in cfg.eval.decodings:
            ev = dataclasses.replace(cfg.eval, decoding=decoding)
            plans[arm, decoding] = plan_finals(cfg, arm, runs[arm], ev, evaluation_key(ev), f"decoding_{decoding}",
                                               f"{decoding} decoding")
    out: dict = {}
    for (arm, decoding), pooled in evaluate_arms(cfg, plans, log, jobs).items():
        out.setdefault(arm, {})[decoding] = pooled
    return out


def compare_target_weights(cfg: ExperimentConfig, runs: dict, log: Log, jobs: int = 1) -> dict:
    """{arm: pool}: the final checkpoints of ``eval.target_arms`` evaluated with their target network's
    weights (the Polyak average), exported as a deployable checkpoint next to each run, on the eval
    section's episodes and seeds."""
    from pac_ros.learning.checkpoint import save_weights_deployable

    def target(r: dict) -> Path:
        out = Path(r["checkpoint"]).parent.parent / "target"
        save_weights_deployable(r["checkpoint"], out, "target")
        return out

    payload = [evaluation_key(cfg.eval), "weights_target"]
    return evaluate_arms(cfg, {arm: plan_finals(cfg, arm, runs[arm], cfg.eval, payload, "weights_target",
                                                "target weights", target)
                               for arm in cfg.eval.target_arms}, log, jobs)


def select_budget(cfg: ExperimentConfig, runs: dict, log: Log, jobs: int = 1) -> dict:
    """{arm: {"steps": {step: pool}, "step", "report": pool}} for ``eval.select.arms``: every
    checkpoint step that each of the arm's runs kept, with the section's weights, evaluated on the held-out
    episodes; the step with the most successes pooled over the seeds (the earliest on a tie) is the arm's
    budget, evaluated on the eval section's episodes. Each evaluation is cached in its run directory."""
    sel = cfg.eval.select
    held_out = dataclasses.replace(cfg.eval, episodes=sel.episodes, seed=sel.seed)

    def weights_at(step: int) -> Callable[[dict], Path]:
        def deployable(r: dict) -> Path:
            ckpt = Path(r["checkpoint"]).parent / f"step_{step:08d}"
            if sel.weights == "online":
                return ckpt
            from pac_ros.learning.checkpoint import save_weights_deployable

            return save_weights_deployable(ckpt, Path(r["checkpoint"]).parent.parent / "select" /
                                           f"step_{step:08d}_{sel.weights}", sel.weights)
        return deployable

    candidates = {arm: kept_steps(arm, runs[arm]) for arm in sel.arms}
    scored = evaluate_arms(cfg, {(arm, step): plan_finals(cfg, arm, runs[arm], held_out,
                                                          [evaluation_key(held_out), sel.weights, step],
                                                          f"select_{sel.weights}_step{step}",
                                                          f"step {step} {sel.weights} weights on held-out episodes",
                                                          weights_at(step))
                                 for arm, steps in candidates.items() for step in steps}, log, jobs)
    chosen = {}
    for arm, steps in candidates.items():
        chosen[arm] = max(steps, key=lambda step: (scored[arm, step]["successes"], -step))
        log(f"{arm}: budget {chosen[arm]} steps chosen on held-out episodes ("
            + ", ".join(f"{step}: {scored[arm, step]['successes']}/{scored[arm, step]['episodes']}" for step in steps)
            + ")")
    reports = evaluate_arms(cfg, {arm: plan_finals(cfg, arm, runs[arm], cfg.eval,
                                                   [evaluation_key(cfg.eval), sel.weights, step],
                                                   f"selected_{sel.weights}_step{step}",
                                                   f"step {step} {sel.weights} weights", weights_at(step))
                                  for arm, step in chosen.items()}, log, jobs)
    return {arm: {"steps": {str(step): scored[arm, step] for step in steps}, "step": chosen[arm],
                  "report": reports[arm]}
            for arm, steps in candidates.items()}


def kept_steps(arm: str, arm_runs: list[dict]) -> list[int]:
    """The checkpoint steps every one of an arm's runs kept (``run.keep_checkpoints`` prunes older ones)."""
    kept = [{int(d.name.split("_")[1]) for d in Path(r["checkpoint"]).parent.glob("step_*")} for r in arm_runs]
    common = sorted(set.intersection(*kept)) if kept else []
    if not common:
        raise NoKeptCheckpoint(f"{arm}: no checkpoint step is kept by every seed's run "
                              f"({[sorted(k) for k in kept]}); nothing to choose a budget from")
    return common


def pool(results: list[dict]) -> dict:
    """One arm over its seeds: pooled success with a Wilson 95% CI, and the mean over seeds with
    its 95% t-interval (the training seeds' spread, which the pooled interval does not see)."""
    from pac_ros.evaluate import t_interval, wilson_interval

    k = sum(r["final"]["successes"] for r in results)
    n = sum(r["final"]["episodes"] for r in results)
    lo, hi = wilson_interval(k, n)
    per_seed = [r["final"]["success_rate"] for r in results]
    seed_mean, t_low, t_high = t_interval(per_seed)
    return {"successes": k, "episodes": n, "success_rate": k / n if n else 0.0, "ci_low": lo, "ci_high": hi,
            "per_seed": per_seed, "seed_std": float(np.std(per_seed)) if per_seed else 0.0,
            "seed_mean": seed_mean, "seed_t_low": t_low, "seed_t_high": t_high,
            "mean_return": float(np.mean([r["final"]["mean_return"] for r in results])),
            "mean_length": float(np.mean([r["final"]["mean_length"] for r in results])),
            "train_s": float(np.mean([r["train_s"] for r in results]))}
