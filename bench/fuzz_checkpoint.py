"""Fuzz: mutated checkpoints against the loaders, to show a checkpoint from elsewhere cannot crash them.

    .venv/bin/python bench/fuzz_checkpoint.py [--n 10000] [--seed 0] [--timeout 20] [--memory-mib 1024]

Starts from a small valid training checkpoint (meta.json, model.safetensors, train_state.*) and
writes ``--n`` mutated copies of it: meta.json fields dropped, retyped, made huge, file names
that point outside the directory, wrong sha256; safetensors headers with other shapes, dtypes,
names, offsets or a huge declared length; truncated, flipped and garbage files; extra and
missing tensors; files linked from outside. Half the mutations also rewrite meta.json's sha256
so they reach the checks behind the hash. Each copy is loaded by ``Policy.load`` (then one
``act``) and ``load_into_learner``. Every outcome must be a clean load that gives finite,
in-limit commands, or a ``PacRosError`` (a clear refusal). Anything else is a crash; a load
past ``--timeout`` seconds is a hang; peak resident memory more than ``--memory-mib`` above
the start counts as excessive memory.

Prints counts of inputs, clean loads (by both loaders), clear refusals, crashes, hangs, the
outcomes per loader and per mutation (and the first crashes and hangs); exits 1 on any crash,
hang or excessive memory.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pac_ros.checkpoint import META_FILE, MODEL_FILE, STATE_FILE, STATE_JSON, checkpoint_meta  # noqa: E402
from pac_ros.errors import PacRosError  # noqa: E402
from pac_ros.learning import Learner, LearnerConfig, load_into_learner, save_checkpoint  # noqa: E402
from pac_ros.model import PACModel  # noqa: E402
from pac_ros.model.testing import micro_config, random_obs, small_spec  # noqa: E402
from pac_ros.policy import Policy  # noqa: E402

WEIRD = [None, True, False, -1, 0, 1, 2, 7, 10 ** 9, -10 ** 9, 10 ** 30, 2 ** 64, 1e308, -1e308, float("nan"),
         float("inf"), 0.5, -0.5, "", "x", "tiny", "../../etc/passwd", "/etc/passwd", [], [1, 2], {}, {"a": 1},
         "a" * 5000]
HUGE = [10 ** 9, 10 ** 12, 2 ** 31, 2 ** 63, 65536, 100_000, 1 << 20, 3_000_000]
BAD_NAMES = ["../model.safetensors", "../../etc/passwd", "/etc/passwd", "sub/model.safetensors", ".", "..",
             "model.safetensors/..", "C:\\model.safetensors", "other.bin", "meta.json", "\0"]


# ---- the valid checkpoint ------------------------------------------------------------------
def spec_and_config():
    return small_spec(n_arm=2, cameras=1), micro_config(obs_mode="pixels+features")


def new_learner(seed: int = 0) -> Learner:
    spec, config = spec_and_config()
    torch.manual_seed(seed)
    return Learner(PACModel(config, spec), LearnerConfig(lr=1e-3, lr_warmup_steps=2, amp="none", n_action_samples=4))


def make_base(path: Path) -> Path:
    """A valid training checkpoint after one optimiser step (so it has optimiser state)."""
    learner = new_learner()
    spec = learner.model.spec
    g = torch.Generator().manual_seed(0)
    learner.step({"obs": random_obs(spec, 4, 0), "next_obs": random_obs(spec, 4, 100),
                  "action": torch.rand(4, spec.action_dim, generator=g) * 2 - 1,
                  "reward": torch.rand(4, generator=g), "discount": torch.full((4,), 0.99)})
    return save_checkpoint(path, learner, meta=checkpoint_meta(learner.model, "micro", {}, "fuzz"))


# ---- mutations: each edits the copy in ``d`` (a checkpoint directory) --------------------------
def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    if path:
        yield path


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _meta(d: Path) -> dict:
    return json.loads((d / META_FILE).read_text())


def _write_meta(d: Path, meta) -> None:
    (d / META_FILE).write_text(json.dumps(meta))


def m_drop(rng, d):
    meta = _meta(d)
    path = rng.choice(list(_leaves(meta)))
    parent = _get(meta, path[:-1])
    del parent[path[-1]]
    _write_meta(d, meta)


def m_retype(rng, d):
    meta = _meta(d)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_leaves(meta)))
        _get(meta, path[:-1])[path[-1]] = rng.choice(WEIRD)
    _write_meta(d, meta)


def m_huge(rng, d):
    meta = _meta(d)
    section = rng.choice(["model_config", "spec", "top"])
    target = meta if section == "top" else meta[section]
    ints = [k for k, v in target.items() if isinstance(v, int) and not isinstance(v, bool)] or list(target)
    key = rng.choice(ints)
    target[key] = rng.choice(HUGE) * rng.choice([1, 1, -1])
    if section == "spec" and rng.random() < 0.5:  # many joints / cameras / blocks instead
        key = rng.choice(["arm_joints", "cameras", "blocks"])
        target[key] = [target[key][0]] * rng.choice([65, 1000, 100_000])
    _write_meta(d, meta)


def m_files(rng, d):
    meta = _meta(d)
    files = meta["files"]
    choice = rng.randrange(4)
    if choice == 0:  # a name outside the directory, with a real sha256
        files[rng.choice(BAD_NAMES)] = files.pop(rng.choice(list(files)))
    elif choice == 1:
        files[rng.choice(list(files))] = rng.choice(["0" * 64, "abc", "g" * 64, 5, None, "A" * 64])
    elif choice == 2:
        del files[rng.choice(list(files))]
    else:
        meta["files"] = rng.choice([[MODEL_FILE], "model.safetensors", None, 3])
    _write_meta(d, meta)


def m_meta_bytes(rng, d):
    f = d / META_FILE
    data = f.read_bytes()
    choice = rng.randrange(5)
    if choice == 0:
        f.write_bytes(data[:rng.randrange(len(data))])
    elif choice == 1:
        f.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    elif choice == 2:
        f.write_bytes(b"[" * rng.choice([1000, 100_000]) + b"]" * 10)
    elif choice == 3:
        f.write_text(rng.choice(["[]", "null", "1", '"x"', "{}", '{"format": "pac_ros.checkpoint/1"}']))
    else:
        i = rng.randrange(len(data))
        f.write_bytes(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])


def _header(f: Path) -> tuple[dict, bytes]:
    data = f.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write_header(f: Path, header: dict, body: bytes) -> None:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    f.write_bytes(struct.pack("<Q", len(blob)) + blob + body)


def m_header(rng, d):
    f = d / rng.choice([MODEL_FILE, MODEL_FILE, STATE_FILE])
    header, body = _header(f)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    choice = rng.randrange(7)
    if choice == 0:  # same bytes, another shape
        n = math.prod(entry["shape"])
        entry["shape"] = rng.choice([[n], [1, n], [n, 1], list(reversed(entry["shape"])), [n + 1], []])
    elif choice == 1:  # another dtype, same or other size
        entry["dtype"] = rng.choice(["I32", "F16", "BF16", "F64", "U8", "BOOL", "Q4", "", 7])
    elif choice == 2:
        entry["data_offsets"] = [rng.choice([0, 8, 2 ** 63, -8]), rng.choice([len(body) + 8, 2 ** 64, 4, -1])]
    elif choice == 3:
        header[rng.choice(["zzz_extra", name + ".x", "__metadata__"])] = dict(entry)
    elif choice == 4:
        header[rng.choice(["", "renamed", "../x", name.upper()])] = header.pop(name)
    elif choice == 5:
        del header[name]
    else:
        header[name] = rng.choice(WEIRD)
    _write_header(f, header, body)


def m_header_length(rng, d):
    f = d / rng.choice([MODEL_FILE, STATE_FILE])
    data = f.read_bytes()
    n = rng.choice([0, 1, 2 ** 63, 2 ** 64 - 1, len(data), len(data) - 7, 100_000_001, 1 << 30])
    f.write_bytes(struct.pack("<Q", n) + data[8:])


def m_bytes(rng, d):
    f = d / rng.choice([MODEL_FILE, MODEL_FILE, STATE_FILE, STATE_JSON])
    data = f.read_bytes()
    choice = rng.randrange(4)
    if choice == 0:
        f.write_bytes(data[:rng.randrange(len(data))])
    elif choice == 1:  # flip bytes anywhere (weights may become NaN)
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(b))
    elif choice == 2:
        f.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([0, 7, 8, 64, 4096]))))
    else:  # NaN / inf weights in a well-formed file
        header, body = _header(f) if f.suffix == ".safetensors" else ({}, b"")
        names = [k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"]
        if not names:
            return
        entry = header[rng.choice(names)]
        a, b_ = entry["data_offsets"]
        fill = np.full((b_ - a) // 4, rng.choice([np.nan, np.inf, -np.inf, 1e38]), np.float32).tobytes()
        _write_header(f, header, body[:a] + fill + body[b_:])


def m_tensors(rng, d):
    """Tensors dropped, added or replaced, written as a valid safetensors file."""
    from safetensors.torch import load_file, save_file

    f = d / rng.choice([MODEL_FILE, MODEL_FILE, STATE_FILE])
    tensors = load_file(str(f))
    name = rng.choice(list(tensors))
    choice = rng.randrange(4)
    if choice == 0:
        del tensors[name]
    elif choice == 1:
        tensors[rng.choice(["extra", "target.extra", "optim.999.exp_avg", "rng.cuda.0", "patch.cam9.weight"])] = \
            torch.zeros(rng.choice([(3,), (2, 2), ()]))
    elif choice == 2:
        t = tensors[name]
        tensors[name] = torch.zeros(*[s + rng.choice([0, 1]) for s in t.shape], 1)
    else:
        tensors[name] = tensors[name].to(rng.choice([torch.float64, torch.float16, torch.int32, torch.uint8]))
    save_file(tensors, str(f))


def m_state_json(rng, d):
    f = d / STATE_JSON
    sj = json.loads(f.read_text())
    path = rng.choice(list(_leaves(sj)))
    if rng.random() < 0.3:
        del _get(sj, path[:-1])[path[-1]]
    else:
        _get(sj, path[:-1])[path[-1]] = rng.choice(WEIRD)
    f.write_text(json.dumps(sj))


def m_links(rng, d):
    """A file replaced by a link out of the directory, a directory or a FIFO; or ``latest`` pointing out."""
    name = rng.choice([MODEL_FILE, META_FILE, STATE_FILE, STATE_JSON])
    f = d / name
    choice = rng.randrange(4)
    outside = d.parent / f"outside_{name}"
    if choice == 0:
        shutil.copyfile(f, outside)
        f.unlink()
        f.symlink_to(outside)
    elif choice == 1:
        f.unlink()
        f.mkdir()
    elif choice == 2:
        f.unlink()
        os.mkfifo(f)
    else:  # a run directory whose latest names a path outside it
        run = d / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "latest").write_text(rng.choice(["../../..", "../../" + d.name, "/etc", "..", "step/../../.."]))
        return run
    return d


MUTATIONS = {"drop": m_drop, "retype": m_retype, "huge": m_huge, "files": m_files, "meta_bytes": m_meta_bytes,
             "header": m_header, "header_length": m_header_length, "bytes": m_bytes, "tensors": m_tensors,
             "state_json": m_state_json, "links": m_links}


def resign(d: Path) -> None:
    """Rewrite meta.json's sha256 entries to match the files (a forger controls both)."""
    if not (d / META_FILE).is_file():
        return  # a FIFO or directory: reading it here would block the fuzzer itself
    try:
        meta = _meta(d)
        files = meta["files"]
        for name in list(files) if isinstance(files, dict) else []:
            f = d / name
            if isinstance(name, str) and "/" not in name and f.is_file() and not f.is_symlink():
                files[name] = hashlib.sha256(f.read_bytes()).hexdigest()
        _write_meta(d, meta)
    except (ValueError, KeyError, TypeError, OSError, RecursionError):
        pass  # meta.json itself is the mutation


