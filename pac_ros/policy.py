"""Deployable PAC policy: load a checkpoint, act on one observation.

ROS-free; the policy node wraps it. Every command goes through
``Control.command`` and ``spec.safe_command``, so it is finite and within
the joint limits and step bounds whatever the network outputs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .cameras import CameraGeometry
from .checkpoint import CheckpointError, declared_model, load_model_state, resolve
from .control import Control
from .model import PACModel, tokenize
from .perception import BlockTracker
from .spec import Spec, SpecError

DECODING = ("greedy", "mean", "sample", "q_filter")
AUTO_DECODING = "auto"  # the decoding the checkpoint was evaluated with (meta.json "decoding"), else greedy
PRECISION = ("fp32", "bf16")
GRAPH_DECODING = ("greedy", "mean")  # deterministic: a captured CUDA graph can replay them


def resolve_decoding(decoding: str, meta: Mapping[str, Any]) -> str:
    """``decoding``, or for "auto" the one recorded in the checkpoint's meta (greedy if none)."""
    if decoding != AUTO_DECODING:
        return decoding
    chosen = meta.get("decoding") or "greedy"
    if chosen not in DECODING:
        raise CheckpointError(f"meta.json decoding {chosen!r} is not one of {DECODING}")
    return chosen


def capture_cuda_graph(fn, device: torch.device, warmup: int = 3) -> tuple[Any, Any]:
    """(graph, output) of ``fn()`` captured as one CUDA graph after ``warmup`` calls on a side
    stream (allocator and kernel selection settle outside the capture). ``graph.replay()``
    reruns it on whatever its input tensors then hold and rewrites the output in place."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Policy:
    def __init__(self, model: PACModel, spec: Spec, device: str | torch.device = "auto",
                 decoding: str = "greedy", temperature: float = 1.0, n_candidates: int = 16,
                 meta: Mapping[str, Any] | None = None, seed: int | None = None,
                 precision: str = "fp32", cuda_graph: bool = False):
        if decoding not in DECODING:
            raise ValueError(f"decoding must be one of {DECODING}, got {decoding!r}")
        if not 0 < temperature < float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        if precision not in PRECISION:
            raise ValueError(f"precision must be one of {PRECISION}, got {precision!r}")
        self.device = pick_device(device)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"cuda_graph needs a CUDA device, the policy runs on {self.device}")
        if cuda_graph and decoding not in GRAPH_DECODING:
            raise ValueError("cuda_graph replays a fixed computation: decoding must be greedy or mean, "
                             f"got {decoding!r}")
        self.precision, self.cuda_graph = precision, cuda_graph
        self._graph: tuple | None = None  # (CUDAGraph, static inputs, static outputs) once captured
        self.model = model.to(self.device).eval()
        self.spec, self.meta = spec, dict(meta or {})
        self.control = Control(model.config, spec)
        self.tracker = None
        if model.config.locates_blocks:  # pixels -> block poses through the calibrated cameras
            self.tracker = BlockTracker(self.model.locator, CameraGeometry.from_mjcf(spec, names=model.camera_names))
        self.decoding, self.temperature, self.n_candidates = decoding, temperature, n_candidates
        self.generator = torch.Generator(self.device)
        if seed is not None:
            self.generator.manual_seed(seed)

    @classmethod
    def load(cls, path: str | Path, spec: Spec | None = None, device: str | torch.device = "auto",
             **kw: Any) -> "Policy":
        """Load a checkpoint; if ``spec`` (the robot's) is given, the checkpoint's must match it.
        ``decoding="auto"``: the decoding recorded with the checkpoint (resolve_decoding)."""
        meta, weights = load_model_state(path)
        if "decoding" in kw:
            kw["decoding"] = resolve_decoding(kw["decoding"], meta)
        where = resolve(path)
        config, ckpt_spec = declared_model(meta, f"{where}/meta.json")
        if spec is not None:
            spec.check_compatible(ckpt_spec, what=f"checkpoint {where}")
        model = PACModel(config, ckpt_spec)
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{where}/model.safetensors: weights do not fit the model config ({exc})") from exc
        return cls(model, spec or ckpt_spec, device=device, meta=meta, **kw)

    def reset(self) -> None:
        """A new episode: forget the blocks' last seen poses (image_stem: locator)."""
        if self.tracker is not None:
            self.tracker.reset()

    # ---- inputs -------------------------------------------------------------------
    def obs_batch(self, obs: Mapping[str, Any]) -> dict:
        """One robot observation -> the model's batch of one (validated)."""
        spec, cfg, dev = self.spec, self.model.config, self.device
        q = np.asarray(obs["joint_positions"], dtype=np.float64).reshape(-1)
        if q.shape != (spec.action_dim,):
            raise ValueError(f"joint_positions must have {spec.action_dim} values, got {q.shape[0]}")
        batch: dict[str, Any] = {
            "joint_positions": torch.as_tensor(np.nan_to_num(q), dtype=torch.float32, device=dev)[None],
            "instruction_tokens": torch.as_tensor(tokenize(obs["instruction"], cfg.max_instruction_len),
                                                  device=dev)[None],
        }
        if cfg.uses_images:
            images = {}
            for cam in spec.cameras:
                img = obs.get("images", {}).get(cam.name)
                if img is None:
                    raise ValueError(f"observation lacks camera {cam.name!r}")
                img = np.asarray(img)
                if img.ndim == 2:
                    img = img[..., None]
                if img.shape != cam.shape or img.dtype != np.uint8:
                    raise ValueError(f"camera {cam.name}: expected uint8 {cam.shape}, got {img.dtype} {img.shape}")
                images[cam.name] = torch.as_tensor(img, device=dev)[None]
            batch["images"] = images
            if self.tracker is not None:
                poses = self.tracker(images, np.nan_to_num(q))
                f = self.control.features(np.nan_to_num(q)[None], poses[None], [obs["instruction"]])
                batch["features"] = torch.as_tensor(f, device=dev)
        if cfg.uses_features:
            f = obs.get("features")
            if f is None:
                raise ValueError(f"obs_mode {cfg.obs_mode!r} needs 'features' ({spec.feature_dim} floats)")
            f = np.asarray(f, dtype=np.float32).reshape(-1)
            if f.shape != (spec.feature_dim,):
                raise ValueError(f"features must have {spec.feature_dim} values, got {f.shape[0]}")
            f = self.control.features(np.nan_to_num(q)[None], np.nan_to_num(f)[None], [obs["instruction"]])
            batch["features"] = torch.as_tensor(f, device=dev)
        return batch

    # ---- acting -------------------------------------------------------------------
    def _network(self, batch: dict) -> torch.Tensor:
        """The whole network step, without a host sync: [action (A), value, finite, entropy]."""
        m = self.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                            cache_enabled=False):
            lat = m.encode(batch)
            logits = m.policy_logits(lat).float()
            if self.decoding == "greedy":
                action = m.greedy_action(logits)[:, None]
            elif self.decoding == "mean":  # expectation over the bins: finer than one bin
                action = (logits.softmax(-1) * m.action_bins).sum(-1)[:, None]
            elif self.decoding == "sample":
                action = m.sample_actions(logits, 1, self.temperature, self.generator)
            else:  # Q-filtered: greedy + K-1 samples, scored against one encoding
                k = max(1, self.n_candidates - 1)
                cand = torch.cat([m.greedy_action(logits)[:, None],
                                  m.sample_actions(logits, k, self.temperature, self.generator)], 1)
                action = cand[:, m.q_value(lat, cand).nan_to_num(float("-inf")).argmax(-1)[0]][:, None]
            value = m.q_value(lat, action)[0, 0].float()
        finite = torch.isfinite(logits).all() & torch.isfinite(value)
        entropy = PACModel.entropy(logits).sum()
        return torch.cat([action[0, 0].float(), torch.stack([value, finite.float(), entropy])])

    def _replay(self, batch: dict) -> torch.Tensor:
        """``_network`` through a CUDA graph captured on the first call (fixed shapes): one
        launch instead of hundreds of kernel launches per tick."""
        if self._graph is None:
            static = {k: ({c: t.clone() for c, t in v.items()} if isinstance(v, dict) else v.clone())
                      for k, v in batch.items()}
            graph, out = capture_cuda_graph(lambda: self._network(static), self.device)
            self._graph = (graph, static, out)
        graph, static, out = self._graph
        for k, v in batch.items():
            if isinstance(v, dict):
                for c, t in v.items():
                    static[k][c].copy_(t)
            else:
                static[k].copy_(v)
        graph.replay()
        return out

    @torch.inference_mode()
    def act_normalized(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        """Model action in [-1,1] (NaN where the network output is not finite) and info."""
        batch = self.obs_batch(obs)
        out = (self._replay(batch) if self.cuda_graph else self._network(batch)).double().cpu().numpy()
        A = self.model.action_dim
        a, value, ok, entropy = out[:A].copy(), out[A], bool(out[A + 1]), out[A + 2]
        if not ok:
            a = np.full_like(a, np.nan)  # hold position (safe_command maps NaN to current)
        info = {"value": float(value) if ok else float("nan"), "fallback": not ok,
                "entropy": float(entropy) if ok else float("nan")}
        return a, info

    def act(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        """Robot observation -> (joint command float64[A], info). Always finite and within limits."""
        t0 = time.perf_counter()
        current = np.asarray(obs["joint_positions"], dtype=np.float64).reshape(-1)
        a, info = self.act_normalized(obs)
        command = self.spec.safe_command(self.control.command(a, np.nan_to_num(current)), current)
        info["action"] = a
        info["latency_ms"] = (time.perf_counter() - t0) * 1e3
        return command, info


__all__ = ["Policy", "pick_device", "CheckpointError", "SpecError", "DECODING", "PRECISION", "GRAPH_DECODING"]
