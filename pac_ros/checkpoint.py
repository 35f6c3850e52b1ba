"""Checkpoints: safetensors tensors + JSON sidecars, never pickle.

A checkpoint is a directory:
  model.safetensors        online weights (all a deployed policy needs)
  meta.json                format, preset, model config, spec, train config, dataset
                           fingerprint, step, sha256 of every file
  train_state.safetensors  target weights, optimiser tensors, torch RNG states (resume;
  train_state.json         training checkpoints only, see pac_ros.learning.checkpoint)
It is written to a temporary directory and renamed into place, so a crash never
leaves a half-written checkpoint under the final name.

This module is what deployment needs (locate, verify, load, write a deployable
checkpoint) and imports nothing of the training code.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import PacRosError
from .jsonfile import read_json_object

FORMAT = "pac_ros.checkpoint/1"
MODEL_FILE, META_FILE = "model.safetensors", "meta.json"
STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"


class CheckpointError(PacRosError, RuntimeError):
    """A checkpoint that is missing, truncated, corrupted or of another format."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU copies, as safetensors writes them."""
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


def save_deployable(path: str | Path, model, *, meta: Mapping[str, Any], step: int = 0) -> Path:
    """Write only what a deployed policy loads (``model``'s weights and ``meta``), no training state."""
    tmp = staging_dir(Path(path))
    save_file(cpu_tensors(model.state_dict()), str(tmp / MODEL_FILE))
    return commit(tmp, Path(path), meta, step, (MODEL_FILE,))


def staging_dir(path: Path) -> Path:
    """An empty temporary directory next to ``path``, to write a checkpoint into before ``commit``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, path: Path, meta: Mapping[str, Any], step: int, files: tuple[str, ...]) -> Path:
    """Write meta.json (with every file's sha256) into ``tmp``, then rename it into place as ``path``."""
    meta = dict(meta, format=FORMAT, step=step, saved_at=time.time(),
                files={f: sha256_file(tmp / f) for f in files})
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


def verify_file(f: Path, meta: Mapping[str, Any]) -> None:
    """CheckpointError unless ``f``'s sha256 is the one meta.json lists for it."""
    if sha256_file(f) != meta.get("files", {}).get(f.name):
        raise CheckpointError(f"{f}: corrupted or truncated (sha256 does not match meta.json)")


def load_tensors(d: Path, name: str, meta: Mapping[str, Any], verify: bool) -> dict[str, torch.Tensor]:
    """The tensors of ``d/name`` (checked against meta.json's sha256 if ``verify`` and it lists one)."""
    f = d / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing")
    if verify and meta.get("files", {}).get(name) is not None:
        verify_file(f, meta)
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{f}: corrupted or truncated safetensors file ({exc})") from exc


def load_model_state(path: str | Path, verify: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, online weights) of a checkpoint."""
    d = resolve(path)
    meta = read_meta(d)
    return meta, load_tensors(d, MODEL_FILE, meta, verify)


def checkpoint_meta(model, preset: str | None = None, train_config: Mapping[str, Any] | None = None,
                    dataset_fingerprint: str | None = None, **extra: Any) -> dict:
    """The sidecar fields every checkpoint carries."""
    return dict(preset=preset, model_config=model.config.to_dict(), spec=model.spec.to_dict(),
                spec_fingerprint=model.spec.fingerprint(), train_config=dict(train_config or {}),
                dataset_fingerprint=dataset_fingerprint,
                n_parameters=sum(p.numel() for p in model.parameters()), **extra)
