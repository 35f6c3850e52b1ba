"""Message <-> numpy conversion for the nodes (no cv_bridge needed).

Images follow cv_bridge's ``passthrough`` conventions: rgb8/bgr8 -> HxWx3 uint8,
mono8 -> HxW uint8, 16UC1 -> HxW uint16, 32FC1 -> HxW float32, honouring ``step``
row padding and ``is_bigendian``. Joint states are matched by joint *name*.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
MAX_IMAGE_BYTES = 64 * 1024 * 1024


class ConversionError(ValueError):
    """A message that cannot be converted; the text names the field and problem."""


def image_to_numpy(msg: Image) -> np.ndarray:
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


def image_to_rgb(msg: Image) -> np.ndarray:
    """Any 8-bit colour/mono image -> HxWx3 rgb8 (what the policy and dataset use)."""
    array = image_to_numpy(msg)
    if msg.encoding == "rgb8":
        return array
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(array[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(array[:, :, None], 3, axis=2)
    raise ConversionError(f"image encoding {msg.encoding!r} cannot be converted to rgb8")


def numpy_to_image(array: np.ndarray, encoding: str, stamp=None, frame_id: str = "") -> Image:
    """Array -> sensor_msgs/Image with a tight ``step`` and host byte order."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"image encoding {encoding!r} is not supported; use one of {sorted(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ConversionError(
            f"array of shape {array.shape} does not fit encoding {encoding!r} ({channels} channel(s))"
        )
    if array.dtype != dtype:
        raise ConversionError(f"array dtype {array.dtype} does not fit encoding {encoding!r} ({dtype})")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def joint_positions(msg: JointState, names: Sequence[str], finite: bool = False) -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState, matched by name.

    Extra joints are ignored; missing or duplicated names, a name/position length
    mismatch and (with ``finite``) a NaN or inf among the wanted values are errors.
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
        raise ConversionError(f"joint state lacks joint(s) {missing}; it has {msg_names}")
    wanted = positions[[index[n] for n in names]]
    if finite and not np.all(np.isfinite(wanted)):
        raise ConversionError(f"non-finite joint positions {dict(zip(names, wanted.tolist()))}")
    return wanted


def joint_state(names: Sequence[str], positions, stamp=None, velocities=None) -> JointState:
    msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(x) for x in np.asarray(positions, dtype=np.float64)]
    if velocities is not None:
        msg.velocity = [float(x) for x in np.asarray(velocities, dtype=np.float64)]
    return msg


def command_to_array(msg: Float64MultiArray, size: int) -> np.ndarray:
    """ros2_control forward-position command -> array of ``size`` joint targets."""
    data = np.asarray(msg.data, dtype=np.float64)
    if data.shape != (size,):
        raise ConversionError(f"command has {data.shape[0]} values, expected {size}")
    return data


def array_to_command(values) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.data = [float(x) for x in np.asarray(values, dtype=np.float64).reshape(-1)]
    return msg
