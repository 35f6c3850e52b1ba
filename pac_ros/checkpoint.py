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

A checkpoint from elsewhere is untrusted: meta.json's fields are type- and range-checked (sizes
bounded, so a config cannot make the model allocate absurd memory), its file list names only the
checkpoint's own files, and a weights file's header (names, dtypes, shapes) is checked against the
model its config builds (on the ``meta`` device: no memory) before any weights are read.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import PacRosError
from .jsonfile import read_json_object
from .model import PACConfig, PACModel
from .spec import Spec

FORMAT = "pac_ros.checkpoint/1"
MODEL_FILE, META_FILE = "model.safetensors", "meta.json"
STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"
CHECKPOINT_FILES = (MODEL_FILE, STATE_FILE, STATE_JSON)  # what meta.json's "files" may name
MAX_JSON_BYTES = 16 << 20  # meta.json, train_state.json
MAX_HEADER_BYTES = 16 << 20  # a safetensors header (names, dtypes, shapes, offsets)
MAX_PARAMETERS = 4_000_000_000  # the xl preset is ~1B
# upper bounds of the model config's integer fields: far above every preset, far below absurd
CONFIG_LIMITS = {"width": 16384, "heads": 256, "n_latents": 8192, "n_self_blocks": 256, "n_cross_blocks": 64,
                 "n_decoder_blocks": 64, "input_chunk": 1 << 20, "patch_size": 512, "stem_channels": 4096,
                 "n_keypoints": 4096, "image_size": 4096, "max_instruction_len": 8192, "n_action_bins": 100_000,
                 "n_value_bins": 100_000}
MAX_MLP_RATIO = 64.0
MAX_IMAGE_TOKENS = 1 << 16  # patch tokens over all cameras
MAX_STEM_WORK = 1 << 30  # keypoint stem: pixels x channels per camera
SPEC_LIMITS = {"arm_joints": 64, "cameras": 16, "blocks": 64}
SHA256 = re.compile(r"[0-9a-f]{64}")
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
              "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


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
        name = (path / "latest").read_text(errors="replace").strip()
        if not is_plain_name(name):
            raise CheckpointError(f"{path / 'latest'}: {name[:80]!r} is not a checkpoint name inside {path}")
        path = path / "checkpoints" / name
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    return path


def is_plain_name(name: object) -> bool:
    """A file name with no directory part (nothing that can point outside a directory)."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and name not in (".", "..")
            and not any(c in name for c in "/\\\0:"))


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


def inside(d: Path, name: str) -> Path:
    """``d/name`` if it is a regular file that resolves inside ``d`` (no symlink out), else CheckpointError."""
    f = d / name
    if not f.exists() and not f.is_symlink():
        raise CheckpointError(f"{f}: missing")
    target = Path(os.path.realpath(f))  # (realpath: a link loop does not raise)
    if target.parent != Path(os.path.realpath(d)):
        raise CheckpointError(f"{f}: a link to {target}, outside the checkpoint directory")
    if not f.is_file():
        raise CheckpointError(f"{f}: not a regular file")
    return f


def read_json_file(f: Path, what: str) -> dict:
    """The JSON object in ``f`` (bounded size), or CheckpointError naming the file."""
    if f.is_file() and f.stat().st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{f}: {f.stat().st_size} bytes, more than {MAX_JSON_BYTES} for {what}")
    return read_json_object(f, CheckpointError, f"{f}: missing; not a pac_ros checkpoint", what)


def read_meta(path: str | Path) -> dict:
    """A checkpoint's meta.json, every field it is read for checked (check_meta)."""
    d = resolve(path)
    f = d / META_FILE
    if f.exists() or f.is_symlink():
        inside(d, META_FILE)
    meta = read_json_file(f, "checkpoint metadata")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{f}: format {meta.get('format')!r}, expected {FORMAT!r}")
    check_meta(meta, str(f))
    return meta


def _field(meta: Mapping[str, Any], key: str, where: str, ok, expected: str, required: bool = False) -> None:
    if key not in meta:
        if required:
            raise CheckpointError(f"{where}: {key}: missing")
        return
    if not ok(meta[key]):
        raise CheckpointError(f"{where}: {key}: expected {expected}, got {type(meta[key]).__name__} "
                              f"{str(meta[key])[:80]!r}")