def mutated(rng: random.Random, base: Path, work: Path, kind: str | None = None) -> tuple[str, Path]:
    """(mutation name, path to load): a fresh copy of ``base`` under ``work`` with one mutation."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    d = work / "ckpt"
    shutil.copytree(base, d)
    kind = kind or rng.choice(list(MUTATIONS))
    target = MUTATIONS[kind](rng, d) or d
    if rng.random() < 0.5:
        resign(d)
    return kind, target


# ---- one load ----------------------------------------------------------------------------------
class Hang(BaseException):
    """A load past the timeout (a BaseException, so no loader's except clause swallows it)."""


def _alarm(signum, frame):
    raise Hang


def robot_obs(spec, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
            "joint_positions": rng.uniform(spec.lower, spec.upper), "instruction": spec.instructions()[0],
            "features": rng.normal(size=spec.feature_dim)}


def attempt(path: Path, timeout: float = 20.0) -> tuple[str, str]:
    """('clean' | 'refused' | 'crash' | 'hang', detail) of loading ``path`` both ways."""
    return worst(attempt_each(path, timeout))


def worst(outcomes: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The worst of several loaders' outcomes: hang, crash, refused, clean."""
    for kind in ("hang", "crash", "refused"):
        for outcome in outcomes.values():
            if outcome[0] == kind:
                return outcome
    return "clean", ""


def attempt_each(path: Path, timeout: float = 20.0) -> dict[str, tuple[str, str]]:
    """{loader: (outcome, detail)} of ``Policy.load`` + act and ``load_into_learner`` on ``path``."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    outcomes = {}
    try:
        for name, load in (("policy", _policy_load), ("learner", _learner_load)):
            try:
                load(path)
                outcomes[name] = ("clean", "")
            except PacRosError as exc:
                outcomes[name] = ("refused", str(exc))
            except Exception as exc:  # the property under test: nothing else ever escapes
                outcomes[name] = ("crash", f"{name}: {type(exc).__name__}: {exc}"[:400])
    except Hang:
        outcomes["hang"] = ("hang", f"over {timeout} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return outcomes


def _policy_load(path: Path) -> None:
    policy = Policy.load(path, device="cpu")
    spec = policy.spec
    obs = robot_obs(spec)
    cmd, _ = policy.act(obs)
    lower, upper = spec.lower, spec.upper
    ok = np.isfinite(cmd).all() and (cmd >= lower).all() and (cmd <= upper).all()
    if not ok or np.any(np.abs(cmd - np.clip(obs["joint_positions"], lower, upper)) > spec.max_step + 1e-6):
        raise AssertionError(f"unsafe command {cmd}")


_PRISTINE: list[Learner] = []  # copied for every resume (building a learner costs more than a load)


def _learner_load(path: Path) -> None:
    if not _PRISTINE:
        _PRISTINE.append(new_learner())
    state = torch.get_rng_state()
    try:
        load_into_learner(path, copy.deepcopy(_PRISTINE[0]))
    finally:
        torch.set_rng_state(state)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, seed: int = 0, timeout: float = 20.0, memory_mib: float = 1024.0, log=print) -> dict:
    """Fuzz ``n`` inputs; returns the counts and the first crashes and hangs."""
    torch.set_num_threads(1)
    rng = random.Random(seed)
    counts, kinds, per_loader, failures = Counter(), Counter(), Counter(), []
    with tempfile.TemporaryDirectory(prefix="fuzz_ckpt_") as tmp:
        base = make_base(Path(tmp) / "base")
        start_rss = peak_rss_mib()
        for i in range(n):
            kind, path = mutated(rng, base, Path(tmp) / "work")
            each = attempt_each(path, timeout)
            for loader, (result, _) in each.items():
                per_loader[f"{loader} {result}"] += 1
            outcome, detail = worst(each)
            counts[outcome] += 1
            kinds[(kind, outcome)] += 1
            if outcome in ("crash", "hang") and len(failures) < 20:
                failures.append(f"input {i} ({kind}): {outcome}: {detail}")
            if log and (i + 1) % 500 == 0:
                log(f"{i + 1} inputs: {dict(counts)}", flush=True)
    growth = peak_rss_mib() - start_rss
    return {"inputs": n, "clean": counts["clean"], "refused": counts["refused"], "crash": counts["crash"],
            "hang": counts["hang"], "peak_rss_growth_mib": growth, "excessive_memory": growth > memory_mib,
            "by_mutation": {f"{k}/{o}": c for (k, o), c in sorted(kinds.items())},
            "by_loader": dict(sorted(per_loader.items())), "failures": failures}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="mutated inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take before it is a hang")
    ap.add_argument("--memory-mib", type=float, default=1024.0, help="peak memory growth counted as excessive")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    r = run(args.n, args.seed, args.timeout, args.memory_mib)
    wall = time.perf_counter() - t0
    print(f"inputs {r['inputs']}  clean loads {r['clean']}  clear refusals {r['refused']}  crashes {r['crash']}  "
          f"hangs {r['hang']}")
    print(f"peak memory growth {r['peak_rss_growth_mib']:.0f} MiB{' (excessive)' if r['excessive_memory'] else ''}; "
          f"wall {wall:.0f} s ({1000 * wall / max(1, r['inputs']):.1f} ms per input)")
    print("by loader: " + ", ".join(f"{k} {v}" for k, v in r["by_loader"].items()))
    print("by mutation/outcome: " + ", ".join(f"{k} {v}" for k, v in r["by_mutation"].items()))
    for line in r["failures"]:
        print(line)
    return 1 if r["crash"] or r["hang"] or r["excessive_memory"] else 0


if __name__ == "__main__":
    sys.exit(main())
