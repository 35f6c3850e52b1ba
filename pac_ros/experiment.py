"""The paper's offline-RL experiment on our stacking task, end to end from seeds (ROS-free core).

One YAML (``config/experiment.yaml``) names the sub-optimal dataset (collected when absent),
the arms (learner overrides on one training config: BC is α=1 throughout, PAC moves α from
1 to its final value), the training seeds and the seeded evaluation. Every run trains,
evaluates its final checkpoint on the same sim seeds and leaves ``result.json`` in its
directory, so an interrupted experiment resumes where it stopped. ``improve`` then deploys
a checkpoint through the node graph, records its own episodes with the recorder, adds them
to the data and fine-tunes, round after round. The report (JSON, Markdown, PNG charts) is
written from the results alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from pac_ros.evaluate import EVAL_SEED, wilson_interval
from pac_ros.learning.config import ConfigError, TrainConfig, _build


@dataclass
class DataSection:
    root: str = "data/experiment_mixed"
    episodes: int = 300
    quality: str = "mixed"
    seed: int = 0
    end_after_attempt: int | None = None  # see pac_ros.collect.run_expert_episode


@dataclass
class EvalSection:
    episodes: int = 100
    seed: int = EVAL_SEED
    decoding: str = "greedy"
    curve_every: int = 0  # > 0: also evaluate checkpoints every this many steps (learning curves)
    curve_episodes: int = 20


@dataclass
class ImproveSection:
    rounds: int = 0  # self-improvement rounds after the main runs (0: none)
    arm: str = "pac"  # the arm whose seed-0 checkpoint starts the loop
    episodes: int = 100  # own episodes recorded per round
    steps: int = 1000  # fine-tuning steps per round
    through_ros: bool = True  # record through the node graph (bridge + policy + recorder); else in-process
    learner: dict = field(default_factory=dict)  # learner overrides for fine-tuning


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
    arms: dict = field(default_factory=lambda: {"bc": {"alpha_final": 1.0}, "pac": {"alpha_final": 0.1}})
    data: DataSection = field(default_factory=DataSection)
    eval: EvalSection = field(default_factory=EvalSection)
    improve: ImproveSection = field(default_factory=ImproveSection)
    peers: PeersSection = field(default_factory=PeersSection)
    threads: int | None = None
    notes: str = ""  # Markdown placed in the report under "Notes" (how the setup came about)

    @classmethod
    def from_dict(cls, d: Any, where: str = "experiment") -> "ExperimentConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        d = dict(d)
        sections = {"data": DataSection, "eval": EvalSection, "improve": ImproveSection, "peers": PeersSection}
        parts = {k: _build(c, d.pop(k, None), f"{where}: {k}") for k, c in sections.items()}
        cfg = _build(cls, d, where)
        for k, v in parts.items():
            setattr(cfg, k, v)
        if not cfg.arms or not isinstance(cfg.arms, Mapping):
            raise ConfigError(f"{where}: arms must map arm names to learner overrides")
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
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        try:
            return cls.from_dict(yaml.safe_load(Path(path).read_text()), str(path))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def seeds_of(self, arm: str) -> list:
        """The arm's training seeds: its own ``seeds`` entry (e.g. a one-seed ablation) or the experiment's."""
        return list((self.arms[arm] or {}).get("seeds") or self.seeds)

    def train_config_for(self, arm: str, seed: int, steps: int | None = None,
                         learner: Mapping | None = None, root: str | None = None, out: str | None = None) -> TrainConfig:
        """The arm's training config: the base YAML with the experiment's and the arm's overrides."""
        base = TrainConfig.load(self.train_config).to_dict()
        base["model"] = {**base["model"], **self.model}
        arm_over = dict(self.arms[arm] or {})
        arm_over.pop("seeds", None)
        if "alpha_final" in arm_over and float(arm_over["alpha_final"]) >= 1.0:  # BC: α=1 throughout
            arm_over.setdefault("alpha_start", 1.0)
        base["learner"] = {**base["learner"], **self.learner, **arm_over, **dict(learner or {})}
        base["data"]["root"] = root or self.data.root
        base["run"].update(out_dir=out or str(Path(self.out_dir) / "runs" / f"{arm}_s{seed}"), seed=seed,
                           steps=steps or self.steps, progress=False, eval_episodes=0,
                           threads=self.threads or base["run"].get("threads"))
        if self.eval.curve_every:
            base["run"]["checkpoint_every"] = self.eval.curve_every
            base["run"]["keep_checkpoints"] = 0  # keep every point of the learning curve
        return TrainConfig.from_dict(base, f"{self.train_config} (arm {arm})")


