"""Ship a trained checkpoint: copy its weights into models/, evaluate it, write its model card.

    python scripts/ship_model.py RUN_OR_CHECKPOINT --out models/pac_tiny_stacking [--episodes 100]
    python scripts/ship_model.py RUN_SEED0 RUN_SEED1 RUN_SEED2 --out models/pac_tiny_pixels \
        --select-episodes 50 --episodes 200 --seed 300000 --robustness 50

Only what deployment needs travels (meta.json + model.safetensors; no optimiser state).
The card's figures are measured here, on seeded sim episodes that no training data used.
With several runs (one recipe, several training seeds) each run is evaluated on the
selection seeds (--select-seed, default 200000..) and the best one is shipped; then every
run is evaluated on the report seeds (--seed), which chose nothing, and the card gives
each run's figure, their mean with a t-interval over runs and the pooled Wilson interval.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from pac_ros.checkpoint import read_meta, resolve  # noqa: E402
from pac_ros.data import Dataset  # noqa: E402
from pac_ros.evaluate import EVAL_SEED, evaluate, t_interval, wilson_interval  # noqa: E402
from pac_ros.learning import LearnerConfig, save_weights_deployable  # noqa: E402
from pac_ros.learning.checkpoint import WEIGHTS  # noqa: E402
from pac_ros.policy import DECODING, Policy  # noqa: E402
from pac_ros.seeds import SELECT_SEED  # noqa: E402
from pac_ros.sim.perturb import PERTURBATIONS, perturbation  # noqa: E402
from pac_ros.spec import default_spec  # noqa: E402

SHIPPED_FILES = ("meta.json", "model.safetensors")
ROBUSTNESS_SEED = 400_000
def _eval(source: Path, spec, decoding: str, episodes: int, seed: int, perturb: str = "none"):
    policy = Policy.load(source, spec=spec, device="cpu", decoding=decoding, seed=seed)
    return evaluate(policy, episodes, seed, spec, perturbation=perturbation(perturb))


def _eval_task(task: tuple):
    """One evaluation in a worker process (one torch thread): (source, decoding, episodes, seed,
    perturbation) -> (EvalResult, seconds)."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    result = _eval(task[0], default_spec(), *task[1:])
    return result, time.perf_counter() - start


def _evals(tasks: list[tuple], jobs: int) -> list:
    """``_eval_task`` of each task, ``jobs`` processes at a time (the episodes are independent)."""
    if jobs <= 1:
        return [_eval_task(t) for t in tasks]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_eval_task, tasks))


