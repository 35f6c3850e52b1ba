"""Training checkpoints: the deployable checkpoint (pac_ros.checkpoint) plus the state an
exact resume needs.

  train_state.safetensors  target weights, optimiser tensors, torch RNG states
  train_state.json         optimiser hyper-parameters and scalars, learner step,
                           Python/NumPy RNG and sampler states
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..checkpoint import (
    DTYPES,
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    STATE_JSON,
    CheckpointError,
    check_tensors,
    commit,
    cpu_tensors,
    declared_weights,
    inside,
    load_model_state,
    load_tensors,
    read_header,
    read_json_file,
    resolve,
    staging_dir,
    verify_file,
)

ADAM_STATE = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def save_checkpoint(path: str | Path, learner, *, meta: Mapping[str, Any],
                    resume_json: Mapping[str, Any] | None = None,
                    resume_tensors: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``learner`` (online, target, optimiser) and ``meta`` to the directory ``path``."""
    path = Path(path)
    tmp = staging_dir(path)
    save_file(cpu_tensors(learner.model.state_dict()), str(tmp / MODEL_FILE))

    tensors = {f"target.{k}": v for k, v in learner.target.state_dict().items()}
    opt = learner.optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    tensors["learner.log_eta"] = learner.log_eta.detach().reshape(1)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tensors.update(resume_tensors or {})
    save_file(cpu_tensors(tensors), str(tmp / STATE_FILE))
    state_json = {"step_count": learner.step_count, "param_groups": opt["param_groups"],
                  "optim_scalars": scalars, "resume": dict(resume_json or {})}
    (tmp / STATE_JSON).write_text(json.dumps(state_json))

    return commit(tmp, path, meta, learner.step_count, (MODEL_FILE, STATE_FILE, STATE_JSON))


@dataclass
class ResumeState:
    step_count: int
    resume: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)


def _signature(t: torch.Tensor) -> tuple[str, tuple[int, ...]]:
    return DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape)


def check_state_tensors(f: Path, learner) -> None:
    """CheckpointError naming ``f`` and the tensor unless train_state.safetensors' header fits
    ``learner``: every target weight, optimiser moments shaped as their parameters, the RNG state."""
    found = read_header(f)
    params = [p for g in learner.optimizer.param_groups for p in g["params"]]
    expected = {f"target.{k}": _signature(v) for k, v in learner.target.state_dict().items()}
    expected["rng.torch"] = _signature(torch.get_rng_state())
    optional = {"learner.log_eta": ("F32", (1,))}
    for i, p in enumerate(params):
        optional[f"optim.{i}.step"] = ("F32", ())
        optional.update({f"optim.{i}.{k}": _signature(p) for k in ADAM_STATE[1:]})
    ours = {k: v for k, v in found.items() if k in expected or k.startswith(("target.", "optim.", "learner.", "rng."))}
    cuda = {k: v for k, v in ours.items() if k.startswith("rng.cuda.") and v[0] == "U8" and len(v[1]) == 1}
    check_tensors(f, {k: v for k, v in ours.items() if k not in cuda},
                  {**expected, **{k: v for k, v in optional.items() if k in ours}}, "this learner")
    for i in range(len(params)):
        held = [k for k in ADAM_STATE if f"optim.{i}.{k}" in found]
        if held and not {"step", "exp_avg", "exp_avg_sq"} <= set(held):
            raise CheckpointError(f"{f}: optimiser state of parameter {i} incomplete: only {held}")


def read_state_json(f: Path, meta: dict, learner) -> dict:
    """train_state.json, its fields checked against ``learner``'s optimiser and meta.json's step."""
    sj = read_json_file(f, "training state")
    step = sj.get("step_count")
    if not isinstance(step, int) or isinstance(step, bool) or step != meta["step"]:
        raise CheckpointError(f"{f}: step_count: {step!r}, meta.json has step {meta['step']}")
    groups, mine = sj.get("param_groups"), learner.optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(mine):
        raise CheckpointError(f"{f}: param_groups: expected a list of {len(mine)} optimiser groups")
    for i, (g, m) in enumerate(zip(groups, mine)):
        if not isinstance(g, dict) or set(g) != set(m) or g["params"] != m["params"]:
            raise CheckpointError(f"{f}: param_groups[{i}]: keys or parameters differ from this optimiser's")
        for k, v in g.items():
            if k != "params" and _kind(v) != _kind(m[k]):
                raise CheckpointError(f"{f}: param_groups[{i}].{k}: {v!r}, expected {_kind(m[k])}")
    scalars = sj.get("optim_scalars")
    if not isinstance(scalars, dict) or not all(
            isinstance(k, str) and re.fullmatch(r"\d+\.\w+", k) and _kind(v) == "number" for k, v in scalars.items()):
        raise CheckpointError(f"{f}: optim_scalars: expected a mapping of 'index.name' to numbers")
    if not isinstance(sj.get("resume", {}), dict):
        raise CheckpointError(f"{f}: resume: expected a mapping")
    return sj


