"""Training checkpoints: the deployable checkpoint (pac_ros.checkpoint) plus the state an
exact resume needs.

  train_state.safetensors  target weights, optimiser tensors, torch RNG states
  train_state.json         optimiser hyper-parameters and scalars, learner step,
                           Python/NumPy RNG and sampler states
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file

from ..checkpoint import (MODEL_FILE, STATE_FILE, STATE_JSON, CheckpointError, commit, cpu_tensors, load_model_state,
                          load_tensors, resolve, staging_dir, verify_file)


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


def load_into_learner(path: str | Path, learner, verify: bool = True) -> ResumeState:
    """Restore online, target and optimiser state (exact resume); returns the extra state."""
    d = resolve(path)
    meta, weights = load_model_state(d, verify)
    state = load_tensors(d, STATE_FILE, meta, verify)
    f = d / STATE_JSON
    if verify:
        verify_file(f, meta)
    sj = json.loads(f.read_text())
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
    learner.optimizer.load_state_dict({"state": opt_state, "param_groups": sj["param_groups"]})
    learner.step_count = int(sj["step_count"])
    if "learner.log_eta" in state:
        with torch.no_grad():
            learner.log_eta.copy_(state["learner.log_eta"].reshape(()))
    torch.set_rng_state(state["rng.torch"])
    cuda = [state[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in state]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    internal = ("target.", "optim.", "rng.torch", "rng.cuda", "learner.")
    extra = {k: v for k, v in state.items() if not k.startswith(internal)}
    return ResumeState(learner.step_count, sj.get("resume", {}), extra)
