"""Checkpoints: safetensors tensors + JSON sidecars, never pickle.

A checkpoint is a directory:
  model.safetensors        online weights (all a deployed policy needs)
  meta.json                format, preset, model config, spec, train config, dataset
                           fingerprint, step, sha256 of every file
  train_state.safetensors  target weights, optimiser tensors, torch RNG states (resume)
  train_state.json         optimiser hyper-parameters and scalars, learner step,
                           Python/NumPy RNG and sampler states (resume)
It is written to a temporary directory and renamed into place, so a crash never
leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..jsonfile import read_json_object

FORMAT = "pac_ros.checkpoint/1"
MODEL_FILE, META_FILE = "model.safetensors", "meta.json"
STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupted or of another format."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contig(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from its directory, meta.json or model.safetensors path, or a
    training run directory (its ``latest`` checkpoint)."""
    path = Path(path)
    if path.is_file() and path.name in (MODEL_FILE, META_FILE, STATE_FILE, STATE_JSON):
        path = path.parent
    if (path / "latest").is_file():
        path = path / "checkpoints" / (path / "latest").read_text().strip()
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    return path


def save_checkpoint(path: str | Path, learner, *, meta: Mapping[str, Any],
                    resume_json: Mapping[str, Any] | None = None,
                    resume_tensors: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``learner`` (online, target, optimiser) and ``meta`` to the directory ``path``."""
    path = Path(path)
    tmp = _fresh_tmp(path)
    save_file(_contig(learner.model.state_dict()), str(tmp / MODEL_FILE))

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
    save_file(_contig(tensors), str(tmp / STATE_FILE))
    state_json = {"step_count": learner.step_count, "param_groups": opt["param_groups"],
                  "optim_scalars": scalars, "resume": dict(resume_json or {})}
    (tmp / STATE_JSON).write_text(json.dumps(state_json))

    return _finish(tmp, path, meta, learner.step_count, (MODEL_FILE, STATE_FILE, STATE_JSON))


def save_deployable(path: str | Path, model, *, meta: Mapping[str, Any], step: int = 0) -> Path:
    """Write only what a deployed policy loads (``model``'s weights and ``meta``), no training state."""
    tmp = _fresh_tmp(Path(path))
    save_file(_contig(model.state_dict()), str(tmp / MODEL_FILE))
    return _finish(tmp, Path(path), meta, step, (MODEL_FILE,))


def _fresh_tmp(path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, path: Path, meta: Mapping[str, Any], step: int, files: tuple[str, ...]) -> Path:
    """Write meta.json (with every file's sha256) into ``tmp``, then rename it into place as ``path``."""
    meta = dict(meta, format=FORMAT, step=step, saved_at=time.time(), files={f: _sha256(tmp / f) for f in files})
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path


def read_meta(path: str | Path) -> dict:
    d = resolve(path)
    f = d / META_FILE
    meta = read_json_object(f, CheckpointError, f"{f}: missing; not a pac_ros checkpoint", "checkpoint metadata")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{f}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _load_tensors(d: Path, name: str, meta: Mapping[str, Any], verify: bool) -> dict[str, torch.Tensor]:
    f = d / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing")
    if verify:
        want = meta.get("files", {}).get(name)
        if want is not None and _sha256(f) != want:
            raise CheckpointError(f"{f}: corrupted or truncated (sha256 does not match meta.json)")
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{f}: corrupted or truncated safetensors file ({exc})") from exc


def load_model_state(path: str | Path, verify: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, online weights) of a checkpoint."""
    d = resolve(path)
    meta = read_meta(d)
    return meta, _load_tensors(d, MODEL_FILE, meta, verify)


@dataclass
class ResumeState:
    step_count: int
    resume: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)


def load_into_learner(path: str | Path, learner, verify: bool = True) -> ResumeState:
    """Restore online, target and optimiser state (exact resume); returns the extra state."""
    d = resolve(path)
    meta, weights = load_model_state(d, verify)
    state = _load_tensors(d, STATE_FILE, meta, verify)
    f = d / STATE_JSON
    if verify and _sha256(f) != meta.get("files", {}).get(STATE_JSON):
        raise CheckpointError(f"{f}: corrupted or truncated (sha256 does not match meta.json)")
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
    extra = {k: v for k, v in state.items() if not k.startswith(("target.", "optim.", "rng.torch", "rng.cuda", "learner."))}
    return ResumeState(learner.step_count, sj.get("resume", {}), extra)


def checkpoint_meta(model, preset: str | None = None, train_config: Mapping[str, Any] | None = None,
                    dataset_fingerprint: str | None = None, **extra: Any) -> dict:
    """The sidecar fields every checkpoint carries."""
    return dict(preset=preset, model_config=model.config.to_dict(), spec=model.spec.to_dict(),
                spec_fingerprint=model.spec.fingerprint(), train_config=dict(train_config or {}),
                dataset_fingerprint=dataset_fingerprint,
                n_parameters=sum(p.numel() for p in model.parameters()), **extra)