def _inputs_line(model_config: dict, spec) -> str:
    mode = model_config.get("obs_mode")
    cams = ", ".join(f"{c.name} {c.width}x{c.height} {c.encoding}" for c in spec.cameras)
    if mode == "pixels":
        stem = model_config.get("image_stem", "patch")
        aux = "; an auxiliary head learned the block poses from the images during training only" \
            if model_config.get("aux_features") else ""
        if stem == "locator":
            aux = ("; the locator finds each block in each image and the calibrated cameras (the MJCF's front "
                   "camera, the wrist camera through forward kinematics) triangulate its pose; it learned from the "
                   "recorded simulator poses, a training-time target only")
        return (f"observation mode `pixels`: the cameras ({cams}; `{stem}` image stem), joint positions and the "
                f"instruction, no simulator state{aux}")
    if mode == "features":
        return ("observation mode `features`: joint positions, the instruction and the block poses from "
                "`/sim/block_poses`; no camera input")
    return f"observation mode `{mode}`: the cameras ({cams}), joint positions, the instruction and the block poses"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+",
                        help="training run or checkpoint directories (several: one recipe's training seeds)")
    parser.add_argument("--out", type=Path, default=Path("models/pac_tiny_stacking"))
    parser.add_argument("--episodes", type=int, default=100, help="report episodes per run")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="first report seed")
    parser.add_argument("--select-episodes", type=int, default=50, help="selection episodes per run (several runs)")
    parser.add_argument("--select-seed", type=int, default=SELECT_SEED)
    parser.add_argument("--robustness", type=int, default=0, metavar="N",
                        help="also evaluate the shipped model on N episodes under each perturbation")
    parser.add_argument("--command", default="make shipped-model", help="how the model was made (for the card)")
    parser.add_argument("--jobs", type=int, default=1, help="evaluations run this many processes at a time")
    parser.add_argument("--decoding", default="greedy", choices=DECODING,
                        help="decoding the card's evaluation uses (run the policy node with the same)")
    parser.add_argument("--weights", default="online", choices=WEIGHTS,
                        help="target: each run's target-network (Polyak-averaged) weights, exported to "
                             "<run>/target (pac-ros export) and evaluated, chosen and shipped in place of the online")
    args = parser.parse_args()
    if len(set(range(args.seed, args.seed + args.episodes)) &
           set(range(args.select_seed, args.select_seed + args.select_episodes))):
        parser.error("report seeds and selection seeds overlap")

    spec = default_spec()
    checkpoints = [resolve(c) for c in args.checkpoints]
    sources = checkpoints
    if args.weights == "target":  # <run>/checkpoints/step_N -> <run>/target
        sources = [save_weights_deployable(c, c.parent.parent / "target", "target") for c in checkpoints]
    selection: list[tuple[Path, float]] = []
    if len(sources) > 1:
        picks = _evals([(src, args.decoding, args.select_episodes, args.select_seed) for src in sources], args.jobs)
        for src, (r, _) in zip(sources, picks):
            selection.append((src, r.success_rate))
            print(f"selection: {src} {r.success_rate:.1%} on seeds {args.select_seed}..", flush=True)
    source = max(selection, key=lambda x: x[1])[0] if selection else sources[0]
    shipped_from = checkpoints[sources.index(source)]
    meta = read_meta(source)
    names = list(PERTURBATIONS) if args.robustness else []
    done = _evals([(src, args.decoding, args.episodes, args.seed) for src in sources]
                  + [(source, args.decoding, args.robustness, ROBUSTNESS_SEED, name) for name in names], args.jobs)
    per_run = [(src, r) for src, (r, _) in zip(sources, done)]
    result, eval_s = done[sources.index(source)]
    s = result.scalars()
    for src, r in per_run:
        print(f"report: {src} {r.success_rate:.1%} on seeds {args.seed}..", flush=True)
    robust = [(name, r) for name, (r, _) in zip(names, done[len(sources):])]
    for name, r in robust:
        print(f"robustness: {name} {r.success_rate:.1%}", flush=True)

    train = meta.get("train_config", {})
    data, run = train.get("data", {}), train.get("run", {})
    learner_cfg = LearnerConfig.from_dict(train.get("learner", {}))
    data_lines = [f"- dataset fingerprint `{meta.get('dataset_fingerprint')}`"]
    try:
        ds = Dataset(data.get("root"))
        wins = sum(bool(m["success"]) for m in ds.episodes)
        qualities, sources = {}, {}
        for m in ds.episodes:
            q = (m.get("metadata") or {}).get("quality") or "-"
            qualities[q] = qualities.get(q, 0) + 1
            src = m.get("source") or "?"
            sources[src] = sources.get(src, 0) + 1
        data_lines += [
            f"- `{data.get('root')}`: {len(ds)} episodes, {ds.total_steps} steps, "
            f"success {wins}/{len(ds)} = {wins / len(ds):.1%}",
            f"- expert qualities: {', '.join(f'{k} {v}' for k, v in sorted(qualities.items()))}"
            " (`-`: not the scripted expert)",
            f"- sources (episodes): {', '.join(f'{k} {v}' for k, v in sorted(sources.items()))}; in the MuJoCo "
            f"stacking world, seeds {min(m.get('seed') or 0 for m in ds.episodes)}.."
            f"{max(m.get('seed') or 0 for m in ds.episodes)}",
        ]
    except Exception as exc:  # the card still says what it can
        data_lines.append(f"- dataset not readable here ({exc})")

    stem_file = shipped_from.parent.parent / "stem_pretraining.json"  # <run>/checkpoints/step_N
    stem = json.loads(stem_file.read_text()) if stem_file.is_file() else None
    if stem and "pixel_error" in stem:  # the block locator (learning/locator.py)
        pixels = ", ".join(f"{c} {e:.2f} px" for c, e in stem["pixel_error"].items())
        stem_line = (f"\n- block locator trained {stem['steps']} steps, then frozen; on the held-out episodes' "
                     f"{stem['heldout_rows']} rows: pixel error {pixels}, triangulated block position error mean "
                     f"{stem['position_error_mm']:.1f} mm (p95 {stem['position_p95_mm']:.1f} mm), yaw error mean "
                     f"{stem['yaw_error_deg']:.1f}°")
    elif stem:
        stem_line = (f"\n- keypoint stem pretrained {stem['steps']} steps to locate the blocks, then frozen: "
                     f"held-out block error mean {stem['heldout_error_mm']:.1f} mm, "
                     f"p95 {stem['heldout_p95_mm']:.1f} mm ({stem['heldout_rows']} rows)")
    elif run.get("locator_from"):
        stem_line = (f"\n- block locator from `{run['locator_from']}` (run.locator_from), frozen; the rest "
                     "trained from scratch")
    else:
        stem_line = ""
    origin = (f"fine-tuned from `{run.get('init_from')}` (weights; fresh optimiser)" if run.get("init_from")
              else "trained from scratch")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        staged = Path(tmp) / args.out.name
        staged.mkdir()
        for name in SHIPPED_FILES:
            shutil.copyfile(source / name, staged / name)
            os.chmod(staged / name, 0o644)
        shipped_meta = json.loads((staged / "meta.json").read_text())
        shipped_meta["files"] = {k: v for k, v in shipped_meta.get("files", {}).items() if k in SHIPPED_FILES}
        shipped_meta["decoding"] = args.decoding  # the policy's decoding "auto" picks it
        (staged / "meta.json").write_text(json.dumps(shipped_meta, indent=1))
        card = f"""# {args.out.name}: PAC `{meta.get('preset')}` for simulated block stacking

A Perceiver-Actor-Critic policy ({meta.get('n_parameters', 0) / 1e6:.2f} M parameters,
{_inputs_line(meta.get('model_config', {}), spec)}; control
`{meta.get('model_config', {}).get('control', 'joint')}`, see docs/model.md) for the
`{spec.name}` spec (fingerprint `{meta.get('spec_fingerprint')}`), {spec.control_rate_hz:g} Hz.

## Evaluation (measured by scripts/ship_model.py)
- {result.n} seeded episodes, seeds {args.seed}..{args.seed + result.n - 1} (no training episode used these seeds)
- **success {s['success_rate']:.1%}** (95% Wilson CI {s['success_ci_low']:.1%} - {s['success_ci_high']:.1%})
- mean return {s['mean_return']:.3f}, mean episode length {s['mean_length']:.1f} steps (limit {spec.max_episode_steps})
- {args.decoding} decoding (recorded in meta.json: the policy node's `decoding: auto` uses it), CPU;
  policy latency p50 {s['latency_p50_ms']:.2f} ms, p99 {s['latency_p99_ms']:.2f} ms
  ({platform.machine()}, {os.cpu_count()} cores; evaluation took {eval_s:.0f} s)

{recipe_section(per_run, selection, source, args)}{robustness_section(robust, args)}
## Data
{chr(10).join(data_lines)}

## Training
- steps {meta.get('step')}, batch {data.get('batch_size')}, seed {run.get('seed')}, lr {learner_cfg.lr},
  {clip_line(learner_cfg)}
- {alpha_line(learner_cfg, int(meta.get('step', 0)))}
- {objective_line(learner_cfg)}
- {weights_line(meta, learner_cfg)}
- {origin}{stem_line}
- full configuration: `meta.json` → `train_config`

## Regenerate
`{args.command}` (collect the dataset, train, then this script).

## Limits
{limits_text(meta.get('model_config', {}))}
"""
        (staged / "MODEL_CARD.md").write_text(card)
        if args.out.exists():
            shutil.rmtree(args.out)
        staged.rename(args.out)
    print(card)
    return 0


