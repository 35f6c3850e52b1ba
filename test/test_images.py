"""Camera images as robots send them -> the spec camera's image (pac_ros/data/images.py)."""
import io

import numpy as np
import pytest
from fake_msgs import NS, header
from PIL import Image as PILImage

from pac_ros.data.images import camera_image
from pac_ros.data.messages import ConversionError
from pac_ros.spec import CameraSpec

RGB_CAM = CameraSpec("front", width=7, height=5, encoding="rgb8")
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (5, 7, 1), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
# encoding -> (what the robot sends, what an rgb8 camera of the same size gets)
SENT = {
    "rgb8": (RGB, RGB),
    "bgr8": (RGB[:, :, ::-1], RGB),
    "8UC3": (RGB[:, :, ::-1], RGB),  # OpenCV's order
    "rgba8": (np.concatenate([RGB, ALPHA], axis=2), RGB),
    "bgra8": (np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2), RGB),
    "mono8": (GREY, np.repeat(GREY[:, :, None], 3, axis=2)),
    "8UC1": (GREY, np.repeat(GREY[:, :, None], 3, axis=2)),
}


def raw(array, encoding, pad=0, t=1.0):
    """A sensor_msgs/Image stand-in; ``pad`` bytes of 0xAB end every row."""
    array = np.ascontiguousarray(array)
    rows = array.reshape(array.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return NS(header=header(t), height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
              step=rows.shape[1], data=rows.tobytes())


def compressed(array, fmt, pillow_format="PNG", **save):
    """A sensor_msgs/CompressedImage stand-in: ``array`` saved by Pillow, labelled ``fmt``."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array)).save(buf, format=pillow_format, **save)
    return NS(header=header(1.0), format=fmt, data=buf.getvalue())


@pytest.mark.parametrize("encoding", sorted(SENT))
@pytest.mark.parametrize("pad", [0, 5])
def test_every_encoding_padded_or_not(encoding, pad):
    sent, want = SENT[encoding]
    out = camera_image(raw(sent, encoding, pad), RGB_CAM)
    assert out.shape == RGB_CAM.shape and out.dtype == np.uint8 and out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(out, want)


def test_channel_order_by_pixel_values():
    red = np.zeros((5, 7, 3), np.uint8)
    red[..., 0] = 255
    assert camera_image(raw(red, "rgb8"), RGB_CAM)[2, 3].tolist() == [255, 0, 0]
    assert camera_image(raw(red, "bgr8"), RGB_CAM)[2, 3].tolist() == [0, 0, 255]  # bytes R=0,G=0,B=255
    bgr_cam = CameraSpec("front", width=7, height=5, encoding="bgr8")
    assert camera_image(raw(red, "rgb8"), bgr_cam)[2, 3].tolist() == [0, 0, 255]
    assert camera_image(raw(red, "bgr8"), bgr_cam)[2, 3].tolist() == [255, 0, 0]


def test_mono_and_colour_cross_over():
    mono_cam = CameraSpec("wrist", width=7, height=5, encoding="mono8")
    red = np.zeros((5, 7, 3), np.uint8)
    red[..., 0] = 255
    out = camera_image(raw(red, "rgb8"), mono_cam)
    assert out.shape == (5, 7, 1) and np.all(out == 76)  # ITU-R 601-2 luma of pure red
    assert np.all(camera_image(raw(red, "bgr8"), mono_cam) == 29)  # pure blue
    np.testing.assert_array_equal(camera_image(raw(GREY, "mono8"), mono_cam)[:, :, 0], GREY)
    grey = camera_image(raw(GREY, "mono8", pad=3), RGB_CAM)
    assert np.all(grey == GREY[:, :, None])


def test_resize_any_size_antialiased():
    cam = CameraSpec("front", width=20, height=15, encoding="rgb8")
    # 80x60 with padded rows: left half red, right half blue (bgr8 bytes)
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[:, :40, 2] = 255
    bgr[:, 40:, 0] = 255
    out = camera_image(raw(bgr, "bgr8", pad=16), cam)
    assert out.shape == (15, 20, 3)
    assert np.all(out[:, :9] == [255, 0, 0]) and np.all(out[:, 11:] == [0, 0, 255])
    # one-pixel checkerboard shrunk 4x: antialiased to mid grey, not aliased to black or white
    board = ((np.indices((60, 80)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = camera_image(raw(board, "mono8"), cam)
    assert np.all(np.abs(out.astype(int) - 127) <= 2), out[..., 0]
    # upsizing keeps a constant image constant
    up = camera_image(raw(np.full((3, 4, 3), 200, np.uint8), "rgb8"), cam)
    assert up.shape == (15, 20, 3) and np.all(up == 200)


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed rgb8"])
def test_png_round_trip(fmt):
    np.testing.assert_array_equal(camera_image(compressed(RGB, fmt), RGB_CAM), RGB)
    grey = camera_image(compressed(GREY, fmt), RGB_CAM)
    np.testing.assert_array_equal(grey, np.repeat(GREY[:, :, None], 3, axis=2))


@pytest.mark.parametrize("fmt", ["jpeg", "JPEG", "rgb8; jpeg compressed bgr8", "jpg"])
def test_jpeg_round_trip(fmt):
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, 255 - x * 2], axis=2).astype(np.uint8)
    cam = CameraSpec("front", width=64, height=48, encoding="rgb8")
    out = camera_image(compressed(smooth, fmt, pillow_format="JPEG", quality=95), cam)
    assert out.shape == cam.shape and np.abs(out.astype(int) - smooth).mean() < 2.0
    small = camera_image(compressed(smooth, fmt, pillow_format="JPEG", quality=95), RGB_CAM)  # and resized
    assert small.shape == RGB_CAM.shape


def _bad_raw(**fields):
    base = dict(header=header(1.0), height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=bytes(12))
    return NS(**{**base, **fields})


@pytest.mark.parametrize("msg, message", [
    (_bad_raw(encoding="16UC1", step=4, data=bytes(8)), r"encoding '16UC1' cannot be converted"),
    (_bad_raw(encoding="32FC1", step=8, data=bytes(16)), r"encoding '32FC1' cannot be converted"),
    (_bad_raw(encoding="yuv422"), r"encoding 'yuv422' cannot be converted"),
    (_bad_raw(data=bytes(11)), r"11 bytes, expected height\*step = 2\*6 = 12"),
    (_bad_raw(step=5, data=bytes(10)), r"step 5 is smaller than width\*channels"),
    (_bad_raw(height=0, data=b""), "empty"),
    (_bad_raw(width=0, step=0, data=b""), "empty"),
    (_bad_raw(height=100_000, width=100_000, step=300_000, data=b""), "exceeds the 67108864-byte limit"),
])
def test_raw_images_that_cannot_be_converted(msg, message):
    with pytest.raises(ConversionError, match=message):
        camera_image(msg, RGB_CAM)


def test_compressed_images_that_cannot_be_converted():
    png = compressed(RGB, "png").data
    cases = [
        (NS(header=header(1.0), format="tiff", data=png), r"format 'tiff': expected one of \['jpeg', 'png'\]"),
        (NS(header=header(1.0), format="", data=png), "format '': expected one of"),
        (NS(header=header(1.0), format="16UC1; compressedDepth png", data=png), "depth images"),
        (NS(header=header(1.0), format="png", data=b""), "has no data"),
        (NS(header=header(1.0), format="png", data=b"not a png at all"), "cannot decode the compressed image as png"),
        (NS(header=header(1.0), format="jpeg", data=png), "cannot decode the compressed image as jpeg"),
        (NS(header=header(1.0), format="png", data=png[: len(png) // 2]), "cannot decode the compressed image"),
        (compressed(np.full((4, 4), 40000, np.uint16), "png"), r"mode 'I;16' is not 8-bit"),
        (compressed(np.zeros((5000, 5000), np.uint8), "png"), "5000x5000 pixels exceeds"),
    ]
    for msg, message in cases:
        with pytest.raises(ConversionError, match=message):
            camera_image(msg, RGB_CAM)


def test_real_ros_messages():
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import CompressedImage, Image

    sent, want = SENT["bgr8"]
    rows = np.concatenate([sent.reshape(5, -1), np.zeros((5, 3), np.uint8)], axis=1)
    msg = Image(height=5, width=7, encoding="bgr8", step=rows.shape[1])
    msg.data = rows.tobytes()
    np.testing.assert_array_equal(camera_image(msg, RGB_CAM), want)
    bad = Image(height=5, width=7, encoding="16UC1", step=14)
    bad.data = bytes(70)
    with pytest.raises(ConversionError, match="'16UC1' cannot be converted"):
        camera_image(bad, RGB_CAM)
    packed = CompressedImage(format="bgr8; png compressed bgr8")
    packed.data = compressed(RGB, "png").data
    np.testing.assert_array_equal(camera_image(packed, RGB_CAM), RGB)
