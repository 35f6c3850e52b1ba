"""How learnable is a dataset by plain behaviour cloning? A fast check without PAC.

    .venv/bin/python scripts/probe_bc.py data/noisy [--steps 15000] [--episodes 20]

Trains a small MLP (standardised joints + block features + a per-byte instruction code
-> categorical actions over the model's bins) on the first 90% of the transitions,
then prints, on the held-out last 10%: the action NLL and the mean absolute error of
the mean-decoded action per dimension (normalised units; "zero" = always predicting 0),
and the closed-loop success in the sim on seeded evaluation episodes. If this MLP cannot
stack, the PAC model will not either on a CPU budget: the data or the action space is
the problem, not the network (see docs/learnability.md).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pac_ros.data import Dataset  # noqa: E402
from pac_ros.evaluate import EVAL_SEED, wilson_interval  # noqa: E402
from pac_ros.learning.data import TransitionStore  # noqa: E402
from pac_ros.model import preset  # noqa: E402
from pac_ros.model.tokenizer import VOCAB_SIZE, tokenize  # noqa: E402
from pac_ros.sim.env import StackingEnv  # noqa: E402


class BCProbe(nn.Module):
    def __init__(self, store: TransitionStore, bins: int, hidden: int, text_dim: int = 8):
        super().__init__()
        spec, L = store.spec, store.tokens.shape[1]
        joints, feats = torch.from_numpy(store.joints), torch.from_numpy(store.features)
        self.register_buffer("j_loc", joints.mean(0))
        self.register_buffer("j_scale", joints.std(0).clamp_min(1e-2))
        self.register_buffer("f_loc", feats.mean(0))
        self.register_buffer("f_scale", feats.std(0).clamp_min(1e-2))
        self.register_buffer("centres", torch.linspace(-1.0, 1.0, bins))
        self.text = nn.Embedding(VOCAB_SIZE, text_dim)
        self.dims, self.bins = spec.action_dim, bins
        self.net = nn.Sequential(nn.Linear(spec.action_dim + spec.feature_dim + L * text_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, spec.action_dim * bins))

    def forward(self, obs: dict) -> torch.Tensor:
        x = torch.cat([(obs["joint_positions"].float() - self.j_loc) / self.j_scale,
                       (obs["features"].float() - self.f_loc) / self.f_scale,
                       self.text(obs["instruction_tokens"].long()).flatten(1)], -1)
        return self.net(x).view(-1, self.dims, self.bins)

    def bin_of(self, action: torch.Tensor) -> torch.Tensor:
        return torch.round((action.clamp(-1, 1) + 1) * 0.5 * (self.bins - 1)).long()

    def mean_action(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.softmax(-1) * self.centres).sum(-1)

    def nll(self, logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -logits.log_softmax(-1).gather(-1, self.bin_of(action)[..., None]).sum(-2).mean()


def closed_loop(model: BCProbe, spec, episodes: int, seed: int) -> tuple[int, float]:
    env = StackingEnv(spec, render=False)
    successes, lengths = 0, []
    try:
        for i in range(episodes):
            obs = env.reset(seed=seed + i)
            while True:
                o = {"joint_positions": torch.as_tensor(obs["joint_positions"])[None],
                     "features": torch.as_tensor(obs["features"])[None],
                     "instruction_tokens": torch.from_numpy(tokenize(obs["instruction"], model.text_len))[None]}
                with torch.no_grad():
                    a = model.mean_action(model(o))[0].double().numpy()
                cur = obs["joint_positions"]
                obs, _, terminated, truncated, info = env.step(spec.safe_command(spec.denormalize_action(a, cur), cur))
                if terminated or truncated:
                    break
            successes += bool(info["success"])
            lengths.append(info["step"])
    finally:
        env.close()
    return successes, float(np.mean(lengths)) if lengths else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, default=15000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bins", type=int, default=21)
    parser.add_argument("--episodes", type=int, default=20, help="closed-loop evaluation episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dataset = Dataset(args.data)
    store = TransitionStore(dataset, preset("tiny", obs_mode="features"), 0.99, log=lambda *_: None)
    n_train = int(len(store) * 0.9)
    if n_train < 1 or n_train == len(store):
        raise SystemExit(f"{args.data}: too few transitions ({len(store)}) for a 90/10 split")
    model = BCProbe(store, args.bins, args.hidden)
    model.text_len = store.tokens.shape[1]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    held = store.batch(np.arange(n_train, len(store)))
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = np.random.default_rng([args.seed, step]).integers(0, n_train, args.batch)
        batch = store.batch(rows)
        loss = model.nll(model(batch["obs"]), batch["action"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(held["obs"])
        nll = float(model.nll(logits, held["action"]))
        mae = (model.mean_action(logits) - held["action"]).abs().mean(0).numpy()
        zero = held["action"].abs().mean(0).numpy()
    print(f"dataset {args.data}: {store.n_episodes} episodes, {n_train} training / {len(store) - n_train} held-out "
          f"transitions; {args.steps} steps in {time.perf_counter() - start:.0f} s")
    print(f"held-out NLL {nll:.2f} nats over {store.spec.action_dim} dims")
    names = store.spec.joint_names
    print("held-out mean |action error| per dim (normalised units), model vs predicting zero:")
    for name, m, z in zip(names, mae, zero):
        print(f"  {name:14s} {m:6.3f}  {z:6.3f}")
    print(f"  {'mean':14s} {mae.mean():6.3f}  {zero.mean():6.3f}")
    if args.episodes:
        ok, length = closed_loop(model, store.spec, args.episodes, EVAL_SEED)
        lo, hi = wilson_interval(ok, args.episodes)
        print(f"closed loop: success {ok}/{args.episodes} = {ok / args.episodes:.0%} (95% CI {lo:.0%}-{hi:.0%}), "
              f"mean length {length:.0f} steps (seeds {EVAL_SEED}..{EVAL_SEED + args.episodes - 1})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