def _int(lo: int, hi: int | None = None):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def _str(max_len: int, optional: bool = False):
    return lambda v: (optional and v is None) or (isinstance(v, str) and len(v) <= max_len)


def check_meta(meta: Mapping[str, Any], where: str) -> None:
    """CheckpointError naming ``where`` and the field unless every field meta.json is read for
    has its type and a sane range; the model config and spec are checked by ``declared_model``."""
    _field(meta, "format", where, _str(64), "a string", required=True)
    _field(meta, "preset", where, _str(64, optional=True), "a preset name or null")
    _field(meta, "step", where, _int(0, 2 ** 62), "an integer >= 0", required=True)
    _field(meta, "n_parameters", where, _int(0, 2 ** 62), "an integer >= 0")
    _field(meta, "world_size", where, _int(1, 1 << 20), "an integer >= 1")
    _field(meta, "saved_at", where, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
           and math.isfinite(v), "a finite number")
    for key in ("spec_fingerprint", "dataset_fingerprint", "decoding", "weights"):
        _field(meta, key, where, _str(256, optional=True), "a string or null")
    _field(meta, "train_config", where, lambda v: isinstance(v, dict), "a mapping")
    _field(meta, "files", where, lambda v: isinstance(v, dict), "a mapping of file name to sha256", required=True)
    for name, digest in meta["files"].items():
        if not is_plain_name(name):
            raise CheckpointError(f"{where}: files: {name[:80]!r} is not a file name inside the checkpoint directory")
        if name not in CHECKPOINT_FILES:
            raise CheckpointError(f"{where}: files: {name!r} is not a checkpoint file (one of {CHECKPOINT_FILES})")
        if not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise CheckpointError(f"{where}: files.{name}: expected a sha256 (64 hex digits), got {str(digest)[:80]!r}")
    declared_model(meta, where)