# ---- data ----------------------------------------------------------------------------
def ensure_dataset(cfg: ExperimentConfig, log: Callable[..., None]) -> dict:
    """Collect the experiment's dataset if it is not there; returns its description."""
    from pac_ros.collect import collect
    from pac_ros.data import Dataset

    root = Path(cfg.data.root)
    if not (root / "meta" / "info.json").is_file():
        log(f"collecting {cfg.data.episodes} '{cfg.data.quality}' episodes into {root} (seed {cfg.data.seed})")
        collect(root, cfg.data.episodes, cfg.data.quality, seed=cfg.data.seed,
                end_after_attempt=cfg.data.end_after_attempt)
    return describe_dataset(Dataset(root))


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
def _evaluate(checkpoint: Path, ev: EvalSection, episodes: int) -> dict:
    from pac_ros.evaluate import evaluate
    from pac_ros.policy import Policy

    t0 = time.perf_counter()
    r = evaluate(Policy.load(checkpoint, device="cpu", decoding=ev.decoding, seed=ev.seed), episodes, ev.seed)
    out = r.scalars()
    out.update(successes=int(sum(r.successes)), episodes=r.n, eval_s=time.perf_counter() - t0)
    return out


def _final_metrics(run_dir: Path) -> dict:
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


def run_one(cfg: ExperimentConfig, arm: str, seed: int, log: Callable[..., None]) -> dict:
    """Train (or resume) one arm/seed, evaluate it; cached in ``<run>/result.json``."""
    from pac_ros.learning.train import train

    tcfg = cfg.train_config_for(arm, seed)
    run_dir = Path(tcfg.run.out_dir)
    done = run_dir / "result.json"
    key = _run_key(cfg, tcfg)
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.get("key") == key:
            log(f"{arm} seed {seed}: cached ({cached['final']['success_rate']:.1%})")
            return cached
    if run_dir.exists():  # a different config or an unfinished evaluation: start clean
        shutil.rmtree(run_dir)
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
                r = _evaluate(ck, cfg.eval, cfg.eval.curve_episodes)
                curve.append({"step": step, "success_rate": r["success_rate"], "episodes": r["episodes"]})
    result = _evaluate(final, cfg.eval, cfg.eval.episodes)
    curve.append({"step": tcfg.run.steps, "success_rate": result["success_rate"], "episodes": result["episodes"]})
    out = {"arm": arm, "seed": seed, "key": key, "checkpoint": str(final), "train_s": train_s,
           "alpha_final": tcfg.learner.alpha_final, "final": result, "curve": curve,
           "train_metrics": _final_metrics(run_dir)}
    done.write_text(json.dumps(out, indent=1))
    log(f"{arm} seed {seed}: success {result['success_rate']:.1%} ({result['successes']}/{result['episodes']}), "
        f"train {train_s:.0f} s, eval {result['eval_s']:.0f} s")
    return out


def _run_key(cfg: ExperimentConfig, tcfg: TrainConfig) -> str:
    d = tcfg.to_dict()
    d["run"].pop("progress", None)
    d["eval"] = dataclasses.asdict(cfg.eval)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def pool(results: list[dict]) -> dict:
    """One arm over its seeds: pooled success with a Wilson 95% CI, and the spread across seeds."""
    k = sum(r["final"]["successes"] for r in results)
    n = sum(r["final"]["episodes"] for r in results)
    lo, hi = wilson_interval(k, n)
    per_seed = [r["final"]["success_rate"] for r in results]
    return {"successes": k, "episodes": n, "success_rate": k / n if n else 0.0, "ci_low": lo, "ci_high": hi,
            "per_seed": per_seed, "seed_std": float(np.std(per_seed)) if per_seed else 0.0,
            "mean_return": float(np.mean([r["final"]["mean_return"] for r in results])),
            "mean_length": float(np.mean([r["final"]["mean_length"] for r in results])),
            "train_s": float(np.mean([r["train_s"] for r in results]))}


