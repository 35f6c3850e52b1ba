"""Pictures of a dataset: `pac-ros dataset plot` (PNGs) and `pac-ros dataset video` (GIF)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pac_ros.data.info import source_label
from pac_ros.data.reader import Dataset


def plot_dataset(ds: Dataset, out: str | Path, episode: int = 0) -> list[Path]:
    """success_by_source.png, lengths.png, returns.png and joints_episode_<i>.png under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not len(ds):
        raise ValueError(f"{ds.root}: no episodes to plot")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eps = ds.episodes
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    sources: dict[str, list[bool]] = {}
    for e in eps:
        sources.setdefault(source_label(e), []).append(bool(e.get("success")))
    names = sorted(sources)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    rates = [np.mean(sources[n]) for n in names]
    bars = ax.bar(names, rates, color="tab:blue")
    for bar, n in zip(bars, names):
        ax.annotate(f"{sum(sources[n])}/{len(sources[n])}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate")
    ax.set_title(f"{ds.root.name}: success by source")
    ax.tick_params(axis="x", labelrotation=20)
    save(fig, "success_by_source.png")

    for key, label, name in (("length", "episode length (rows)", "lengths.png"),
                             ("return", "episode return", "returns.png")):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ok = [float(e.get(key) or 0) for e in eps if e.get("success")]
        bad = [float(e.get(key) or 0) for e in eps if not e.get("success")]
        ax.hist([ok, bad], bins=20, stacked=True, label=["success", "failure"], color=["tab:green", "tab:red"])
        ax.set_xlabel(label)
        ax.set_ylabel("episodes")
        ax.legend()
        save(fig, name)

    ep = ds.load_episode(episode, images=False)
    t = ep.timestamp - ep.timestamp[0]
    fig, axes = plt.subplots(len(ds.spec.joint_names), 1, figsize=(7, 1.3 * len(ds.spec.joint_names)), sharex=True)
    for k, (ax, name) in enumerate(zip(np.atleast_1d(axes), ds.spec.joint_names)):
        ax.plot(t, ep.joint_positions[:, k], label="measured")
        ax.step(t, ep.actions[:, k], where="post", label="command", alpha=0.7)
        ax.set_ylabel(name, fontsize=8)
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper right")
    np.atleast_1d(axes)[0].set_title(f"episode {episode}: {ep.instructions[0]!r}", fontsize=9)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    save(fig, f"joints_episode_{episode}.png")
    return written


def episode_frames(ds: Dataset, episode: int) -> list[np.ndarray]:
    """The episode's cameras side by side per row, with instruction, step and reward written on."""
    from PIL import Image, ImageDraw

    ep = ds.load_episode(episode, images=True)
    if not ep.images:
        raise ValueError(f"{ds.root}: the dataset has no camera images")
    cams = ds.spec.camera_names
    frames = []
    cum = np.concatenate([[0.0], np.cumsum(ep.rewards[:-1])])
    for t in range(len(ep.timestamp)):
        row = np.concatenate([ep.images[c][t] if ep.images[c][t].shape[-1] == 3
                              else np.repeat(ep.images[c][t], 3, -1) for c in cams], axis=1)
        scale = max(1, 256 // row.shape[0])
        img = Image.fromarray(row).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 30), "black")
        canvas.paste(img, (0, 30))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 2), ep.instructions[t], fill="white")
        draw.text((4, 15), f"step {t}  reward {ep.rewards[t]:.2f}  return {cum[t]:.2f}"
                  + ("  SUCCESS" if ep.is_terminal[t] else ""), fill="yellow")
        frames.append(np.asarray(canvas))
    return frames
