"""Camera images as robots send them -> the image a spec camera holds (ROS-free).

The one conversion the policy node, the recorder and the MCAP import share. It takes

- a ``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8, mono8, 8UC1 (= mono8) or 8UC3
  (= bgr8, OpenCV's channel order), of any size, rows padded (``step``) or not;
- a ``sensor_msgs/CompressedImage`` whose ``format`` names jpeg or png (as image_transport's
  ``compressed`` plugin writes it, e.g. ``"rgb8; jpeg compressed bgr8"``), decoded with Pillow;

and returns uint8[height, width, channels] in the camera's encoding and size. Alpha is
dropped (not composited); mono becomes colour by copying it to every channel; colour becomes
mono by Pillow's ITU-R 601-2 luma. The size is changed with Pillow's bilinear filter, whose
support grows with the factor when shrinking (antialiased, like an area average); the
aspect ratio follows the camera's (the image is stretched, never cropped). An image already
in the camera's encoding and size is only copied. Anything else raises ConversionError
naming the problem.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

from pac_ros.data.messages import MAX_IMAGE_BYTES, ConversionError, image_to_numpy
from pac_ros.spec import CameraSpec

# raw encoding -> channel layout of image_to_numpy's array
RAW_LAYOUTS = {"rgb8": "RGB", "bgr8": "BGR", "rgba8": "RGBA", "bgra8": "BGRA", "mono8": "L",
               "8UC1": "L", "8UC3": "BGR"}
# spec camera encoding -> channel layout
CAMERA_LAYOUTS = {"rgb8": "RGB", "bgr8": "BGR", "mono8": "L"}
COMPRESSED_FORMATS = ("jpeg", "png")
RESAMPLE = PILImage.Resampling.BILINEAR


def is_compressed(msg: Any) -> bool:
    """A CompressedImage (``format`` and ``data``) rather than an Image (``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def camera_image(msg: Any, camera: CameraSpec) -> np.ndarray:
    """An Image or CompressedImage -> uint8[camera.height, camera.width, camera.channels] in the
    camera's encoding; ConversionError for anything that cannot be converted."""
    array, layout = decode_compressed(msg) if is_compressed(msg) else decode_raw(msg)
    return fit_to_camera(array, layout, camera)


def decode_raw(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image -> (uint8 array HxW or HxWxC, its channel layout)."""
    if msg.encoding not in RAW_LAYOUTS:
        raise ConversionError(f"image encoding {msg.encoding!r} cannot be converted to a camera image; "
                              f"accepted: {sorted(RAW_LAYOUTS)} (or a CompressedImage, jpeg/png)")
    return image_to_numpy(msg), RAW_LAYOUTS[msg.encoding]


def _compression(fmt: str) -> str:
    """jpeg or png, from a CompressedImage format such as 'jpeg', 'png' or 'bgr8; jpeg compressed bgr8'."""
    text = str(fmt).lower()
    if "compresseddepth" in text:
        raise ConversionError(f"compressed image format {fmt!r}: depth images are not camera images")
    words = set(text.replace(";", " ").split())
    found = [name for name in COMPRESSED_FORMATS if name in words or (name == "jpeg" and "jpg" in words)]
    if len(found) != 1:
        raise ConversionError(f"compressed image format {fmt!r}: expected one of {list(COMPRESSED_FORMATS)}")
    return found[0]


def decode_compressed(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (jpeg or png) -> (uint8 array, "RGB" or "L")."""
    kind = _compression(msg.format)
    data = msg.data
    size = data.nbytes if isinstance(data, np.ndarray) else len(data)
    if size == 0:
        raise ConversionError(f"compressed image ({kind}) has no data")
    if size > MAX_IMAGE_BYTES:
        raise ConversionError(f"compressed image of {size} bytes exceeds the {MAX_IMAGE_BYTES}-byte limit")
    buffer = data.view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    try:
        with PILImage.open(io.BytesIO(buffer.tobytes()), formats=[kind.upper()]) as img:
            width, height = img.size
            if width * height * 3 > MAX_IMAGE_BYTES:
                raise ConversionError(f"{kind} image of {width}x{height} pixels exceeds the "
                                      f"{MAX_IMAGE_BYTES}-byte limit")
            if img.mode in ("1", "LA"):
                img = img.convert("L")
            elif img.mode in ("RGBA", "P", "PA", "CMYK", "YCbCr"):
                img = img.convert("RGB")
            if img.mode not in ("L", "RGB"):
                raise ConversionError(f"{kind} image of mode {img.mode!r} is not 8-bit grey or colour")
            array = np.asarray(img)
    except ConversionError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise ConversionError(f"cannot decode the compressed image as {kind}: {exc}") from exc
    return array, img.mode


def fit_to_camera(array: np.ndarray, layout: str, camera: CameraSpec) -> np.ndarray:
    """uint8 HxW or HxWxC in ``layout`` (RGB, BGR, RGBA, BGRA or L) -> the camera's encoding and size."""
    if array.ndim == 2:
        array = array[:, :, None]
    if layout in ("RGBA", "BGRA"):
        array, layout = array[:, :, :3], layout[:3]
    if array.shape[:2] != (camera.height, camera.width):
        array = _resize(array, camera.height, camera.width)
    out = np.ascontiguousarray(_recolour(array, layout, CAMERA_LAYOUTS[camera.encoding]))
    return out if out.flags.writeable else out.copy()


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    mono = array.shape[2] == 1
    img = PILImage.fromarray(np.ascontiguousarray(array[:, :, 0] if mono else array), "L" if mono else "RGB")
    out = np.asarray(img.resize((width, height), RESAMPLE))
    return out[:, :, None] if mono else out


def _recolour(array: np.ndarray, source: str, target: str) -> np.ndarray:
    """Between RGB, BGR and L (HxWx3 or HxWx1)."""
    if source == target:
        return array
    if source == "L":
        return np.repeat(array, 3, axis=2)
    rgb = array if source == "RGB" else array[:, :, ::-1]
    if target == "L":
        return np.asarray(PILImage.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"))[:, :, None]
    return rgb if target == "RGB" else rgb[:, :, ::-1]