def run_peer(cfg: ExperimentConfig, algo: str, seed: int, log: Callable[..., None]) -> dict:
    """One d3rlpy peer on the same data and evaluation seeds; cached in ``peers/<algo>_s<seed>.json``."""
    from pac_ros.peers import train_and_evaluate

    f = Path(cfg.out_dir) / "peers" / f"{algo.replace('+', '_')}_s{seed}.json"
    key = hashlib.sha256(json.dumps([dataclasses.asdict(cfg.peers), dataclasses.asdict(cfg.eval), cfg.data.root,
                                     cfg.model], sort_keys=True).encode()).hexdigest()[:16]
    if f.is_file():
        cached = json.loads(f.read_text())
        if cached.get("key") == key:
            log(f"peer {algo} seed {seed}: cached ({cached['final']['success_rate']:.1%})")
            return cached
    log(f"peer {algo} seed {seed}: training {cfg.peers.steps} steps (d3rlpy)")
    model_cfg = cfg.train_config_for(next(iter(cfg.arms)), seed).model_config()
    r = train_and_evaluate(algo, cfg.data.root, model_cfg, cfg.peers.steps, cfg.eval.episodes, cfg.eval.seed,
                           seed=seed, batch_size=cfg.peers.batch_size)
    out = {"arm": f"d3rlpy {algo}", "seed": seed, "key": key, "train_s": r["train_s"], "final": r}
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(out, indent=1))
    log(f"peer {algo} seed {seed}: success {r['success_rate']:.1%} ({r['successes']}/{r['episodes']}), "
        f"train {r['train_s']:.0f} s")
    return out


# ---- critic diagnostics -----------------------------------------------------------
def critic_calibration(checkpoint: str | Path, data_root: str | Path, gamma: float, n: int = 2048,
                       seed: int = 0) -> dict:
    """Q(s, a_data) of a checkpoint against the observed discounted return of the same
    transitions (Monte-Carlo, to the episode's end), on ``n`` sampled transitions."""
    import torch

    from pac_ros.data import Dataset
    from pac_ros.learning.data import TransitionStore
    from pac_ros.policy import Policy

    policy = Policy.load(checkpoint, device="cpu")
    m = policy.model
    store = TransitionStore(Dataset(data_root), m.config, gamma, log=lambda *a: None)
    idx = np.random.default_rng(seed).choice(len(store), min(n, len(store)), replace=False)
    idx = idx[np.argsort(store.index[idx], kind="stable")]  # the order store.batch returns
    b = store.batch(idx)
    with torch.no_grad():
        lat = m.encode(b["obs"])
        q = m.q_value(lat, b["action"][:, None].float())[:, 0].numpy()
        ent = float(m.entropy(m.policy_logits(lat)).sum(-1).mean())
    g = store.returns_to_go[idx]
    bins = np.linspace(0, max(float(g.max()), 1e-6), 6)
    which = np.clip(np.digitize(g, bins[1:-1]), 0, len(bins) - 2)
    table = [{"return_lo": float(bins[i]), "return_hi": float(bins[i + 1]), "n": int((which == i).sum()),
              "mean_return": float(g[which == i].mean()), "mean_q": float(q[which == i].mean())}
             for i in range(len(bins) - 1) if (which == i).any()]
    corr = float(np.corrcoef(q, g)[0, 1]) if g.std() > 0 and q.std() > 0 else float("nan")
    return {"transitions": int(len(idx)), "mean_q": float(q.mean()), "mean_return": float(g.mean()),
            "correlation": corr, "policy_entropy": ent, "bins": table}