def clip_line(learner: LearnerConfig) -> str:
    norm = learner.grad_clip
    if learner.grad_clip_by == "loss":
        return f"each loss's gradient clipped to norm {norm} on its own (grad_clip_by: loss)"
    if not learner.critic_trains_encoder:
        return f"the policy's and the critic's parameters' gradients each clipped to norm {norm}"
    return f"all gradients clipped to norm {norm} together"


def alpha_line(learner: LearnerConfig, step: int) -> str:
    """The α schedule and the improvement term as trained; training's defaults fill what meta.json lacks."""
    if learner.alpha_start == learner.alpha_final:
        line = f"α fixed at {learner.alpha_start}"
    else:
        line = (f"α schedule: {learner.alpha_start} for {learner.alpha_warmup_steps} steps, then "
                f"linear to {learner.alpha_final} over {learner.alpha_decay_steps} steps")
    final = learner.alpha(step)
    line += f"; α at the last step {final:g}" + (" (pure behaviour cloning)" if final == 1.0 else "")
    if learner.improvement_actions == "data":
        drawn = ", the improvement batch drawn ∝ exp(Q/η) over the data" if learner.actor_batch == "value" else ""
        line += (f"; improvement on the data's own actions, {learner.data_weighting} weighting{drawn} "
                 "(docs/method.md, docs/results_baselines.md)")
    if learner.truncation == "terminal":
        line += "; no episode end bootstraps (truncation: terminal)"
    return line


