"""ROS message fields -> numpy, without ROS (used by the nodes and by the MCAP import).

The functions read messages by field name only, so they take rclpy messages and the
deserialised messages of ``rosbags`` alike. Images follow cv_bridge's ``passthrough``
conventions: rgb8/bgr8 -> HxWx3 uint8, rgba8/bgra8 -> HxWx4 uint8, mono8/8UC1 -> HxW
uint8, 8UC3 -> HxWx3 uint8, 16UC1 -> HxW uint16, 32FC1 -> HxW float32, honouring ``step``
row padding and ``is_bigendian``; pac_ros/data/images.py turns them into a spec camera's
image. Joint states are matched by joint *name*.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pac_ros.errors import PacRosError

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
MAX_IMAGE_BYTES = 64 * 1024 * 1024
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ConversionError(PacRosError, ValueError):
    """A message that cannot be converted; the text names the field and problem."""


def stamp_seconds(stamp: Any, offset_ns: int = 0) -> float:
    """builtin_interfaces/Time (minus ``offset_ns``) -> seconds, rounded once from integer ns."""
    return (stamp.sec * 1_000_000_000 + stamp.nanosec - offset_ns) / 1e9


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> array in the message's own encoding (a copy)."""
    if msg.encoding not in ENCODINGS:
        raise ConversionError(
            f"image encoding {msg.encoding!r} is not supported; use one of {sorted(ENCODINGS)}"
        )
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image is empty: {width}x{height}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(
            f"image step {step} is smaller than width*channels*bytes = {row_bytes} ({msg.encoding})"
        )
    if height * step > MAX_IMAGE_BYTES:
        raise ConversionError(f"image of {height * step} bytes exceeds the {MAX_IMAGE_BYTES}-byte limit")
    data = msg.data
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    if buffer.size != height * step:
        raise ConversionError(
            f"image data has {buffer.size} bytes, expected height*step = {height}*{step} = {height * step}"
        )
    rows = buffer.reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    array = np.ascontiguousarray(rows).view(dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype)
    array = array.reshape((height, width, channels) if channels > 1 else (height, width))
    return array.astype(dtype, copy=True) if dtype.itemsize > 1 else array.copy()


def _brief(items: Sequence[Any], limit: int = 10) -> str:
    """A list for an error message, cut after ``limit`` items (a malformed message may hold millions)."""
    if len(items) <= limit:
        return repr(list(items))
    return repr(list(items[:limit]))[:-1] + f", ... {len(items)} in all]"


def joint_positions(msg: Any, names: Sequence[str], finite: bool = False,
                    bounds: tuple[np.ndarray, np.ndarray] | None = None, bounds_name: str = "bounds") -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState, matched by name.

    Extra joints are ignored; missing or duplicated names, a name/position length
    mismatch, (with ``finite``) a NaN or inf among the wanted values and (with
    ``bounds = (lower, upper)``, called ``bounds_name`` in the error) a wanted value
    outside them are errors.
    """
    msg_names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if len(msg_names) != positions.shape[0]:
        raise ConversionError(
            f"joint state has {len(msg_names)} names but {positions.shape[0]} positions"
        )
    index: dict[str, int] = {}
    dupes = set()
    for i, name in enumerate(msg_names):
        if name in index:
            dupes.add(name)
        index[name] = i
    wanted_dupes = sorted(dupes & set(names))
    if wanted_dupes:
        raise ConversionError(f"joint state names {wanted_dupes} more than once")
    missing = [n for n in names if n not in index]
    if missing:
        raise ConversionError(f"joint state lacks joint(s) {missing}; it has {_brief(msg_names)}")
    wanted = positions[[index[n] for n in names]]
    if finite and not np.all(np.isfinite(wanted)):
        raise ConversionError(f"non-finite joint positions {dict(zip(names, wanted.tolist()))}")
    if bounds is not None:
        outside = ~((wanted >= bounds[0]) & (wanted <= bounds[1]))
        if outside.any():
            raise ConversionError(f"joint positions outside {bounds_name}: "
                                  f"{ {n: float(v) for n, v, o in zip(names, wanted, outside) if o} }")
    return wanted


def block_poses_array(msg: Any, n_blocks: int) -> np.ndarray:
    """geometry_msgs/PoseArray -> ``x y z qw qx qy qz`` per block, flattened (spec order).
    Every value must be finite, and fit float32 (as stored and as the model takes it)."""
    if len(msg.poses) != n_blocks:
        raise ConversionError(f"block poses: expected {n_blocks} poses, got {len(msg.poses)}")
    rows = [
        [p.position.x, p.position.y, p.position.z, p.orientation.w, p.orientation.x, p.orientation.y,
         p.orientation.z]
        for p in msg.poses
    ]
    poses = np.asarray(rows, dtype=np.float64).reshape(-1)
    if not np.all(np.abs(poses) <= FLOAT32_MAX):
        raise ConversionError(f"block poses: non-finite or huge values {rows}")
    return poses
