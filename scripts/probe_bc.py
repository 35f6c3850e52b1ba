"""How learnable is a dataset by plain behaviour cloning? A fast check without PAC.

    .venv/bin/python scripts/probe_bc.py data/noisy [--steps 15000] [--episodes 20] [--control joint|task]

Trains a small MLP (standardised joints + block features + a per-byte instruction code
-> categorical actions over 21 bins per dimension) on the first 90% of the transitions,
then prints, on the held-out last 10%: the action NLL and the mean absolute error of
the mean-decoded action per dimension (normalised units; beside it, always predicting
0), and the closed-loop success in the sim on seeded evaluation episodes.

``--control`` is the model's (pac_ros/control.py): ``joint`` (each joint's step in units
of its max step, blocks in spec order) or ``task`` (grip-site motion, yaw and gripper
through IK; blocks ordered by the instruction and relative to the grip site). The same
Control object makes the labels and the commands, as in training and deployment.
If the MLP cannot stack, the PAC model will not either on a CPU budget: the data or the
action space is the problem, not the network (see docs/learnability.md).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pac_ros.control import Control  # noqa: E402
from pac_ros.data import Dataset  # noqa: E402
from pac_ros.evaluate import EVAL_SEED, wilson_interval  # noqa: E402
from pac_ros.learning.data import TransitionStore  # noqa: E402
from pac_ros.model import preset  # noqa: E402
from pac_ros.model.config import CONTROLS  # noqa: E402
from pac_ros.model.tokenizer import VOCAB_SIZE, tokenize  # noqa: E402
from pac_ros.sim.env import StackingEnv  # noqa: E402


def inputs(joints: np.ndarray, features: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """The MLP's input rows: joints, the control's block features, optionally the motion since the last tick."""
    x = [joints, features] + ([joints - previous] if previous is not None else [])
    return np.concatenate(x, 1).astype(np.float32)


class MLP(nn.Module):
    def __init__(self, x: np.ndarray, text_len: int, dims: int, bins: int, hidden: int, text_dim: int = 8):
        super().__init__()
        t = torch.from_numpy(x)
        self.register_buffer("loc", t.mean(0))
        self.register_buffer("scale", t.std(0).clamp_min(1e-2))
        self.register_buffer("centres", torch.linspace(-1.0, 1.0, bins))
        self.text = nn.Embedding(VOCAB_SIZE, text_dim)
        self.dims, self.bins = dims, bins
        self.net = nn.Sequential(nn.Linear(x.shape[1] + text_len * text_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dims * bins))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.cat([(x - self.loc) / self.scale, self.text(tokens).flatten(1)], -1)
        return self.net(h).view(-1, self.dims, self.bins)

    def nll(self, logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        idx = torch.round((action.clamp(-1, 1) + 1) * 0.5 * (self.bins - 1)).long()
        return -logits.log_softmax(-1).gather(-1, idx[..., None]).sum(-2).mean()

    def mean_action(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.softmax(-1) * self.centres).sum(-1)


def chunk_labels(y: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Labels of transitions i..i+k-1 side by side; past the episode's end the last one repeats."""
    out, last = [y], y
    for j in range(1, k):
        nxt = np.minimum(np.arange(len(rows)) + j, len(rows) - 1)
        same = rows[nxt] == rows + j  # transitions are contiguous within an episode
        last = np.where(same[:, None], y[nxt], last)
        out.append(last)
    return np.concatenate(out, 1)


