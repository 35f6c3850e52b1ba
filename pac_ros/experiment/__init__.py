"""The paper's offline-RL experiment on our stacking task, end to end from seeds (ROS-free core).

One YAML (``config/experiment.yaml``, ``config.py``) names the sub-optimal dataset (collected when
absent), the arms (learner overrides on one training config: BC is α=1 throughout, PAC moves α from
1 to its final value), the training seeds and the seeded evaluation. Every run (``runs.py``) trains,
evaluates its final checkpoint on the same sim seeds and leaves ``result.json`` in its directory, so
an interrupted experiment resumes where it stopped; ``eval.select`` chooses an arm's training budget
among its kept checkpoints on held-out episodes, and only the chosen step meets the report's episodes.
``improve.py`` then deploys a checkpoint through the node graph, records its own episodes with the
recorder, adds them to the data and fine-tunes, round after round. The report (``report.py``: JSON,
Markdown, PNG charts) is written from the results alone. ``pac-ros experiment``
(pac_ros/cli/training.py) is the command.
"""
from __future__ import annotations

import time
from pathlib import Path

from pac_ros.experiment.config import DataSection, EvalSection, ExperimentConfig, ImproveSection, PeersSection
from pac_ros.experiment.diagnostics import critic_calibration
from pac_ros.experiment.improve import improve, record_own
from pac_ros.experiment.report import plot_results, render_markdown, write_report
from pac_ros.experiment.runs import (
    Log,
    cache_key,
    cached,
    compare_decodings,
    compare_target_weights,
    describe_dataset,
    ensure_dataset,
    pool,
    run_arms,
    run_one,
    run_peer,
    select_budget,
)

__all__ = ["DataSection", "EvalSection", "ExperimentConfig", "ImproveSection", "PeersSection", "cache_key", "cached",
           "compare_decodings", "compare_target_weights", "critic_calibration", "describe_dataset",
           "ensure_dataset", "improve",
           "plot_results", "pool", "record_own", "render_markdown", "run_arms", "run_experiment", "run_one",
           "run_peer", "select_budget", "write_report"]


def run_experiment(cfg: ExperimentConfig, log: Log = print, report: str | Path | None = None,
                   command: str = "pac-ros experiment", jobs: int = 1) -> dict:
    """Data, every arm x seed, the peers, the critic diagnostics, the improvement rounds, the report."""
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
    decodings = compare_decodings(cfg, runs, log, jobs)
    target_weights = compare_target_weights(cfg, runs, log, jobs)
    selection = select_budget(cfg, runs, log, jobs)
    rounds = improve(cfg, runs[cfg.improve.arm][0], log) if cfg.improve.rounds else []
    results = {"config": cfg.to_dict(), "data": data, "arms": arms, "peers": peers, "runs": runs,
               "diagnostics": diagnostics, "decodings": decodings, "target_weights": target_weights,
               "selection": selection,
               "improve": rounds, "wall_s": time.perf_counter() - t0, "commands": [command]}
    written = write_report(results, out, report)
    log("results: " + ", ".join(str(f) for f in written))
    return results