def declared_model(meta: Mapping[str, Any], where: str) -> tuple[PACConfig, Spec]:
    """(model config, spec) meta.json declares, within CONFIG_LIMITS and SPEC_LIMITS; CheckpointError
    naming ``where`` and the field otherwise."""
    for key in ("model_config", "spec"):
        if not isinstance(meta.get(key), Mapping):
            raise CheckpointError(f"{where}: {key}: expected a mapping, got {type(meta.get(key)).__name__}")
    raw_spec = meta["spec"]
    for key, limit in SPEC_LIMITS.items():
        if isinstance(raw_spec.get(key), list) and len(raw_spec[key]) > limit:
            raise CheckpointError(f"{where}: spec.{key}: {len(raw_spec[key])} entries, at most {limit}")
    try:
        spec = Spec.from_dict(raw_spec, f"{where}: spec")
        config = PACConfig.from_dict(meta["model_config"], f"{where}: model_config")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    for key, hi in CONFIG_LIMITS.items():
        value, lo = getattr(config, key), 0 if key == "input_chunk" else 1
        if value is not None and not lo <= value <= hi:
            raise CheckpointError(f"{where}: model_config.{key}: must be in [{lo}, {hi}], got {value}")
    if not 0.0 < config.mlp_ratio <= MAX_MLP_RATIO:
        raise CheckpointError(f"{where}: model_config.mlp_ratio: must be in (0, {MAX_MLP_RATIO}], "
                              f"got {config.mlp_ratio}")
    if not 0.0 <= config.dropout < 1.0:
        raise CheckpointError(f"{where}: model_config.dropout: must be in [0, 1), got {config.dropout}")
    if config.uses_images:
        sizes = [(config.image_size,) * 2 if config.image_size else (c.height, c.width) for c in spec.cameras]
        if config.image_stem == "patch":
            tokens = sum((h // config.patch_size) * (w // config.patch_size) for h, w in sizes)
            if tokens > MAX_IMAGE_TOKENS:
                raise CheckpointError(f"{where}: model_config: {tokens} image tokens (image_size, patch_size), "
                                      f"at most {MAX_IMAGE_TOKENS}")
        elif max(h * w for h, w in sizes) * config.stem_channels > MAX_STEM_WORK:
            raise CheckpointError(f"{where}: model_config.stem_channels: {config.stem_channels} channels on "
                                  f"{max(sizes)} images, more than {MAX_STEM_WORK} pixel-channels")
    return config, spec


def expected_tensors(config: PACConfig, spec: Spec, where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (safetensors dtype, shape)} of the weights of the model ``config`` builds, built on the
    ``meta`` device (nothing allocated); CheckpointError if the model is over MAX_PARAMETERS."""
    try:
        with torch.device("meta"):
            model = PACModel(config, spec)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: model_config does not build a model for its spec ({exc})") from exc
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: model_config: {n} parameters, at most {MAX_PARAMETERS}")
    return {k: (DTYPES.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in model.state_dict().items()}


def read_header(f: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} from a safetensors file's header, without reading its tensors;
    CheckpointError naming the file if the header is malformed or disagrees with the file size."""
    size = f.stat().st_size
    bad = f"{f}: corrupted or truncated safetensors file"
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{bad} ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise CheckpointError(f"{bad} (header length {n}, file {size} bytes, limit {MAX_HEADER_BYTES})")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{bad} (header is not JSON: {str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad} (header is not a JSON object)")
    data_bytes, out = size - 8 - n, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            ints = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (*shape, begin, end))
            ok = ints and dtype in ITEM_BYTES and begin <= end <= data_bytes
            ok = ok and end - begin == math.prod(shape) * ITEM_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{bad} (tensor {name[:80]!r}: entry {str(entry)[:120]} does not fit the file)")
        out[name] = (dtype, shape)
    return out


def check_tensors(f: Path, found: Mapping[str, tuple[str, tuple]], expected: Mapping[str, tuple[str, tuple]],
                  model: str = "the model config in meta.json") -> None:
    """CheckpointError naming ``f`` and the tensor unless ``found`` has exactly ``expected``'s names,
    dtypes and shapes."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{f}: tensors do not fit {model}: missing {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}, unexpected {[e[:80] for e in extra[:5]]}"
                              f"{' ...' if len(extra) > 5 else ''}")
    for name, (dtype, shape) in expected.items():
        if found[name] != (dtype, shape):
            raise CheckpointError(f"{f}: tensor {name!r}: {found[name][0]} {list(found[name][1])}, "
                                  f"{model} needs {dtype} {list(shape)}")


def verify_file(f: Path, meta: Mapping[str, Any]) -> None:
    """CheckpointError unless ``f``'s sha256 is the one meta.json lists for it."""
    listed = meta.get("files", {}).get(f.name)
    if listed is None:
        raise CheckpointError(f"{f.parent / META_FILE}: files: no sha256 for {f.name}")
    if sha256_file(f) != listed:
        raise CheckpointError(f"{f}: corrupted or truncated (sha256 does not match meta.json)")


def load_tensors(d: Path, name: str, meta: Mapping[str, Any], verify: bool,
                 expected: Mapping[str, tuple[str, tuple]] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``d/name``: checked against meta.json's sha256 if ``verify``, its header against
    ``expected`` ({name: (dtype, shape)}) if given, before any tensor is read."""
    f = inside(d, name)
    if verify:
        verify_file(f, meta)
    found = read_header(f)
    if expected is not None:
        check_tensors(f, found, expected)
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{f}: corrupted or truncated safetensors file ({exc})") from exc


def declared_weights(path: str | Path) -> tuple[Path, dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """(directory, meta, {name: (dtype, shape)}) of a checkpoint: the weights the model its
    meta.json declares needs, known before any weights file is opened."""
    d = resolve(path)
    meta = read_meta(d)
    config, spec = declared_model(meta, str(d / META_FILE))
    return d, meta, expected_tensors(config, spec, str(d / META_FILE))


def load_model_state(path: str | Path, verify: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, online weights) of a checkpoint; the weights are the ones the model meta.json
    declares needs (names, dtypes, shapes), checked before they are read."""
    d, meta, expected = declared_weights(path)
    return meta, load_tensors(d, MODEL_FILE, meta, verify, expected)


def checkpoint_meta(model, preset: str | None = None, train_config: Mapping[str, Any] | None = None,
                    dataset_fingerprint: str | None = None, **extra: Any) -> dict:
    """The sidecar fields every checkpoint carries."""
    return dict(preset=preset, model_config=model.config.to_dict(), spec=model.spec.to_dict(),
                spec_fingerprint=model.spec.fingerprint(), train_config=dict(train_config or {}),
                dataset_fingerprint=dataset_fingerprint,
                n_parameters=sum(p.numel() for p in model.parameters()), **extra)