def _kind(v: Any) -> str:
    """A JSON value's kind, numbers finite (what an optimiser hyper-parameter may be)."""
    if isinstance(v, bool) or v is None:
        return repr(v) if v is None else "bool"
    if isinstance(v, (int, float)):
        return "number" if math.isfinite(v) else "non-finite"
    if isinstance(v, (list, tuple)):
        return "list of " + ",".join(_kind(x) for x in v)
    return type(v).__name__


def load_into_learner(path: str | Path, learner, verify: bool = True) -> ResumeState:
    """Restore online, target and optimiser state (exact resume); returns the extra state.
    Everything is checked against ``learner`` before any tensor is read."""
    d = resolve(path)
    meta, weights = load_model_state(d, verify)
    f = inside(d, STATE_FILE)
    if verify:
        verify_file(f, meta)
    check_state_tensors(f, learner)
    state = load_tensors(d, STATE_FILE, meta, verify=False)
    sf = inside(d, STATE_JSON)
    if verify:
        verify_file(sf, meta)
    sj = read_state_json(sf, meta, learner)
    try:
        learner.model.load_state_dict(weights)
        learner.target.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("target.")})
    except RuntimeError as exc:
        raise CheckpointError(f"{d}: weights do not fit this model ({exc})") from exc
    opt_state: dict[int, dict] = {}
    for k, v in state.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    for k, v in sj["optim_scalars"].items():
        idx, name = k.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    try:
        learner.optimizer.load_state_dict({"state": opt_state, "param_groups": sj["param_groups"]})
        torch.set_rng_state(state["rng.torch"])
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{f}: optimiser or RNG state does not fit this learner ({exc})") from exc
    learner.step_count = int(sj["step_count"])
    if "learner.log_eta" in state:
        with torch.no_grad():
            learner.log_eta.copy_(state["learner.log_eta"].reshape(()))
    cuda = [state[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in state]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    internal = ("target.", "optim.", "rng.torch", "rng.cuda", "learner.")
    extra = {k: v for k, v in state.items() if not k.startswith(internal)}
    return ResumeState(learner.step_count, sj.get("resume", {}), extra)


WEIGHTS = ("online", "target")


def load_target_state(path: str | Path, verify: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, target-network weights) of a training checkpoint. Under ``target_update: polyak`` they
    are the online weights' exponential moving average (rate τ, about the last 1/τ steps), which
    a noisy last step moves far less. Checked like ``load_model_state`` before any is read."""
    d, meta, expected = declared_weights(path)
    f = d / STATE_FILE
    if not f.exists() and not f.is_symlink():
        raise CheckpointError(f"{f}: missing: {d} is a deployable checkpoint, only a training checkpoint "
                              "holds the target network's weights")
    f = inside(d, STATE_FILE)
    if verify:
        verify_file(f, meta)
    found = {k[len("target."):]: v for k, v in read_header(f).items() if k.startswith("target.")}
    check_tensors(f, found, expected)
    try:
        with safe_open(str(f), framework="pt") as sf:
            return meta, {k: sf.get_tensor(f"target.{k}") for k in expected}
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{f}: corrupted or truncated safetensors file ({exc})") from exc


def save_weights_deployable(path: str | Path, out: str | Path, weights: str = "target") -> Path:
    """The deployable checkpoint (meta.json + model.safetensors) of one of a training checkpoint's
    weight sets, ``online`` or ``target``; meta.json's ``weights`` says which. ``out`` may replace
    an earlier checkpoint, never another directory or file."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    out = Path(out)
    if out.exists() and not (out.is_dir() and (out / META_FILE).is_file()):
        raise CheckpointError(f"{out}: exists and is not a checkpoint directory; not replacing it")
    meta, tensors = (load_target_state if weights == "target" else load_model_state)(path)
    tmp = staging_dir(out)
    save_file(cpu_tensors(tensors), str(tmp / MODEL_FILE))
    kept = {k: v for k, v in meta.items() if k not in ("files", "format", "step", "saved_at")}
    return commit(tmp, out, dict(kept, weights=weights), meta["step"], (MODEL_FILE,))
