"""PAC model figures on this machine: size, latency, training throughput, scaling.

    .venv/bin/python bench/bench_model.py [--presets tiny small base] [--threads 2]

1. per preset: parameters (pixels and features modes), CPU latency of one policy
   step (encode + policy decoder + value of the chosen action) p50/p99, and training
   samples/s of the full PAC step (target network, sampled actions) on a synthetic
   in-memory batch;
2. encoder cost as input tokens grow (64 -> 4096): the Perceiver encoder (latents
   cross-attend the tokens) against a plain transformer of the same width and depth
   over all tokens, side by side with their ratio, the growth per doubling and the
   peak memory of one forward pass (each measured in a fresh process: growth of the
   resident set's high-water mark; on a GPU the allocator's peak), also for the
   encoder with input streaming off (input_chunk 0); on a GPU also as CUDA-graph
   replays, which take away the per-kernel launch cost that dominates at batch 1;
2b. the pixels policy step (batch 1, two cameras) of PAC with the patch, keypoint and locator
   image stems against a plain transformer policy of the same width and depth over the
   same tokens (what ACT-style policies do), side by side;
3. scoring K candidate actions with the Q decoder against one shared encoding,
   relative to K=1 and to a full single-action forward pass;
4. training input supply: samples/s of the real data sampler (TransitionStore over a
   recorded dataset, ``--data``) against samples/s of the learner on a synthetic
   in-memory batch, for the shipped model's configuration.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pac_ros.learning import Learner, LearnerConfig
from pac_ros.model import PACModel, count_parameters, preset
from pac_ros.model.layers import SelfBlock
from pac_ros.model.testing import random_obs
from pac_ros.policy import Policy, capture_cuda_graph
from pac_ros.spec import default_spec

DEVICE = torch.device("cpu")
SECTIONS = ("presets", "pixel_step", "scaling", "candidates", "supply")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn, repeats: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    sync()
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out[i] = time.perf_counter() - t
    return out * 1000.0  # ms


def robot_obs(spec, seed=0):
    o = random_obs(spec, 1, seed)
    return {"images": {k: v[0].numpy() for k, v in o["images"].items()},
            "joint_positions": o["joint_positions"][0].double().numpy(),
            "instruction": spec.instructions()[0], "features": o["features"][0].numpy()}


def synthetic_batch(spec, batch):
    g = torch.Generator().manual_seed(0)
    return {"obs": random_obs(spec, batch, 1), "next_obs": random_obs(spec, batch, 2),
            "action": torch.rand(batch, spec.action_dim, generator=g) * 2 - 1,
            "reward": torch.rand(batch, generator=g), "discount": torch.full((batch,), 0.99)}


# (precision, CUDA graph) variants of the policy step timed on a GPU
GPU_VARIANTS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def bench_presets(names, spec, repeats, train_steps, batch):
    gpu = DEVICE.type == "cuda"
    print(f"\n== presets ({DEVICE})")
    if gpu:
        cols = " ".join(f"{p + (' graph' if g else ''):>20s}" for p, g in GPU_VARIANTS)
        print(f"  {'preset':7s} {'params':>9s}  policy step p50/p99 ms: {cols}  {'20 Hz':>6s} {'train samples/s':>16s}"
              f"  (pixels mode; training bf16 autocast, batch {batch})")
    else:
        print(f"  {'preset':7s} {'params pixels':>14s} {'params features':>16s} {'act p50':>9s} {'act p99':>9s}"
              f" {'train samples/s':>16s}  (pixels mode, batch {batch})")
    for name in ("tiny", "small", "base", "large", "xl"):
        cfg = preset(name, obs_mode="pixels")
        n_pix = count_parameters(cfg, spec)
        n_feat = count_parameters(preset(name, obs_mode="features"), spec)
        row = f"  {name:7s} {n_pix / 1e6:8.2f}M" if gpu else f"  {name:7s} {n_pix / 1e6:13.2f}M {n_feat / 1e6:15.2f}M"
        if name not in names:
            print(row + "   (not timed: pass --presets to include)")
            continue
        torch.manual_seed(0)
        model = PACModel(cfg, spec)
        obs = robot_obs(spec)
        if gpu:
            best_p99, cells = float("inf"), []
            for precision, graph in GPU_VARIANTS:
                policy = Policy(model, spec, device=DEVICE, decoding="mean", precision=precision, cuda_graph=graph)
                lat = timed(lambda: policy.act(obs), repeats, warmup=5)
                best_p99 = min(best_p99, np.percentile(lat, 99))
                cells.append(f"{np.percentile(lat, 50):9.2f}/{np.percentile(lat, 99):<10.2f}")
                del policy
            row += "  " + " " * 24 + " ".join(cells) + f"  {'yes' if best_p99 < 50 else 'no':>6s}"
        else:
            policy = Policy(model, spec, device=DEVICE)
            lat = timed(lambda: policy.act(obs), repeats)
            row += f" {np.percentile(lat, 50):7.2f}ms {np.percentile(lat, 99):7.2f}ms"
        try:
            learner = Learner(model, LearnerConfig(amp="auto" if gpu else "none", lr_warmup_steps=1), device=DEVICE)
            data = learner.to_device(synthetic_batch(spec, batch))  # on the device once: no copy in the timing
            step = timed(lambda: learner.step(data), train_steps, warmup=2)
            print(row + f" {batch / (np.median(step) / 1000):15.0f}", flush=True)
        except torch.cuda.OutOfMemoryError:
            print(row + f" {'out of memory':>15s}", flush=True)
        learner = model = None  # free the GPU before the next preset
        if gpu:
            torch.cuda.empty_cache()


class PlainTransformer(nn.Module):
    """Self-attention over all N tokens, same width and depth as the PAC encoder."""

    def __init__(self, cfg, depth):
        super().__init__()
        blk = dict(heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qk_norm=cfg.qk_norm)
        self.blocks = nn.ModuleList(SelfBlock(cfg.width, **blk) for _ in range(depth))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


ENCODERS = ("pac", "pac_whole", "plain")  # pac_whole: input_chunk=0, all input tokens attended at once


def encoder(kind: str, preset_name: str, spec):
    cfg = preset(preset_name, obs_mode="pixels")
    torch.manual_seed(0)
    if kind == "plain":
        return cfg, PlainTransformer(cfg, cfg.n_cross_blocks + cfg.n_self_blocks).to(DEVICE).eval()
    chunk = {"pac": cfg.input_chunk, "pac_whole": 0}[kind]
    return cfg, PACModel(cfg.replace(input_chunk=chunk), spec).to(DEVICE).eval().encode_tokens


def one_pass(fn, x, training: bool) -> None:
    if training:
        fn(x.requires_grad_()).square().mean().backward()
    else:
        with torch.inference_mode():
            fn(x)


def _cuda_peak_mb(kind: str, preset_name: str, n: int, training: bool, batch: int) -> float:
    cfg, fn = encoder(kind, preset_name, default_spec())
    x = torch.randn(batch, n, cfg.width, device=DEVICE)
    one_pass(fn, x[:, :8].clone(), training)
    sync()
    before = torch.cuda.memory_allocated(DEVICE)
    torch.cuda.reset_peak_memory_stats(DEVICE)
    one_pass(fn, x, training)
    sync()
    return (torch.cuda.max_memory_allocated(DEVICE) - before) / 2**20


def peak_memory_mb(kind: str, preset_name: str, n: int, training: bool, batch: int = 1) -> float:
    """Extra peak memory (MB) of one pass over n tokens: on a GPU the allocator's peak
    above what was allocated before; on the CPU the resident set's, in a fresh process."""
    if DEVICE.type == "cuda":
        with torch.inference_mode(False), torch.enable_grad():  # the caller times under inference_mode
            return _cuda_peak_mb(kind, preset_name, n, training, batch)
    out = subprocess.run([sys.executable, __file__, "--memory-probe", kind, preset_name, str(n), str(int(training)),
                          str(batch)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_probe(kind: str, preset_name: str, n: int, training: bool, batch: int) -> None:
    """Prints the peak resident memory one pass adds (MB) — inference: a forward pass;
    training: forward + backward, activations kept for the gradient. The kernel's
    high-water mark (VmHWM) is reset just before it (Linux: write 5 to /proc/self/clear_refs)."""
    torch.set_num_threads(1)
    cfg, fn = encoder(kind, preset_name, default_spec())
    x = torch.randn(batch, n, cfg.width)
    one_pass(fn, x[:, :8].clone(), training)  # allocator and kernels warm, on a tiny input
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    one_pass(fn, x, training)
    print((_status_kib("VmHWM") - before) / 1024.0)


def graph_timed(fn, x, repeats: int) -> np.ndarray:
    """ms per replay of fn(x) captured as one CUDA graph (no per-kernel launch cost)."""
    graph, _ = capture_cuda_graph(lambda: fn(x), DEVICE)
    return timed(graph.replay, repeats)


def bench_scaling(spec, preset_name, tokens, repeats, batch=1):
    gpu = DEVICE.type == "cuda"
    fns = {k: encoder(k, preset_name, spec)[1] for k in ENCODERS}
    cfg = preset(preset_name, obs_mode="pixels")
    depth = cfg.n_cross_blocks + cfg.n_self_blocks
    print(f"\n== encoder cost vs input tokens ({preset_name}: width {cfg.width}, {cfg.n_latents} latents, "
          f"depth {depth}, input_chunk {cfg.input_chunk}; batch {batch}, {DEVICE})")
    print("  PAC = the encoder as shipped; whole = the same with input_chunk 0 (no streaming); plain = a "
          "transformer of the same width and depth over all tokens")
    graph_head = f" | CUDA graph ms: {'PAC':>6s} {'whole':>6s} {'plain':>7s} {'ratio':>6s}" if gpu else ""
    print(f"  {'tokens':>6s} {'PAC ms':>9s} {'x prev':>7s} {'whole ms':>9s} {'plain ms':>9s} {'x prev':>7s}"
          f" {'plain/PAC':>10s}{graph_head} | peak MB inference: {'PAC':>6s} {'whole':>6s} {'plain':>7s}"
          f" {'ratio':>6s} | training: {'PAC':>6s} {'plain':>7s} {'ratio':>6s}")
    prev = None
    with torch.inference_mode():
        for n in tokens:
            x = torch.randn(batch, n, cfg.width, device=DEVICE)
            t = {k: np.median(timed(lambda: fns[k](x), repeats if k != "plain" else max(3, repeats // 4),
                                    warmup=3 if k != "plain" else 1)) for k in ENCODERS}
            graphs = ""
            if gpu:
                g = {k: np.median(graph_timed(fns[k], x, repeats)) for k in ENCODERS}
                graphs = (f" | CUDA graph ms: {g['pac']:6.3f} {g['pac_whole']:6.3f} {g['plain']:7.3f} "
                          f"{g['plain'] / g['pac']:5.1f}x")
            mem = {k: peak_memory_mb(k, preset_name, n, False, batch) for k in ENCODERS}
            train = {k: peak_memory_mb(k, preset_name, n, True, batch) for k in ("pac", "plain")}
            memory = (f" | peak MB inference: {mem['pac']:6.1f} {mem['pac_whole']:6.1f} {mem['plain']:7.1f} "
                      f"{ratio(mem['plain'], mem['pac'])} | training: {train['pac']:6.1f} {train['plain']:7.1f} "
                      f"{ratio(train['plain'], train['pac'])}")
            grow = "" if prev is None else f"{t['pac'] / prev['pac']:6.2f}x"
            grow_p = "" if prev is None else f"{t['plain'] / prev['plain']:6.2f}x"
            print(f"  {n:6d} {t['pac']:9.2f} {grow:>7s} {t['pac_whole']:9.2f} {t['plain']:9.2f} {grow_p:>7s}"
                  f" {t['plain'] / t['pac']:9.1f}x{graphs}{memory}", flush=True)
            prev = t


class PlainPolicy(nn.Module):
    """A plain transformer policy over the same input tokens as a PAC model: self-attention over
    all of them (as ACT's encoder does), then per-dimension action logits from the mean token.
    Same width and depth as the PAC encoder, so the parameter counts are close."""

    def __init__(self, pac: PACModel):
        super().__init__()
        cfg = pac.config
        self.pac = pac  # its tokenizer (patch or keypoint stems, text, joints); its other parts are unused
        self.body = PlainTransformer(cfg, cfg.n_cross_blocks + cfg.n_self_blocks + cfg.n_decoder_blocks)
        self.head = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, pac.action_dim * cfg.n_action_bins))
        self.shape = (pac.action_dim, cfg.n_action_bins)

    def forward(self, obs):
        tok, _ = self.pac.tokens(obs)
        return self.head(self.body(tok).mean(1)).view(-1, *self.shape)

    def n_params(self) -> int:
        used = sum(p.numel() for n, p in self.pac.named_parameters()
                   if n.startswith(("patch", "keypoint", "locator", "feature_", "pos_", "camera_id", "joint_", "byte_",
                                    "text_", "state_")))
        return used + sum(p.numel() for p in [*self.body.parameters(), *self.head.parameters()])


def bench_pixel_step(spec, names, repeats):
    """One observation, two cameras, one network forward per call: PAC (encode + policy decoder)
    against a plain transformer policy of the same width and depth over the same tokens."""
    print(f"\n== pixels policy step vs a plain transformer policy (batch 1, two {spec.cameras[0].width}x"
          f"{spec.cameras[0].height} cameras, one forward, {DEVICE})")
    print(f"  {'model':26s} {'tokens':>6s} {'PAC params':>11s} {'plain params':>13s} {'PAC p50':>8s} {'PAC p99':>8s}"
          f" {'plain p50':>10s} {'plain p99':>10s} {'plain/PAC':>10s}")
    for name in names:
        task = {"control": "task", "n_action_bins": 21}
        for stem, extra in (("patch", {}), ("keypoints", {"image_stem": "keypoints", **task}),
                            ("locator", {"image_stem": "locator", **task})):
            torch.manual_seed(0)
            pac = PACModel(preset(name, obs_mode="pixels", **extra), spec).to(DEVICE).eval()
            plain = PlainPolicy(pac).to(DEVICE).eval()
            policy = Policy(pac, spec, device=DEVICE)
            obs = robot_obs(spec)
            batch = policy.obs_batch(obs)
            # the locator runs (with the triangulation) before the network: both sides pay it, per call
            inputs = (lambda: policy.obs_batch(obs)) if stem == "locator" else (lambda: batch)
            with torch.inference_mode():
                n_tok = pac.tokens(batch)[0].shape[1]
                t_pac = timed(lambda: pac.policy_logits(pac.encode(inputs())), repeats)
                t_plain = timed(lambda: plain(inputs()), repeats)
            n_pac = sum(p.numel() for p in pac.parameters())
            print(f"  {name + ' ' + stem:26s} {n_tok:6d} {n_pac / 1e6:10.2f}M {plain.n_params() / 1e6:12.2f}M"
                  f" {np.percentile(t_pac, 50):7.2f}ms {np.percentile(t_pac, 99):7.2f}ms"
                  f" {np.percentile(t_plain, 50):9.2f}ms {np.percentile(t_plain, 99):9.2f}ms"
                  f" {np.median(t_plain) / np.median(t_pac):9.2f}x", flush=True)


def ratio(big: float, small: float) -> str:
    return f"{big / small:5.1f}x" if small > 0 else "     -"


def bench_candidates(spec, preset_name, ks, repeats):
    cfg = preset(preset_name, obs_mode="pixels")
    torch.manual_seed(0)
    model = PACModel(cfg, spec).eval()
    policy = Policy(model, spec, device=DEVICE)
    batch = policy.obs_batch(robot_obs(spec))
    print(f"\n== scoring K candidate actions with the Q decoder ({preset_name}, one shared encoding, {DEVICE})")
    with torch.inference_mode():
        zero = torch.zeros(1, 1, spec.action_dim, device=DEVICE)
        full = np.median(timed(lambda: model.q_logits(model.encode(batch), zero), repeats))
        lat = model.encode(batch)
        base = None
        print(f"  full forward (encode + Q of 1 action): {full:.2f} ms")
        for k in ks:
            acts = torch.rand(1, k, spec.action_dim, device=DEVICE) * 2 - 1
            t = np.median(timed(lambda: model.q_logits(lat, acts), repeats))
            base = base or t
            print(f"  K={k:4d}: Q decoder {t:7.3f} ms = {t / base:5.2f}x K=1; encode + K candidates = "
                  f"{(full - base + t) / full:5.2f}x one full forward")


def bench_supply(data: Path, config_path: Path, batch: int, repeats: int):
    """Samples/s the real sampler supplies vs samples/s the learner consumes (synthetic batch)."""
    from pac_ros.data import Dataset
    from pac_ros.learning.config import TrainConfig
    from pac_ros.learning.data import TransitionStore

    cfg = TrainConfig.load(config_path)
    model_cfg = cfg.model_config()
    print(f"\n== training input supply ({config_path.name}: {cfg.preset}, {model_cfg.obs_mode}, "
          f"control {model_cfg.control}; batch {batch}; {data})")
    if not (data / "meta" / "episodes.jsonl").is_file():
        print(f"  skipped: no dataset at {data} (pac-ros collect --out {data} --episodes 50)")
        return
    start = time.perf_counter()
    store = TransitionStore(Dataset(data), model_cfg, cfg.learner.gamma, log=lambda *_: None)
    print(f"  loading {store.n_rows} rows: {time.perf_counter() - start:.1f} s (once per run)")
    step = iter(range(10**9))
    t_sample = np.median(timed(lambda: store.sample(batch, next(step)), repeats))
    torch.manual_seed(0)
    spec = store.spec
    model = PACModel(model_cfg, spec)
    model.set_normalization(torch.from_numpy(store.joints),
                            None if store.features is None else torch.from_numpy(store.features))
    learner = Learner(model, cfg.learner, device=DEVICE)
    synthetic = learner.to_device(store.sample(batch, 0))  # one batch, reused, on the device: no sampling cost
    t_learn = np.median(timed(lambda: learner.step(synthetic), max(5, repeats // 20), warmup=2))
    supply, consume = batch / (t_sample / 1000), batch / (t_learn / 1000)
    what = ("block poses the locator estimated, no images" if model_cfg.locates_blocks
            else "images through the stem" if model_cfg.uses_images else "no images")
    print(f"  {what}: sampler {t_sample:.2f} ms per batch = {supply:.0f} samples/s; learner {t_learn:.1f} ms per "
          f"step = {consume:.0f} samples/s; supply / consumption = {supply / consume:.0f}x")
    if model_cfg.freeze_stem:  # the recipe's real path: stem pretraining, then cached keypoints
        from pac_ros.learning.stem import pretrain_keypoint_stem

        lc = cfg.learner
        t0 = time.perf_counter()
        pretrain_keypoint_stem(model, store, 20, lc.stem_batch_size, lc.stem_lr, shift=lc.image_shift,
                               jitter=lc.image_jitter, heldout=0.02, log=lambda *_: None)
        t_stem = (time.perf_counter() - t0) / 20  # includes the held-out pass, so a slight overestimate
        start = time.perf_counter()
        store.cache_keypoints(model)
        t_cache = time.perf_counter() - start
        model.keypoint_stem.requires_grad_(False)
        t_sample_k = np.median(timed(lambda: store.sample(batch, next(step)), repeats))
        cached = learner.to_device(store.sample(batch, 0))
        t_learn_k = np.median(timed(lambda: learner.step(cached), max(5, repeats // 20), warmup=2))
        supply_k, consume_k = batch / (t_sample_k / 1000), batch / (t_learn_k / 1000)
        print(f"  stem pretraining: {t_stem * 1000:.0f} ms per step of {lc.stem_batch_size} = "
              f"{lc.stem_batch_size / t_stem:.0f} samples/s; caching keypoints of {store.n_rows} rows: {t_cache:.1f} s")
        print(f"  cached keypoints: sampler {t_sample_k:.2f} ms per batch = {supply_k:.0f} samples/s; learner "
              f"{t_learn_k:.1f} ms per step = {consume_k:.0f} samples/s ({consume_k / consume:.1f}x the image path); "
              f"supply / consumption = {supply_k / consume_k:.0f}x")


    if model_cfg.locates_blocks:  # the recipe's real path: locator training, then PAC on its estimates
        from pac_ros.cameras import CameraGeometry
        from pac_ros.learning.locator import locate_blocks, render_labels, train_locator

        lc = cfg.learner
        rows = np.arange(min(store.n_rows, 2000))
        geometry = CameraGeometry.from_mjcf(spec, names=model.camera_names)
        start = time.perf_counter()
        labels = render_labels(spec, store.joints[rows].astype(np.float64), store.block_poses[rows], geometry,
                               log=lambda *_: None)
        t_labels = (time.perf_counter() - start) / len(rows)
        steps = 20
        start = time.perf_counter()
        train_locator(model.locator, store.images, labels, rows, steps, lc.stem_batch_size, lc.stem_lr,
                      jitter=lc.image_jitter, log=lambda *_: None, log_every=10**9)
        t_loc = (time.perf_counter() - start) / steps
        start = time.perf_counter()
        locate_blocks(model, store, log=lambda *_: None)
        t_locate = time.perf_counter() - start
        print(f"  locator labels (segmentation renders): {t_labels * 1000:.2f} ms per row = "
              f"{t_labels * store.n_rows:.0f} s for {store.n_rows} rows")
        print(f"  locator training: {t_loc * 1000:.0f} ms per step of {lc.stem_batch_size} = "
              f"{lc.stem_batch_size / t_loc:.0f} samples/s; its block estimates for {store.n_rows} rows: "
              f"{t_locate:.1f} s")
        print(f"  PAC on the estimated block poses (the learner above; batches carry no images): "
              f"{consume:.0f} samples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda (GPU: the policy step in fp32/bf16, with "
                        "and without a CUDA graph; training with bf16 autocast)")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--data", type=Path, default=Path("outputs/shipped/data"),
                        help="recorded dataset for the sampler figure (make shipped-model collects it)")
    parser.add_argument("--train-config", type=Path, default=Path("config/train_tiny.yaml"))
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--scaling-batch", type=int, default=1,
                        help="batch of the encoder scaling section (1: one observation; larger: compute-bound)")
    parser.add_argument("--memory-probe", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        kind, name, n, training, batch = args.memory_probe
        memory_probe(kind, name, int(n), training == "1", int(batch))
        return
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)
    spec = default_spec()
    gpu = f", GPU {torch.cuda.get_device_name(DEVICE)}" if DEVICE.type == "cuda" else ""
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads{gpu}")
    if "presets" in args.only:
        bench_presets(args.presets, spec, args.repeats, args.train_steps, args.batch)
    if "pixel_step" in args.only:
        bench_pixel_step(spec, args.presets, args.repeats)
    if "scaling" in args.only:
        bench_scaling(spec, "tiny", args.tokens, max(10, args.repeats // 10), args.scaling_batch)
    if "candidates" in args.only:
        bench_candidates(spec, "tiny", [1, 8, 32, 128], args.repeats)
    if "supply" in args.only:
        bench_supply(args.data, args.train_config, args.batch, args.repeats)


if __name__ == "__main__":
    main()