def closed_loop(net: MLP, control: Control, env: StackingEnv, text_len: int, episodes: int,
                seed: int, chunk: int = 1, history: bool = False) -> tuple[int, int, float]:
    """(successes, episodes in which the instructed top block was grasped at least once, mean length)."""
    spec = env.spec
    successes, grasped, lengths = 0, 0, []
    for i in range(episodes):
        obs = env.reset(seed=seed + i)
        held, previous, plan = False, obs["joint_positions"], []
        while True:
            q = obs["joint_positions"]
            if not plan:  # a new chunk of `chunk` actions, executed in turn
                f = control.features(q[None], obs["features"][None], [obs["instruction"]])
                x = torch.from_numpy(inputs(q[None], f, previous[None] if history else None))
                tokens = torch.from_numpy(tokenize(obs["instruction"], text_len))[None]
                with torch.no_grad():
                    plan = list(net.mean_action(net(x, tokens))[0].double().numpy().reshape(chunk, -1))
            previous = q
            a = plan.pop(0)
            obs, _, terminated, truncated, info = env.step(spec.safe_command(control.command(a, q), q))
            held = held or env.is_grasped(env.target_pair[0])
            if terminated or truncated:
                break
        successes += bool(info["success"])
        grasped += held
        lengths.append(info["step"])
    return successes, grasped, float(np.mean(lengths)) if lengths else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--control", choices=list(CONTROLS), default="joint")
    parser.add_argument("--history", action="store_true",
                        help="also input each joint's motion since the previous tick (what joint velocities tell)")
    parser.add_argument("--chunk", type=int, default=1, help="actions predicted per decision, executed in turn")
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
    store = TransitionStore(dataset, preset("tiny", obs_mode="features", control=args.control), 0.99,
                            log=lambda *_: None)
    n_train = int(len(store) * 0.9)
    if n_train < 1 or n_train == len(store):
        raise SystemExit(f"{args.data}: too few transitions ({len(store)}) for a 90/10 split")
    env = StackingEnv(dataset.spec, render=False)
    rows = store.index
    in_episode = np.zeros(store.n_rows + 1, dtype=bool)
    in_episode[rows + 1] = True  # row r has a predecessor in its own episode
    previous = np.where(in_episode[rows][:, None], store.joints[np.maximum(rows - 1, 0)], store.joints[rows])
    x = inputs(store.joints[rows], store.features[rows], previous if args.history else None)
    y = store.actions[rows]
    names = dataset.spec.joint_names if args.control == "joint" else ["dx", "dy", "dz", "dyaw", "gripper"]
    if args.chunk > 1:
        y = chunk_labels(y, rows, args.chunk)
        names = [f"{n}@{j}" for j in range(args.chunk) for n in names]
    tokens = store.tokens[rows]
    text_len = tokens.shape[1]
    X, Y, T = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tokens)
    net = MLP(x[:n_train], text_len, y.shape[1], args.bins, args.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        i = torch.from_numpy(np.random.default_rng([args.seed, step]).integers(0, n_train, args.batch))
        loss = net.nll(net(X[i], T[i]), Y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = net(X[n_train:], T[n_train:])
        nll = float(net.nll(logits, Y[n_train:]))
        mae = (net.mean_action(logits) - Y[n_train:]).abs().mean(0).numpy()
        zero = Y[n_train:].abs().mean(0).numpy()
    print(f"dataset {args.data}: {store.n_episodes} episodes, {n_train} training / {len(store) - n_train} held-out "
          f"transitions; {args.control} control{' + history' if args.history else ''}, chunk {args.chunk}; "
          f"{args.steps} steps in {time.perf_counter() - start:.0f} s")
    print(f"held-out NLL {nll:.2f} nats over {len(names)} dims")
    print("held-out mean |action error| per dim (normalised units), model vs predicting zero:")
    for name, m, z in zip(names, mae, zero):
        print(f"  {name:14s} {m:6.3f}  {z:6.3f}")
    print(f"  {'mean':14s} {mae.mean():6.3f}  {zero.mean():6.3f}")
    if args.episodes:
        ok, grasped, length = closed_loop(net, store.control, env, text_len, args.episodes, EVAL_SEED, args.chunk,
                                          args.history)
        lo, hi = wilson_interval(ok, args.episodes)
        print(f"closed loop: success {ok}/{args.episodes} = {ok / args.episodes:.0%} (95% CI {lo:.0%}-{hi:.0%}), "
              f"mean length {length:.0f} steps (seeds {EVAL_SEED}..{EVAL_SEED + args.episodes - 1}); "
              f"grasped the instructed block at least once in {grasped}/{args.episodes}")
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
