"""ROS 2 messages as rosbags dataclasses: build them from numpy data, read numpy data back, and
convert to and from CDR, the bytes an rclpy node publishes and receives with ``raw=True``.

Readers use attribute access only (``msg.header.frame_id``, ``msg.pose.position.x``), so they also
accept the message objects rclpy hands to a callback; the nodes still pass CDR bytes, so that the
conversion that runs on a robot is the one tested here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rlcg.errors import RlcgError
from rlcg.sim.camera import CameraIntrinsics
from rlcg.sim.geometry import matrix_from_quat, rot_z, rpy_matrix

DEFAULT_DISTRO = "jazzy"

# Image encodings the policy can read (sensor_msgs/image_encodings.hpp names) and their channels.
READABLE_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
WRITABLE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8")


class MessageError(RlcgError, ValueError):
    """A message that cannot be used as it is: wrong encoding, inconsistent sizes, wrong frame, NaN."""


class ImageEncodingError(MessageError):
    """An image whose encoding the policy cannot read (depth, 16-bit, Bayer, compressed ...)."""


def typestore(distro: str = DEFAULT_DISTRO):
    """The rosbags type store of a ROS 2 distro (jazzy or humble) with rlcg_interfaces registered
    (shared with the bag reader and writer: rlcg.data.types)."""
    from rlcg.data import types

    return types.typestore(distro)


def msg_class(msgtype: str, distro: str = DEFAULT_DISTRO):
    return typestore(distro).types[msgtype]


def serialize(msg: Any, msgtype: str | None = None, distro: str = DEFAULT_DISTRO) -> bytes:
    """CDR bytes of a rosbags message (little endian, with the 4-byte encapsulation header)."""
    msgtype = msgtype or msg.__msgtype__
    return bytes(typestore(distro).serialize_cdr(msg, msgtype))


def deserialize(cdr: bytes | bytearray | memoryview, msgtype: str, distro: str = DEFAULT_DISTRO) -> Any:
    """A rosbags message from CDR bytes; malformed bytes raise MessageError naming the type."""
    try:
        return typestore(distro).deserialize_cdr(bytes(cdr), msgtype)
    except Exception as exc:  # rosbags raises several exception types for truncated or foreign data
        raise MessageError(f"cannot decode {len(cdr)} bytes as {msgtype}: {exc}") from exc


# --------------------------------------------------------------------------- time and headers
def time_msg(stamp_ns: int, distro: str = DEFAULT_DISTRO):
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise MessageError(f"a ROS time cannot be negative, got {stamp_ns} ns")
    return msg_class("builtin_interfaces/msg/Time", distro)(
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )


def stamp_ns(header_or_time: Any) -> int:
    """Nanoseconds of a Header (its ``stamp``) or of a builtin_interfaces Time."""
    t = getattr(header_or_time, "stamp", header_or_time)
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def header_msg(stamp: int, frame_id: str, distro: str = DEFAULT_DISTRO):
    return msg_class("std_msgs/msg/Header", distro)(stamp=time_msg(stamp, distro), frame_id=frame_id)


# --------------------------------------------------------------------------- images
def image_msg(rgb: np.ndarray, stamp: int, frame_id: str, encoding: str = "rgb8", distro: str = DEFAULT_DISTRO):
    """sensor_msgs/Image from an H x W x 3 uint8 RGB array, in ``encoding`` (rgb8, bgr8, rgba8, mono8)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MessageError(f"expected an H x W x 3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        pixels = luminance(rgb)[:, :, None]
    else:
        raise ImageEncodingError(f"cannot write encoding {encoding!r} (supported: {', '.join(WRITABLE_ENCODINGS)})")
    h, w, c = pixels.shape
    data = np.ascontiguousarray(pixels).reshape(-1)
    return msg_class("sensor_msgs/msg/Image", distro)(
        header=header_msg(stamp, frame_id, distro),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * c,
        data=data,
    )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB uint8 image, rounded to uint8."""
    y = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def image_from_msg(msg: Any) -> np.ndarray:
    """H x W x 3 uint8 RGB array from a sensor_msgs/Image of a readable 8-bit encoding.

    Row padding (``step`` larger than width x channels) is removed; mono8 is repeated over three
    channels; alpha is dropped. Anything else raises ImageEncodingError or MessageError.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in READABLE_ENCODINGS:
        raise ImageEncodingError(
            f"image encoding {msg.encoding!r} is not supported (supported: {', '.join(READABLE_ENCODINGS)}); "
            "publish an 8-bit colour or mono image, e.g. through image_proc"
        )
    channels = READABLE_ENCODINGS[encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageError(f"empty image ({w} x {h})")
    if step < w * channels:
        raise MessageError(f"image step {step} is smaller than width x channels = {w * channels}")
    data = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(bytes(msg.data), dtype=np.uint8)
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size != step * h:  # more bytes than that means a header that does not describe the data
        raise MessageError(f"image data has {data.size} bytes, expected step x height = {step * h}")
    rows = data.reshape(h, step)[:, : w * channels]
    pixels = rows.reshape(h, w, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        pixels = pixels[:, :, 2::-1]
    return pixels[:, :, :3].copy()  # contiguous and writable (CDR buffers are read-only)


def camera_info_msg(intrinsics: CameraIntrinsics, stamp: int, distro: str = DEFAULT_DISTRO):
    info = intrinsics.as_camera_info()
    cls = msg_class("sensor_msgs/msg/CameraInfo", distro)
    roi = msg_class("sensor_msgs/msg/RegionOfInterest", distro)(
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return cls(
        header=header_msg(stamp, info["frame_id"], distro),
        height=int(info["height"]),
        width=int(info["width"]),
        distortion_model=info["distortion_model"],
        d=np.asarray(info["d"], dtype=np.float64),
        k=np.asarray(info["k"], dtype=np.float64),
        r=np.asarray(info["r"], dtype=np.float64),
        p=np.asarray(info["p"], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def intrinsics_from_msg(msg: Any) -> CameraIntrinsics:
    k = [float(v) for v in msg.k]
    if len(k) != 9 or not all(math.isfinite(v) for v in k) or k[0] <= 0 or k[4] <= 0:
        raise MessageError(f"camera info has no valid K matrix: {k}")
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise MessageError(f"camera info has an empty image size ({msg.width} x {msg.height})")
    return CameraIntrinsics(
        width=int(msg.width),
        height=int(msg.height),
        fx=k[0],
        fy=k[4],
        cx=k[2],
        cy=k[5],
        frame_id=str(msg.header.frame_id),
        distortion_model=str(msg.distortion_model),
    )


# --------------------------------------------------------------------------- poses
def tcp_rotation(yaw: float) -> np.ndarray:
    """Rotation of a top-down TCP (z axis pointing down) turned by ``yaw`` about the vertical."""
    return rot_z(yaw) @ rpy_matrix(math.pi, 0.0, 0.0)


def pose_msg(position, quaternion, distro: str = DEFAULT_DISTRO):
    ts = typestore(distro).types
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in quaternion)
    return ts["geometry_msgs/msg/Pose"](
        position=ts["geometry_msgs/msg/Point"](x=x, y=y, z=z),
        orientation=ts["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )


def pose_arrays(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion x y z w (4,)) of a geometry_msgs/Pose, after checking it is finite
    and the quaternion has a usable norm (it is normalised)."""
    p, q = pose.position, pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=np.float64)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quat))):
        raise MessageError(f"pose has non-finite values: position {position.tolist()}, orientation {quat.tolist()}")
    norm = float(np.linalg.norm(quat))
    if not 0.5 < norm < 1.5:
        raise MessageError(f"pose orientation is not a unit quaternion (norm {norm:.3f})")
    return position, quat / norm


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` about the vertical axis."""
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def yaw_of_quaternion(quaternion, max_tilt_rad: float = math.radians(5.0)) -> float:
    """Yaw of a rotation about the vertical axis; a rotation that tilts the z axis by more than
    ``max_tilt_rad`` is not a grasp yaw and raises MessageError."""
    m = matrix_from_quat(quaternion)
    if not np.isfinite(m).all():
        raise MessageError(f"grasp orientation is not finite: {tuple(quaternion)}")
    tilt = math.acos(max(-1.0, min(1.0, m[2, 2])))  # angle between the rotated z axis and +z
    if tilt > max_tilt_rad:
        raise MessageError(
            f"grasp orientation tilts the z axis by {math.degrees(tilt):.1f} deg; a grasp pose is a rotation "
            f"about z only (at most {math.degrees(max_tilt_rad):.1f} deg of tilt allowed)"
        )
    return math.atan2(m[1, 0], m[0, 0])


def action_pose_msg(action, frame_id: str, stamp: int, distro: str = DEFAULT_DISTRO):
    """geometry_msgs/PoseStamped of a grasp action as rlcg records and sends it: position (x, y,
    z_offset) in the base frame, orientation = yaw about z (see rlcg.data.topics.GRASP_POSE and the
    ExecuteGrasp goal, whose executors ignore the z and read z_offset from the goal)."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size not in (3, 4) or not np.all(np.isfinite(a)):
        raise MessageError(f"a grasp action is 3 or 4 finite values (x, y, yaw[, z_offset]), got {a.tolist()}")
    z_offset = float(a[3]) if a.size == 4 else 0.0
    return msg_class("geometry_msgs/msg/PoseStamped", distro)(
        header=header_msg(stamp, frame_id, distro),
        pose=pose_msg((a[0], a[1], z_offset), yaw_quaternion(float(a[2])), distro),
    )


# --------------------------------------------------------------------------- TF
def transform_msg(parent: str, child: str, translation, quaternion, stamp: int, distro: str = DEFAULT_DISTRO):
    ts = typestore(distro).types
    tx, ty, tz = (float(v) for v in translation)
    qx, qy, qz, qw = (float(v) for v in quaternion)
    return ts["geometry_msgs/msg/TransformStamped"](
        header=header_msg(stamp, parent, distro),
        child_frame_id=child,
        transform=ts["geometry_msgs/msg/Transform"](
            translation=ts["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=ts["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )


def tf_message(transforms: list, distro: str = DEFAULT_DISTRO):
    return msg_class("tf2_msgs/msg/TFMessage", distro)(transforms=list(transforms))
