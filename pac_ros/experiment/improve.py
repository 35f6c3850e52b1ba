"""Self-improvement: rounds of deploy a checkpoint -> record its own episodes -> add them to the data ->
fine-tune -> evaluate, each round cached like the main runs."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pac_ros.experiment.config import ExperimentConfig
from pac_ros.experiment.runs import (
    Log,
    cache_key,
    cached,
    describe_dataset,
    evaluate_checkpoint,
    evaluation_key,
    held,
    run_key,
)
from pac_ros.seeds import ROUND_SEED_STRIDE


def improve(cfg: ExperimentConfig, start: dict, log: Log) -> list[dict]:
    """Round 0 is ``start`` (a main run's result); then ``cfg.improve.rounds`` rounds, each from the last.
    The rounds are held for this process throughout: each builds on the one before."""
    with held(Path(cfg.out_dir) / ".improve.lock", f"the self-improvement rounds of {cfg.out_dir}"):
        return _rounds(cfg, start, log)


def _rounds(cfg: ExperimentConfig, start: dict, log: Log) -> list[dict]:
    from pac_ros.data import Dataset
    from pac_ros.data.select import write_selection
    from pac_ros.learning.train import train

    imp = cfg.improve
    ev = imp.evaluation(cfg.eval)
    first = start["final"]
    if ev != cfg.eval:  # the rounds' own evaluation: round 0 too, so every round is measured alike
        def evaluate_start() -> dict:
            result = evaluate_checkpoint(Path(start["checkpoint"]), ev, ev.episodes)
            log(f"improve round 0: success {result['success_rate']:.1%} ({result['successes']}/{result['episodes']})")
            return {"final": result}

        key = cache_key(evaluation_key(ev), within=start.get("key", start["checkpoint"]))
        first = cached(Path(cfg.out_dir) / "improve" / "round_0" / "result.json", key, "improve round 0", log,
                       evaluate_start)["final"]
    rounds = [{"round": 0, "checkpoint": start["checkpoint"], "final": first,
               "data": describe_dataset(Dataset(cfg.data.root))}]
    data_root = Path(cfg.data.root)
    # a round's recipe: how it records and fine-tunes, not how many rounds follow (adding rounds keeps these)
    recipe = {k: v for k, v in dataclasses.asdict(imp).items() if k != "rounds"}
    if imp.steps_scale == "fixed":  # added later: recipes from before it keep their keys
        recipe.pop("steps_scale")
    original = len(Dataset(data_root))
    for r in range(1, imp.rounds + 1):
        rdir = Path(cfg.out_dir) / "improve" / f"round_{r}"
        merged = rdir / "data"
        steps = round_steps(imp, original, len(Dataset(data_root)))
        tcfg = cfg.train_config_for(imp.arm, cfg.seeds[0], steps=steps, learner=imp.learner,
                                    root=str(merged), out=str(rdir / "run"))
        tcfg.run.init_from = rounds[-1]["checkpoint"]
        previous, source = rounds[-1], data_root

        def compute() -> dict:
            rdir.mkdir(parents=True)
            own = rdir / "own"
            t0 = time.perf_counter()
            record_own(previous["checkpoint"], own, imp.episodes, cfg.data.seed + ROUND_SEED_STRIDE * r,
                       imp.through_ros, imp.decoding or cfg.eval.decoding)
            record_s = time.perf_counter() - t0
            own_desc = describe_dataset(Dataset(own))
            log(f"improve round {r}: recorded {own_desc['episodes']} own episodes, "
                f"{own_desc['success_rate']:.1%} success, {record_s:.0f} s")
            write_selection(merged, [(ds, list(range(len(ds)))) for ds in (Dataset(source), Dataset(own))])
            t0 = time.perf_counter()
            final = Path(train(tcfg, resume=None))
            train_s = time.perf_counter() - t0
            result = evaluate_checkpoint(final, ev, ev.episodes)
            log(f"improve round {r}: success {result['success_rate']:.1%} "
                f"({result['successes']}/{result['episodes']})")
            return {"round": r, "from": previous["checkpoint"], "checkpoint": str(final), "final": result,
                    "own": own_desc, "record_s": record_s, "train_s": train_s,
                    "steps": steps,
                    "data": describe_dataset(Dataset(merged))}

        # the key: the round's training config (with the checkpoint it starts from), then the recipe
        key = cache_key(recipe, within=run_key(cfg, tcfg))
        rounds.append(cached(rdir / "result.json", key, f"improve round {r}", log, compute, workdir=rdir))
        data_root = merged
    return rounds


def round_steps(imp, original: int, source: int) -> int:
    """A round's fine-tuning steps: ``imp.steps``, or with steps_scale data in proportion to the episodes it
    trains on (``source`` plus its own) against the ``original`` data's."""
    if imp.steps_scale == "fixed":
        return imp.steps
    return max(1, round(imp.steps * (source + imp.episodes) / original))


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