def objective_line(learner: LearnerConfig) -> str:
    eta = f"η {learner.eta}" + (f" at the start, learned by its dual (KL bound {learner.eta_kl})"
                                if learner.eta_kl is not None else "")
    target = (f"Polyak τ {learner.tau}" if learner.target_update == "polyak"
              else f"copied every {learner.target_period} steps")
    return (f"{eta}, γ {learner.gamma}, {learner.n_action_samples} sampled actions,\n"
            f"  target network {target}, β {learner.beta}")


def weights_line(meta: dict, learner: LearnerConfig) -> str:
    if meta.get("weights") != "target":
        return "shipped weights: the online network's at the last step"
    if learner.target_update == "hard":
        return (f"shipped weights: the target network's, a copy of the online weights taken every "
                f"{learner.target_period} steps (`pac-ros export --weights target`)")
    return (f"shipped weights: the target network's, at polyak τ {learner.tau} the online weights' "
            f"moving average over about the last {1 / learner.tau:.0f} steps (`pac-ros export --weights target`)")


def recipe_section(per_run, selection, source, args) -> str:
    if len(per_run) < 2:
        return ""
    rates = [r.success_rate for _, r in per_run]
    mean, lo, hi = t_interval(rates)
    wins, n = sum(sum(r.successes) for _, r in per_run), sum(r.n for _, r in per_run)
    plo, phi = wilson_interval(int(wins), n)
    chosen = dict(selection)
    rows = "\n".join(f"| `{src}` | {chosen[src]:.1%} | {r.success_rate:.1%} ({r.ci95[0]:.1%} - {r.ci95[1]:.1%})"
                      f"{' | **shipped**' if src == source else ' |'}" for src, r in per_run)
    return f"""
## The recipe over {len(per_run)} training seeds
Each run selected on {args.select_episodes} episodes (seeds {args.select_seed}..); the best one is shipped. The report
seeds ({args.seed}..{args.seed + args.episodes - 1}) chose nothing.

| run | selection | report (95% Wilson) | |
| --- | --- | --- | --- |
{rows}

- mean over runs **{mean:.1%}**, 95% t-interval over runs {max(0.0, lo):.1%} - {min(1.0, hi):.1%} (within [0, 1])
- pooled {wins}/{n} = {wins / n:.1%} (95% Wilson {plo:.1%} - {phi:.1%})
"""


def robustness_section(robust, args) -> str:
    if not robust:
        return ""
    base = dict(robust).get("none")
    rows = "\n".join(f"| {name} | {r.success_rate:.1%} ({r.ci95[0]:.1%} - {r.ci95[1]:.1%}) | "
                      f"{r.success_rate / base.success_rate if base and base.success_rate else float('nan'):.2f} |"
                      for name, r in robust)
    return f"""
## Robustness (pac_ros/sim/perturb.py; never in the training data)
{args.robustness} episodes each, seeds {ROBUSTNESS_SEED}..{ROBUSTNESS_SEED + args.robustness - 1}, the shipped model.

| perturbation | success (95% Wilson) | vs none |
| --- | --- | --- |
{rows}
"""


def limits_text(model_config: dict) -> str:
    common = ("What makes the task learnable from the scripted demonstrations: `docs/learnability.md`; PAC "
              "against BC on sub-optimal data, and self-improvement from the policy's own recordings: "
              "`docs/results_baselines.md`.")
    task = (" With `task` control it needs the arm's kinematic model (the MJCF in `models/`) for its IK."
            if model_config.get("control") == "task" else "")
    locator = (" Its block locator takes the cameras' poses from the same MJCF: put the calibrated cameras there "
               "(the robustness rows show what a camera moved by 2-5 cm costs)."
               if model_config.get("image_stem") == "locator" else "")
    if model_config.get("obs_mode") == "pixels":
        return ("Trained and evaluated in simulation only: its cameras are the simulator's renders (64x64, no "
                "shadows). It needs no simulator state at deployment, but a real camera sees another world: "
                "retrain on recordings of the real cell (docs/bring_your_own_arm.md)." + task + locator + " " + common)
    return ("Trained and evaluated in simulation only. It needs block poses, which the MuJoCo bridge publishes; on "
            "a real robot they would come from a pose tracker." + task + " " + common)


if __name__ == "__main__":
    sys.exit(main())