# ---- self-improvement ------------------------------------------------------------------
def improve(cfg: ExperimentConfig, start: dict, log: Callable[..., None]) -> list[dict]:
    """Rounds of: record own episodes -> add to the data -> fine-tune -> evaluate."""
    from pac_ros.data import Dataset
    from pac_ros.data.select import write_selection
    from pac_ros.learning.train import train

    imp = cfg.improve
    base = Path(cfg.out_dir) / "improve"
    rounds = [{"round": 0, "checkpoint": start["checkpoint"], "final": start["final"],
               "data": describe_dataset(Dataset(cfg.data.root))}]
    data_root = Path(cfg.data.root)
    for r in range(1, imp.rounds + 1):
        rdir = base / f"round_{r}"
        done = rdir / "result.json"
        merged = rdir / "data"
        tcfg = cfg.train_config_for(imp.arm, cfg.seeds[0], steps=imp.steps, learner=imp.learner,
                                    root=str(merged), out=str(rdir / "run"))
        tcfg.run.init_from = rounds[-1]["checkpoint"]
        # the round's whole recipe: its training config (with the checkpoint it starts from) and how it
        # records; not how many rounds follow it, so adding rounds keeps the finished ones
        recipe = {k: v for k, v in dataclasses.asdict(imp).items() if k != "rounds"}
        key = hashlib.sha256((_run_key(cfg, tcfg) + json.dumps(recipe, sort_keys=True)).encode()).hexdigest()[:16]
        if done.is_file():
            cached = json.loads(done.read_text())
            if cached.get("key") == key:
                log(f"improve round {r}: cached ({cached['final']['success_rate']:.1%})")
                rounds.append(cached)
                data_root = Path(cached["data"]["root"])
                continue
        if rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True)
        own = rdir / "own"
        seed0 = cfg.data.seed + 1_000_000 * r  # apart from the collection and the evaluation seeds
        t0 = time.perf_counter()
        record_own(rounds[-1]["checkpoint"], own, imp.episodes, seed0, imp.through_ros, cfg.eval.decoding)
        record_s = time.perf_counter() - t0
        own_desc = describe_dataset(Dataset(own))
        log(f"improve round {r}: recorded {own_desc['episodes']} own episodes, "
            f"{own_desc['success_rate']:.1%} success, {record_s:.0f} s")
        write_selection(merged, [(ds, list(range(len(ds)))) for ds in (Dataset(data_root), Dataset(own))])
        t0 = time.perf_counter()
        final = Path(train(tcfg, resume=None))
        train_s = time.perf_counter() - t0
        result = _evaluate(final, cfg.eval, cfg.eval.episodes)
        out = {"round": r, "key": key, "from": rounds[-1]["checkpoint"], "checkpoint": str(final), "final": result,
               "own": own_desc, "record_s": record_s, "train_s": train_s, "data": describe_dataset(Dataset(merged))}
        done.write_text(json.dumps(out, indent=1))
        log(f"improve round {r}: success {result['success_rate']:.1%} ({result['successes']}/{result['episodes']})")
        rounds.append(out)
        data_root = merged
    return rounds


def record_own(checkpoint: str | Path, out: Path, episodes: int, seed: int, through_ros: bool,
               decoding: str = "greedy") -> None:
    """``episodes`` episodes of the checkpoint's own, recorded into a new dataset ``out``
    by the recorder: through the node graph, or in-process with the recorder's writer."""
    if through_ros:
        from pac_ros.nodes.closed_loop import run_closed_loop
        from pac_ros.nodes.common import private_domain_id

        run_closed_loop(out, episodes, driver="policy", checkpoint=str(checkpoint), seed=seed,
                        overrides=[f"policy.decoding={decoding}"], timeout=60.0 * episodes,
                        domain_id=private_domain_id())
        return
    from pac_ros.collect import record_policy_episodes

    record_policy_episodes(checkpoint, out, episodes, seed, decoding)


# ---- report ----------------------------------------------------------------------------
def _run_one_in_worker(cfg: ExperimentConfig, arm: str, seed: int) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return run_one(cfg, arm, seed, lambda *a: print(*a, file=sys.stderr, flush=True))


