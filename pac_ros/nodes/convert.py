"""Message <-> numpy conversion for the nodes (no cv_bridge needed).

Reading images and joint states is ROS-free and lives in pac_ros/data/messages.py (shared
with the MCAP import; re-exported here); this module adds what builds rclpy messages.
Images follow cv_bridge's ``passthrough`` conventions: rgb8/bgr8 -> HxWx3 uint8,
mono8 -> HxW uint8, 16UC1 -> HxW uint16, 32FC1 -> HxW float32, honouring ``step``
row padding and ``is_bigendian``; pac_ros/data/images.py converts one to a spec camera's
image. Joint states are matched by joint *name*.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from pac_ros.data.messages import (  # noqa: F401  (ROS-free; re-exported for the nodes)
    ENCODINGS,
    MAX_IMAGE_BYTES,
    ConversionError,
    image_to_numpy,
    joint_positions,
)


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
