"""ROS 2 message conversions of rlcg.robot.messages, checked as real CDR round trips (rosbags type store)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlcg.robot import messages
from rlcg.sim.camera import CameraIntrinsics

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


def roundtrip(msg, msgtype: str):
    cdr = messages.serialize(msg, msgtype)
    assert cdr[:4] == b"\x00\x01\x00\x00"  # CDR little-endian encapsulation header, as rmw sends it
    return messages.deserialize(cdr, msgtype)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8"])
def test_colour_image_roundtrip(encoding):
    msg = messages.image_msg(RGB, 1_700_000_000_123_456_789, "camera_optical_frame", encoding)
    back = roundtrip(msg, "sensor_msgs/msg/Image")
    assert back.encoding == encoding and (back.height, back.width) == (6, 5)
    assert back.step == 5 * (4 if encoding == "rgba8" else 3)
    assert messages.stamp_ns(back.header) == 1_700_000_000_123_456_789
    assert back.header.frame_id == "camera_optical_frame"
    np.testing.assert_array_equal(messages.image_from_msg(back), RGB)


def test_bgr8_bytes_are_really_swapped():
    msg = messages.image_msg(RGB, 1, "cam", "bgr8")
    first = bytes(msg.data[:3])
    assert first == bytes(RGB[0, 0, ::-1])


def test_mono8_roundtrip_is_luminance():
    msg = roundtrip(messages.image_msg(RGB, 5, "cam", "mono8"), "sensor_msgs/msg/Image")
    rgb = messages.image_from_msg(msg)
    assert rgb.shape == (6, 5, 3)
    expected = np.rint(RGB[..., 0] * 0.299 + RGB[..., 1] * 0.587 + RGB[..., 2] * 0.114)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_row_padding_is_removed():
    msg = messages.image_msg(RGB, 5, "cam", "rgb8")
    padded = np.zeros((6, 5 * 3 + 4), np.uint8)
    padded[:, :15] = RGB.reshape(6, 15)
    msg.step = 19
    msg.data = padded.reshape(-1)
    back = roundtrip(msg, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(messages.image_from_msg(back), RGB)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1", "bayer_rggb8", "yuv422"])
def test_unsupported_encodings_are_clear_errors(encoding):
    msg = messages.image_msg(RGB, 5, "cam", "rgb8")
    msg.encoding = encoding
    with pytest.raises(messages.ImageEncodingError, match="not supported"):
        messages.image_from_msg(msg)


def test_truncated_image_data_is_an_error():
    msg = messages.image_msg(RGB, 5, "cam", "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(messages.MessageError, match="bytes"):
        messages.image_from_msg(msg)


def test_image_data_longer_than_its_header_says_is_an_error():
    # a 6 x 5 frame labelled 3 x 5, or a mono8 buffer labelled rgb8, would decode as scrambled pixels
    msg = messages.image_msg(RGB, 5, "cam", "rgb8")
    msg.height = 3
    with pytest.raises(messages.MessageError, match="expected step x height = 45"):
        messages.image_from_msg(msg)
    mono = messages.image_msg(RGB, 5, "cam", "rgb8")
    mono.data = np.concatenate([mono.data, mono.data])
    with pytest.raises(messages.MessageError, match="bytes"):
        messages.image_from_msg(mono)


def test_camera_info_of_an_empty_image_is_an_error():
    msg = messages.camera_info_msg(CameraIntrinsics(64, 48, 80.0, 81.0, 32.0, 24.0), 42)
    msg.width = msg.height = 0
    with pytest.raises(messages.MessageError, match="empty image size"):
        messages.intrinsics_from_msg(msg)


def test_garbage_cdr_is_an_error():
    with pytest.raises(messages.MessageError, match="sensor_msgs/msg/Image"):
        messages.deserialize(b"\x00\x01\x00\x00\x05", "sensor_msgs/msg/Image")


def test_camera_info_roundtrip():
    intr = CameraIntrinsics(64, 48, 80.0, 81.0, 32.0, 24.0, "camera_optical_frame")
    back = roundtrip(messages.camera_info_msg(intr, 42, "jazzy"), "sensor_msgs/msg/CameraInfo")
    assert messages.intrinsics_from_msg(back) == intr
    assert list(back.k) == list(intr.k) and list(back.p) == list(intr.p)


@pytest.mark.parametrize("yaw", [-1.4, 0.0, 0.7, 1.5])
def test_grasp_pose_roundtrip_keeps_frame_and_yaw(yaw):
    msg = messages.action_pose_msg([0.6, -0.05, yaw, 0.03], "lbr_link_0", 9)
    back = roundtrip(msg, "geometry_msgs/msg/PoseStamped")
    assert back.header.frame_id == "lbr_link_0"
    position, quat = messages.pose_arrays(back.pose)
    np.testing.assert_allclose(position, [0.6, -0.05, 0.03])
    assert messages.yaw_of_quaternion(quat) == pytest.approx(yaw)


def test_tilted_or_non_finite_poses_are_rejected():
    msg = messages.action_pose_msg([0.6, 0.0, 0.0, 0.0], "lbr_link_0", 9)
    msg.pose.orientation.x, msg.pose.orientation.w = math.sin(0.2), math.cos(0.2)  # 23 deg about x
    _, quat = messages.pose_arrays(msg.pose)
    with pytest.raises(messages.MessageError, match="tilts"):
        messages.yaw_of_quaternion(quat)
    msg.pose.position.x = float("nan")
    with pytest.raises(messages.MessageError, match="non-finite"):
        messages.pose_arrays(msg.pose)
    msg.pose.position.x = 0.6
    msg.pose.orientation.x = msg.pose.orientation.y = msg.pose.orientation.z = msg.pose.orientation.w = 0.0
    with pytest.raises(messages.MessageError, match="unit quaternion"):
        messages.pose_arrays(msg.pose)
    with pytest.raises(messages.MessageError, match="not finite"):
        messages.yaw_of_quaternion([float("nan")] * 4)


def test_tf_message_roundtrip():
    t = messages.transform_msg("world", "lbr_link_0", (0.01, -0.4, 0.0), (0, 0, 0.1, math.sqrt(1 - 0.01)), 77)
    back = roundtrip(messages.tf_message([t]), "tf2_msgs/msg/TFMessage")
    (tb,) = back.transforms
    assert (tb.header.frame_id, tb.child_frame_id) == ("world", "lbr_link_0")
    assert tb.transform.translation.y == pytest.approx(-0.4)


def test_execute_grasp_goal_roundtrip():
    cls = messages.msg_class("rlcg_interfaces/action/ExecuteGrasp_Goal")
    goal = cls(
        grasp=messages.action_pose_msg([0.6, 0.0, 0.3, 0.01], "lbr_link_0", 5),
        z_offset=0.01,
        episode_id="ep-1",
        dry_run=True,
    )
    back = roundtrip(goal, "rlcg_interfaces/action/ExecuteGrasp_Goal")
    assert (back.episode_id, back.dry_run, back.z_offset) == ("ep-1", True, 0.01)


def test_humble_store_serializes_the_same_image_bytes():
    jazzy = messages.serialize(messages.image_msg(RGB, 5, "cam", "rgb8", "jazzy"))
    humble = messages.serialize(messages.image_msg(RGB, 5, "cam", "rgb8", "humble"), distro="humble")
    assert jazzy == humble