def run_arms(cfg: ExperimentConfig, log: Callable[..., None], jobs: int = 1) -> dict[str, list[dict]]:
    """Every arm x seed, ``jobs`` at a time (separate processes, each with ``cfg.threads`` threads)."""
    todo = [(arm, seed) for arm in cfg.arms for seed in cfg.seeds_of(arm)]
    if jobs <= 1 or len(todo) <= 1:
        results = [run_one(cfg, arm, seed, log) for arm, seed in todo]
    else:
        import multiprocessing

        log(f"{len(todo)} runs, {jobs} at a time")
        with multiprocessing.get_context("spawn").Pool(min(jobs, len(todo))) as workers:
            results = workers.starmap(_run_one_in_worker, [(cfg, arm, seed) for arm, seed in todo], chunksize=1)
    runs: dict[str, list[dict]] = {}
    for (arm, _), r in zip(todo, results):
        runs.setdefault(arm, []).append(r)
    return runs


def run_experiment(cfg: ExperimentConfig, log: Callable[..., None] = print, report: str | Path | None = None,
                   command: str = "pac-ros experiment", jobs: int = 1) -> dict:
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    data = ensure_dataset(cfg, log)
    log(f"data: {data['episodes']} episodes, {data['steps']} steps, {data['success_rate']:.1%} success, "
        f"fingerprint {data['fingerprint']}")
    runs = run_arms(cfg, log, jobs)
    arms = {arm: pool(rs) for arm, rs in runs.items()}
    peers = {f"d3rlpy {a}": pool([run_peer(cfg, a, s, log) for s in cfg.peers.seeds]) for a in cfg.peers.algos}
    diagnostics = {arm: critic_calibration(rs[0]["checkpoint"], cfg.data.root,
                                           cfg.train_config_for(arm, rs[0]["seed"]).learner.gamma)
                   for arm, rs in runs.items()}
    rounds = improve(cfg, runs[cfg.improve.arm][0], log) if cfg.improve.rounds else []
    results = {"config": cfg.to_dict(), "data": data, "arms": arms, "peers": peers, "runs": runs,
               "diagnostics": diagnostics,
               "improve": rounds, "wall_s": time.perf_counter() - t0, "commands": [command]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    figures = plot_results(results, out)
    (out / "results.md").write_text(render_markdown(results, figures, out))
    if report:  # the report travels with copies of its figures (out_dir is usually not versioned)
        report = Path(report)
        fig_dir = report.parent / f"{report.stem}_figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        copies = {k: Path(shutil.copy2(f, fig_dir / f.name)) for k, f in figures.items()}
        (fig_dir / "results.json").write_text(json.dumps(results, indent=1))
        report.write_text(render_markdown(results, copies, report.parent))
    log(f"results: {out / 'results.json'}, {out / 'results.md'}" + (f", {report}" if report else ""))
    return results


def plot_results(results: dict, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    arms = {**results["arms"], **results.get("peers", {})}
    names = list(arms)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(names), 3.4))
    rates = [100 * arms[a]["success_rate"] for a in names]
    err = [[100 * (arms[a]["success_rate"] - arms[a]["ci_low"]) for a in names],
           [100 * (arms[a]["ci_high"] - arms[a]["success_rate"]) for a in names]]
    ax.bar(names, rates, yerr=err, capsize=4, color=["#888" if a == "bc" else "#48c" if a.startswith("d3rlpy") else "#2a7" for a in names])
    for i, a in enumerate(names):
        ax.scatter([i] * len(arms[a]["per_seed"]), [100 * p for p in arms[a]["per_seed"]], color="k", s=8, zorder=3)
    ax.axhline(100 * results["data"]["success_rate"], color="#c44", ls="--", lw=1, label="data")
    ax.set_ylabel("success (%)")
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.set_title("sim stacking, sub-optimal data")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    figs["bar"] = out / "success_bar.png"
    fig.savefig(figs["bar"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for a, rs in results["runs"].items():
        steps = sorted({p["step"] for r in rs for p in r["curve"]})
        mean = [100 * np.mean([p["success_rate"] for r in rs for p in r["curve"] if p["step"] == s]) for s in steps]
        ax.plot(steps, mean, marker="o", label=a)
    ax.set_xlabel("training step")
    ax.set_ylabel("success (%)")
    ax.legend(fontsize=8)
    ax.set_title("learning curves (mean over seeds)")
    fig.tight_layout()
    figs["curves"] = out / "learning_curves.png"
    fig.savefig(figs["curves"], dpi=110)
    plt.close(fig)

    if results["improve"]:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        rr = results["improve"]
        ax.plot([r["round"] for r in rr], [100 * r["final"]["success_rate"] for r in rr], marker="o")
        ax.set_xlabel("self-improvement round")
        ax.set_ylabel("success (%)")
        ax.set_xticks([r["round"] for r in rr])
        fig.tight_layout()
        figs["improve"] = out / "self_improvement.png"
        fig.savefig(figs["improve"], dpi=110)
        plt.close(fig)
    return figs


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _compute_s(results: dict) -> float:
    runs = [r for rs in results["runs"].values() for r in rs]
    return sum(r["train_s"] + r["final"].get("eval_s", 0.0) for r in runs) + \
        sum(p["train_s"] * len(p["per_seed"]) for p in results.get("peers", {}).values())


def render_markdown(results: dict, figures: Mapping[str, Path], rel_to: Path) -> str:
    data, arms, cfg = results["data"], results["arms"], results["config"]

    def link(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), Path(rel_to).resolve())

    lines = ["# Results: PAC vs BC on sub-optimal stacking data", "",
             "Generated by `pac-ros experiment` (pac_ros/experiment.py); every number below comes from "
             "`results.json` of the same run.", "",
             "## Data", "",
             f"- `{data['root']}`: {data['episodes']} episodes, {data['steps']} steps, "
             f"success {_pct(data['success_rate'])}; fingerprint `{data['fingerprint']}`",
             f"- collected with `pac-ros collect --quality {cfg['data']['quality']} --episodes "
             f"{cfg['data']['episodes']} --seed {cfg['data']['seed']}" +
             (f" --end-after-attempt {cfg['data']['end_after_attempt']}" if cfg['data'].get('end_after_attempt') else "")
             + "`; by expert quality: " +
             ", ".join(f"{q} {v['episodes']} eps ({_pct(v['success_rate'])})" for q, v in data["by_quality"].items()),
             "", "## Success over seeded sim episodes", "",
             f"Each run: {cfg['steps']} training steps, preset from `{cfg['train_config']}` with model overrides "
             f"`{cfg['model']}` and learner overrides `{cfg['learner']}`; evaluated on {cfg['eval']['episodes']} "
             f"sim episodes (seeds {cfg['eval']['seed']}..{cfg['eval']['seed'] + cfg['eval']['episodes'] - 1}, "
             f"{cfg['eval']['decoding']} decoding). Pooled over training seeds ({cfg['seeds']} unless the arm "
             "names its own); 95% Wilson intervals.",
             "", "| arm | learner overrides | success | 95% CI | per seed | mean return | mean length | train s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a, s in arms.items():
        lines.append(f"| {a} | `{cfg['arms'][a]}` | {_pct(s['success_rate'])} ({s['successes']}/{s['episodes']}) | "
                     f"{_pct(s['ci_low'])} - {_pct(s['ci_high'])} | "
                     f"{', '.join(_pct(p) for p in s['per_seed'])} | {s['mean_return']:.3f} | {s['mean_length']:.1f} | "
                     f"{s['train_s']:.0f} |")
    for a, s in results.get("peers", {}).items():
        lines.append(f"| {a} | {results['config']['peers']['steps']} steps, batch "
                     f"{results['config']['peers']['batch_size']}, state features, no images | "
                     f"{_pct(s['success_rate'])} ({s['successes']}/{s['episodes']}) | "
                     f"{_pct(s['ci_low'])} - {_pct(s['ci_high'])} | {', '.join(_pct(p) for p in s['per_seed'])} | "
                     f"{s['mean_return']:.3f} | {s['mean_length']:.1f} | {s['train_s']:.0f} |")
    if "bc" in arms:
        bc = arms["bc"]
        lines += ["", "Against BC:", ""]
        for a, s in arms.items():
            if a == "bc":
                continue
            ratio = s["success_rate"] / bc["success_rate"] if bc["success_rate"] > 0 else \
                (math.inf if s["success_rate"] > 0 else math.nan)
            apart = s["ci_low"] > bc["ci_high"]
            lines.append(f"- {a}: {_pct(s['success_rate'])} vs {_pct(bc['success_rate'])}: "
                         f"{'+' if s['success_rate'] >= bc['success_rate'] else ''}"
                         f"{100 * (s['success_rate'] - bc['success_rate']):.1f} points, ratio "
                         f"{'n/a (BC at 0%)' if not math.isfinite(ratio) else f'{ratio:.2f}x'}, intervals "
                         f"{'do not overlap' if apart else 'overlap'}")
    peers = results.get("peers", {})
    if peers:
        best = max(peers, key=lambda a: peers[a]["success_rate"])
        lines += ["", "Against the best d3rlpy peer (" + best + f", {_pct(peers[best]['success_rate'])}):", ""]
        for a, s in arms.items():
            if a != "bc":
                lines.append(f"- {a}: {100 * (s['success_rate'] - peers[best]['success_rate']):+.1f} points, "
                             f"intervals {'do not overlap' if s['ci_low'] > peers[best]['ci_high'] else 'overlap'}")
    lines += ["", f"![success]({link(figures['bar'])})", f"![curves]({link(figures['curves'])})", "",
              "## Critic diagnostics (seed 0 of each arm)", "",
              "Q(s, a) of the data's own actions against the observed discounted return from that step "
              "(Monte Carlo to the episode's end), on sampled transitions of the training data.", "",
              "| arm | mean Q | mean observed return | correlation | policy entropy (nats, all dims) | "
              "final critic loss | final ESS of w |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for a, d in results["diagnostics"].items():
        tm = results["runs"][a][0].get("train_metrics", {})
        lines.append(f"| {a} | {d['mean_q']:.3f} | {d['mean_return']:.3f} | {d['correlation']:.2f} | "
                     f"{d['policy_entropy']:.2f} | {tm.get('critic_loss', float('nan')):.3f} | "
                     f"{tm.get('ess', float('nan')):.2f} |")
    if results["improve"]:
        imp = cfg["improve"]
        lines += ["", "## Self-improvement", "",
                  f"Each round deploys the last checkpoint ({'through the node graph: bridge + policy node + recorder' if imp['through_ros'] else 'in-process'}), "
                  f"records {imp['episodes']} of its own episodes, adds them to the data and fine-tunes "
                  f"{imp['steps']} steps (learner overrides `{imp['learner']}`).", "",
                  "| round | success | 95% CI | own episodes' success | dataset episodes |",
                  "| --- | --- | --- | --- | --- |"]
        for r in results["improve"]:
            f = r["final"]
            own = _pct(r["own"]["success_rate"]) if "own" in r else "-"
            lines.append(f"| {r['round']} | {_pct(f['success_rate'])} | {_pct(f['success_ci_low'])} - "
                         f"{_pct(f['success_ci_high'])} | {own} | {r['data']['episodes']} |")
        if "improve" in figures:
            lines += ["", f"![self-improvement]({link(figures['improve'])})"]
    if cfg.get("notes"):
        lines += ["", "## Notes", "", cfg["notes"].strip()]
    lines += ["", "## Reproduce", "", *(f"    {c}" for c in results["commands"]), "",
              f"Wall time of this call: {results['wall_s'] / 60:.1f} min (cached runs count as 0); training and "
              f"evaluation of every run and peer it reports: {_compute_s(results) / 60:.1f} min.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="pac-ros experiment", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/experiment.yaml")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    p.add_argument("--report", help="also write the Markdown report here (e.g. docs/results.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="train and evaluate this many arm/seed runs at once (processes of `threads` threads each)")
    args = p.parse_args(argv)
    try:
        cfg = ExperimentConfig.load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        cfg.out_dir = args.out
    command = " ".join(["pac-ros experiment --config", args.config] + (["--out", args.out] if args.out else []) +
                       (["--report", args.report] if args.report else []) +
                       (["--jobs", str(args.jobs)] if args.jobs > 1 else []))
    run_experiment(cfg, log=lambda *a: print(*a, file=sys.stderr, flush=True), report=args.report, command=command,
                   jobs=args.jobs)
    return 0
