"""Ship a trained checkpoint: copy its weights into models/, evaluate it, write its model card.

    python scripts/ship_model.py RUN_OR_CHECKPOINT --out models/pac_tiny_stacking [--episodes 100]

Only what deployment needs travels (meta.json + model.safetensors; no optimiser state).
The card's figures are measured here, on seeded sim episodes that no training data used.
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

from pac_ros.data import Dataset  # noqa: E402
from pac_ros.evaluate import EVAL_SEED, evaluate  # noqa: E402
from pac_ros.learning import LearnerConfig  # noqa: E402
from pac_ros.checkpoint import read_meta, resolve  # noqa: E402
from pac_ros.policy import DECODING, Policy  # noqa: E402
from pac_ros.spec import default_spec  # noqa: E402

SHIPPED_FILES = ("meta.json", "model.safetensors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="training run directory or checkpoint directory")
    parser.add_argument("--out", type=Path, default=Path("models/pac_tiny_stacking"))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--command", default="make shipped-model", help="how the model was made (for the card)")
    parser.add_argument("--decoding", default="greedy", choices=DECODING,
                        help="decoding the card's evaluation uses (run the policy node with the same)")
    args = parser.parse_args()

    source = resolve(args.checkpoint)
    meta = read_meta(source)
    spec = default_spec()
    start = time.perf_counter()
    result = evaluate(Policy.load(source, spec=spec, device="cpu", decoding=args.decoding, seed=args.seed),
                      args.episodes, args.seed, spec)
    eval_s = time.perf_counter() - start
    s = result.scalars()

    train = meta.get("train_config", {})
    learner, data, run = train.get("learner", {}), train.get("data", {}), train.get("run", {})
    final_alpha = LearnerConfig.from_dict(learner).alpha(int(meta.get("step", 0)))
    if learner.get("alpha_start") == learner.get("alpha_final"):
        alpha_line = f"α fixed at {learner.get('alpha_start')}"
    else:
        alpha_line = (f"α schedule: {learner.get('alpha_start')} for {learner.get('alpha_warmup_steps')} steps, then "
                      f"linear to {learner.get('alpha_final')} over {learner.get('alpha_decay_steps')} steps")
    alpha_line += f"; α at the last step {final_alpha:g}" + (" (pure behaviour cloning)" if final_alpha == 1.0 else "")
    if learner.get("improvement_actions") == "data":
        alpha_line += (f"; improvement on the data's own actions, {learner.get('data_weighting')} weighting "
                       "(docs/results.md)")
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

    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
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
observation mode `{meta.get('model_config', {}).get('obs_mode')}`: joint positions, the
instruction and the block poses from `/sim/block_poses`; no camera input; control
`{meta.get('model_config', {}).get('control', 'joint')}`, see docs/model.md) for the
`{spec.name}` spec (fingerprint `{meta.get('spec_fingerprint')}`), {spec.control_rate_hz:g} Hz.

## Evaluation (measured by scripts/ship_model.py)
- {result.n} seeded episodes, seeds {args.seed}..{args.seed + result.n - 1} (no training episode used these seeds)
- **success {s['success_rate']:.1%}** (95% Wilson CI {s['success_ci_low']:.1%} - {s['success_ci_high']:.1%})
- mean return {s['mean_return']:.3f}, mean episode length {s['mean_length']:.1f} steps (limit {spec.max_episode_steps})
- {args.decoding} decoding (recorded in meta.json: the policy node's `decoding: auto` uses it), CPU; policy latency p50 {s['latency_p50_ms']:.2f} ms, p99 {s['latency_p99_ms']:.2f} ms
  ({platform.machine()}, {os.cpu_count()} cores; evaluation took {eval_s:.0f} s)

## Data
{chr(10).join(data_lines)}

## Training
- steps {meta.get('step')}, batch {data.get('batch_size')}, seed {run.get('seed')}, lr {learner.get('lr')}
- {alpha_line}
- η {learner.get('eta')}, γ {learner.get('gamma')}, {learner.get('n_action_samples')} sampled actions,
  target network Polyak τ {learner.get('tau')}, β {learner.get('beta')}
- {f"fine-tuned from `{run.get('init_from')}` (weights; fresh optimiser)" if run.get('init_from') else 'trained from scratch'}
- full configuration: `meta.json` → `train_config`

## Regenerate
`{args.command}` (collect the dataset, train, then this script).

## Limits
Trained and evaluated in simulation only. It needs block poses, which the MuJoCo bridge
publishes; on a real robot they would come from a pose tracker. With `task` control it
also needs the arm's kinematic model (the sim's MJCF) for its IK. What makes the task
learnable from the scripted demonstrations: `docs/learnability.md`; PAC against BC on
sub-optimal data, and self-improvement from the policy's own recordings: `docs/results.md`.
"""
        (staged / "MODEL_CARD.md").write_text(card)
        if args.out.exists():
            shutil.rmtree(args.out)
        staged.rename(args.out)
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
