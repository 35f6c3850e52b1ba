"""MP4 video features of a LeRobotDataset, with PyAV: encode episodes into shared files, decode them back.

LeRobot v3.0 appends the episodes of a camera one after another into one MP4 file; an
episode's metadata names the file (``videos/<key>/chunk_index``, ``file_index``) and its time
range in it (``from_timestamp``, ``to_timestamp``). Row ``t`` shows the frame at
``from_timestamp + timestamp[t]``.

Export encodes lossless H.264 (libx264rgb, crf 0, RGB planes: decoded frames equal the
source pixels), or FFV1 where the bundled FFmpeg has no libx264rgb. Frames are placed at
their rows' own timestamps on a 1/90000 s clock, so irregular control ticks stay exact.
Import seeks to an episode's start and decodes forward, one frame at a time.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

from pac_ros.data.format import DatasetError
from pac_ros.data.lerobot_layout import CHUNKS_SIZE, VIDEO_PATH

TICKS = 90000  # clock of the encoded timestamps (ticks per second), as MPEG's
KEYFRAME_INTERVAL = 2  # LeRobot's default GOP: any frame is at most one frame from a keyframe
# (encoder, pixel format given to it, options): the first the bundled FFmpeg has is used; all lossless
ENCODERS = (("libx264rgb", "rgb24", {"crf": "0", "g": str(KEYFRAME_INTERVAL)}),
            ("ffv1", "bgr0", {"g": "1"}))


def lossless_encoder() -> tuple[str, str, dict[str, str]]:
    for name, pix_fmt, options in ENCODERS:
        if name in av.codecs_available:
            return name, pix_fmt, options
    raise DatasetError(f"no lossless video encoder in PyAV's FFmpeg (looked for {[e[0] for e in ENCODERS]}); "
                       f"export without --video")


class VideoFile:
    """One camera's MP4 files, filled episode after episode up to ``limit_bytes`` each."""

    def __init__(self, root: Path, key: str, fps: float, height: int, width: int, limit_bytes: float):
        self.root, self.key, self.fps = root, key, fps
        self.height, self.width, self.limit_bytes = height, width, limit_bytes
        self.encoder, self.pix_fmt, self.options = lossless_encoder()
        self.chunk = self.file = 0
        self.ticks = 0  # where the next episode starts in the open file
        self.container: Any = None
        self.stream: Any = None
        self.first_path: Path | None = None

    def path(self) -> Path:
        return self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)

    def _open(self) -> None:
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream(self.encoder, rate=Fraction(self.fps).limit_denominator(1000),
                                                options=dict(self.options))
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, self.pix_fmt
        self.stream.codec_context.time_base = self.stream.time_base = Fraction(1, TICKS)
        self.ticks = 0
        self.first_path = self.first_path or path

    def add_episode(self, frames: np.ndarray, rel_ts: np.ndarray) -> dict[str, Any]:
        """RGB uint8[T, H, W, 3] shown at ``rel_ts`` seconds from the episode's start -> its metadata columns."""
        if self.container is not None and self.path().stat().st_size >= self.limit_bytes:
            self.close()
            self.chunk, self.file = (self.chunk + 1, 0) if self.file == CHUNKS_SIZE - 1 else (self.chunk, self.file + 1)
        if self.container is None:
            self._open()
        pts = self.ticks + np.round(np.asarray(rel_ts, np.float64) * TICKS).astype(np.int64)
        if np.any(np.diff(pts) <= 0):
            raise DatasetError(f"{self.key}: timestamps closer than 1/{TICKS} s cannot be video frames")
        for image, p in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = int(p), Fraction(1, TICKS)
            self.container.mux(self.stream.encode(frame))
        start, self.ticks = self.ticks, int(pts[-1]) + round(TICKS / self.fps)
        return {"chunk_index": self.chunk, "file_index": self.file,
                "from_timestamp": start / TICKS, "to_timestamp": self.ticks / TICKS}

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.mux(self.stream.encode())
            finally:
                self.container.close()
                self.container = self.stream = None


def video_info(path: Path, fps: float) -> dict[str, Any]:
    """The ``info`` of a video feature, as LeRobot probes it from a written file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {"video.height": stream.height, "video.width": stream.width,
                "video.codec": stream.codec.canonical_name,
                "video.pix_fmt": stream.pix_fmt, "video.fps": fps, "video.channels": 3,
                "has_audio": False, "is_depth_map": False}


def frames_at(path: Path, times: np.ndarray, fps: float, where: str,
              size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """RGB uint8[H, W, 3] frames of ``path`` nearest to each of the increasing ``times`` (s), one at a time.

    A time with no frame within half a frame period raises DatasetError naming the file,
    ``where`` (the episode and feature) and the time; so does a video whose frames are not
    ``size`` (height, width), checked before any frame is decoded.
    """
    tol = 0.5 / fps
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: {where}: video file missing (named by the dataset's metadata)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: {where}: cannot open the video (truncated or not an MP4?): {exc}") from exc
    with container:
        if not container.streams.video:
            raise DatasetError(f"{path}: {where}: no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None or not stream.time_base:  # a codec FFmpeg does not know, a damaged header
            raise DatasetError(f"{path}: {where}: no decoder for its video stream (damaged, or an unknown codec)")
        if size is not None and (stream.height, stream.width) != tuple(size):
            raise DatasetError(f"{path}: {where}: the video is {stream.width}x{stream.height}, its feature's shape "
                               f"in info.json says {size[1]}x{size[0]}")

        def match(t: int, prev: tuple[float, Any] | None) -> np.ndarray:
            if prev is None or abs(times[t] - prev[0]) > tol:
                near = "no frame decoded" if prev is None else f"nearest frame at {prev[0]:.6f} s"
                raise DatasetError(f"{path}: {where}: no frame within {tol * 1e3:.1f} ms (half a frame period) of "
                                   f"timestamp {times[t]:.6f} s (row {t}); {near}")
            try:
                return prev[1].to_ndarray(format="rgb24")
            except (av.FFmpegError, ValueError) as exc:
                raise DatasetError(f"{path}: {where}: cannot convert the frame at {prev[0]:.6f} s to RGB: {exc}") \
                    from exc

        t, prev = 0, None
        try:
            start = max(float(times[0]) - tol, 0.0)
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ts = float(frame.pts * stream.time_base)
                while t < len(times) and (times[t] < ts - tol if prev is None else times[t] <= (prev[0] + ts) / 2):
                    yield match(t, prev)
                    t += 1
                if t == len(times):
                    return
                prev = (ts, frame)
        except (av.FFmpegError, OSError, ValueError, OverflowError) as exc:
            raise DatasetError(f"{path}: {where}: cannot decode the video near {times[min(t, len(times) - 1)]:.6f} s "
                               f"(row {t}): {exc}") from exc
        while t < len(times):
            yield match(t, prev)
            t += 1
