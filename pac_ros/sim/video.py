"""Rollout videos: animated GIFs through Pillow, MP4 when PyAV (``av``) is installed.

``episode_video`` re-renders a recorded episode at a watchable size: each row's recorded joint positions
and block poses are set in a StackingEnv and its cameras rendered at ``size`` px (the policy's own frames
are the spec's small ones), with the instruction and the outcome written on the frames.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

import numpy as np

from pac_ros.spec import POSE_NAMES

VIDEO_SIZE = 320  # px per camera view
BAND = 28  # px of caption above and below the views (even: MP4 frames need even sides)


def write_gif(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Save RGB frames as an animated GIF (Pillow; no video codec needed)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise ValueError("no frames to write (was rendering off?)")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Save RGB frames (even width and height) as an H.264 MP4 through PyAV."""
    from fractions import Fraction

    import av

    if not frames:
        raise ValueError("no frames to write (was rendering off?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def has_mp4() -> bool:
    return importlib.util.find_spec("av") is not None


def write_video(frames: list[np.ndarray], stem: str | Path, fps: float, fmt: str = "auto") -> Path:
    """``stem``.mp4 (fmt mp4, or auto with PyAV installed) or ``stem``.gif."""
    if fmt == "auto":
        fmt = "mp4" if has_mp4() else "gif"
    if fmt not in ("mp4", "gif"):
        raise ValueError(f"video format must be auto, mp4 or gif, got {fmt!r}")
    stem = Path(stem)
    return (write_mp4 if fmt == "mp4" else write_gif)(frames, stem.with_name(f"{stem.name}.{fmt}"), fps)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def caption(frames: Iterable[np.ndarray], top: str, bottom: str, bottom_colour=(255, 255, 255),
            band: int = BAND) -> list[np.ndarray]:
    """Frames with a dark band above (``top``) and below (``bottom`` and the step count) the image."""
    from PIL import Image, ImageDraw

    frames = list(frames)
    font = _font(band * 3 // 5)
    out = []
    for t, frame in enumerate(frames):
        rgb = frame if frame.shape[-1] == 3 else np.repeat(frame, 3, axis=-1)
        canvas = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + 2 * band), (24, 24, 24))
        canvas.paste(Image.fromarray(rgb), (0, band))
        draw = ImageDraw.Draw(canvas)
        pad = band // 5
        draw.text((pad * 2, pad), top, fill=(255, 255, 255), font=font)
        y = band + rgb.shape[0] + pad
        draw.text((pad * 2, y), bottom, fill=bottom_colour, font=font)
        step = f"step {t}/{len(frames) - 1}"
        draw.text((canvas.width - pad * 2 - draw.textlength(step, font=font), y), step, fill=(200, 200, 200),
                  font=font)
        out.append(np.asarray(canvas))
    return out


def outcome(meta: dict) -> tuple[str, tuple[int, int, int]]:
    """('SUCCESS in 37 steps' or 'FAIL after 200 steps', its colour) from an episode's index line."""
    steps = int(meta["length"]) - 1
    if meta.get("success"):
        return f"SUCCESS in {steps} steps", (90, 220, 90)
    return f"FAIL after {steps} steps", (240, 80, 80)


def _rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "mono8":
        return np.repeat(image, 3, axis=-1)
    return image[..., ::-1] if encoding == "bgr8" else image


def render_states(env, joint_positions: np.ndarray, features: np.ndarray, size: int = VIDEO_SIZE
                  ) -> list[np.ndarray]:
    """One RGB frame per row: the spec's cameras side by side, each rendered at size x size from the
    recorded joint positions and block poses."""
    blocks, cameras = env.spec.blocks, env.spec.cameras
    frames = []
    for q, f in zip(joint_positions, features):
        poses = np.asarray(f, dtype=np.float64).reshape(len(blocks), len(POSE_NAMES))
        for name, pose in zip(blocks, poses):
            env.set_block_pose(name, pose[:3], pose[3:], forward=False)
        env.set_joint_positions(q)  # also runs the forward kinematics for the block poses
        views = [_rgb(env.render_camera(c.name, size, size), c.encoding) for c in cameras]
        frames.append(np.ascontiguousarray(np.concatenate(views, axis=1)))
    return frames


def episode_video(episode, env, size: int = VIDEO_SIZE) -> list[np.ndarray]:
    """Captioned frames of a recorded episode (``data.Episode`` with features: block poses) re-rendered."""
    if episode.features is None:
        raise ValueError(f"episode {episode.episode_index} has no block poses to re-render it from")
    text, colour = outcome(episode.meta)
    frames = render_states(env, episode.joint_positions, episode.features, size)
    return caption(frames, episode.instruction, text, colour)


def pick_episodes(metas: list[dict]) -> list[dict]:
    """A successful and a failed episode (the first of each) when there are both, else every episode."""
    wins = [m for m in metas if m.get("success")]
    fails = [m for m in metas if not m.get("success")]
    return [wins[0], fails[0]] if wins and fails else list(metas)
