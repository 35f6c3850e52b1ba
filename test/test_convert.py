import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from pac_ros.nodes.convert import (  # noqa: E402
    ConversionError,
    array_to_command,
    command_to_array,
    image_to_numpy,
    joint_positions,
    joint_state,
    numpy_to_image,
)

RNG = np.random.default_rng(0)
CASES = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": RNG.normal(size=(5, 7)).astype(np.float32),
}


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_image_round_trip(encoding):
    array = CASES[encoding]
    msg = numpy_to_image(array, encoding, frame_id="cam")
    assert msg.step == array.shape[1] * array.itemsize * (3 if array.ndim == 3 else 1)
    back = image_to_numpy(msg)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def _padded(array, encoding, pad, bigendian=False):
    rows = array.astype(array.dtype.newbyteorder(">" if bigendian else "<")).reshape(array.shape[0], -1)
    raw = rows.view(np.uint8).reshape(array.shape[0], -1)
    padded = np.concatenate([raw, np.full((raw.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_row_padding_and_byte_order(encoding):
    array = CASES[encoding]
    for bigendian in (False, True):
        np.testing.assert_array_equal(image_to_numpy(_padded(array, encoding, 5, bigendian)), array)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(encoding="yuv422", height=2, width=2, step=4, data=bytes(8)), "not supported"),
        (dict(encoding="rgb8", height=2, width=2, step=5, data=bytes(10)), "step 5 is smaller"),
        (dict(encoding="rgb8", height=2, width=2, step=6, data=bytes(11)), "11 bytes, expected"),
        (dict(encoding="mono8", height=0, width=2, step=2, data=b""), "empty"),
        (dict(encoding="16UC1", height=2, width=2, step=3, data=bytes(6)), "smaller"),
    ],
)
def test_bad_images_name_the_problem(fields, message):
    msg = Image(**{k: v for k, v in fields.items() if k != "data"})
    msg.data = fields["data"]
    with pytest.raises(ConversionError, match=message):
        image_to_numpy(msg)


def test_numpy_to_image_rejects_mismatch():
    with pytest.raises(ConversionError, match="does not fit encoding 'rgb8'"):
        numpy_to_image(CASES["mono8"], "rgb8")
    with pytest.raises(ConversionError, match="dtype"):
        numpy_to_image(CASES["mono8"].astype(np.int32), "mono8")


def test_joint_states_match_by_name():
    msg = joint_state(["c", "extra", "a", "b"], [3.0, 9.0, 1.0, 2.0])
    np.testing.assert_array_equal(joint_positions(msg, ["a", "b", "c"]), [1.0, 2.0, 3.0])
    with pytest.raises(ConversionError, match=r"lacks joint\(s\) \['d'\]"):
        joint_positions(msg, ["a", "d"])
    dup = joint_state(["a", "a", "b"], [1.0, 2.0, 3.0])
    with pytest.raises(ConversionError, match=r"\['a'\] more than once"):
        joint_positions(dup, ["a", "b"])
    short = joint_state(["a", "b"], [1.0, 2.0])
    short.position = [1.0]
    with pytest.raises(ConversionError, match="2 names but 1 positions"):
        joint_positions(short, ["a"])


def test_commands():
    msg = array_to_command(np.arange(7.0))
    np.testing.assert_array_equal(command_to_array(msg, 7), np.arange(7.0))
    with pytest.raises(ConversionError, match="7 values, expected 6"):
        command_to_array(msg, 6)


def test_matches_cv_bridge_where_a_ros_install_provides_it():
    try:
        from cv_bridge import CvBridge
    except ImportError:
        pytest.skip("ROS 2's cv_bridge has no pip wheel; compared on a ROS 2 install")
    bridge = CvBridge()
    for encoding, array in CASES.items():
        ours = numpy_to_image(array, encoding)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(ours, "passthrough"), image_to_numpy(ours))
        theirs = bridge.cv2_to_imgmsg(array, encoding)
        np.testing.assert_array_equal(image_to_numpy(theirs), array)
