"""An ``Episode`` as the ROS 2 messages of an rlcg bag (see docs/data-format.md).

Per episode, in this order: EpisodeInfo, the base pose on /tf, CameraInfo; then per grasp attempt the
image, the grasp pose, the image after and the GraspOutcome, which closes the step. The image, pose and
outcome of a step carry the image's stamp in their headers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from rlcg.data import topics
from rlcg.data.episode import Episode, EpisodeMeta, Step
from rlcg.data.types import DEFAULT_DISTRO, header_msg, msg_class, yaw_quaternion


class OutMessage(NamedTuple):
    topic: str
    msgtype: str
    msg: Any


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str = topics.CAMERA_FRAME, distro: str = DEFAULT_DISTRO):
    """sensor_msgs/msg/Image (rgb8) of an H x W x 3 uint8 array."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 rgb image, got shape {image.shape}")
    h, w, _ = image.shape
    return msg_class("sensor_msgs/msg/Image", distro)(
        header=header_msg(stamp_ns, frame_id, distro),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=image.reshape(-1),
    )


def camera_info_msg(info: dict, stamp_ns: int, distro: str = DEFAULT_DISTRO):
    """sensor_msgs/msg/CameraInfo from ``CameraIntrinsics.as_camera_info()``."""
    roi = msg_class("sensor_msgs/msg/RegionOfInterest", distro)(
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return msg_class("sensor_msgs/msg/CameraInfo", distro)(
        header=header_msg(stamp_ns, info.get("frame_id", topics.CAMERA_FRAME), distro),
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


def pose_msg(
    position: tuple[float, float, float],
    orientation: tuple[float, float, float, float],
    distro: str = DEFAULT_DISTRO,
):
    point = msg_class("geometry_msgs/msg/Point", distro)(x=position[0], y=position[1], z=position[2])
    quat = msg_class("geometry_msgs/msg/Quaternion", distro)(
        x=orientation[0], y=orientation[1], z=orientation[2], w=orientation[3]
    )
    return msg_class("geometry_msgs/msg/Pose", distro)(position=point, orientation=quat)


def grasp_pose_msg(action: np.ndarray, stamp_ns: int, distro: str = DEFAULT_DISTRO):
    """geometry_msgs/msg/PoseStamped of an action [x, y, yaw, z_offset] in the robot base frame.

    The pose's z is the action's z_offset (the height above the executor's default grasp depth), not
    a height in the base frame: the grasp height depends on the bin floor, which the action does not fix.
    """
    x, y, yaw, z_offset = (float(v) for v in action)
    return msg_class("geometry_msgs/msg/PoseStamped", distro)(
        header=header_msg(stamp_ns, topics.BASE_FRAME, distro),
        pose=pose_msg((x, y, z_offset), yaw_quaternion(yaw), distro),
    )


def base_tf_msg(base_pose: tuple[float, float, float], stamp_ns: int, distro: str = DEFAULT_DISTRO):
    """tf2_msgs/msg/TFMessage with the robot base pose (x, y, yaw) in the world frame."""
    x, y, yaw = (float(v) for v in base_pose)
    qx, qy, qz, qw = yaw_quaternion(yaw)
    transform = msg_class("geometry_msgs/msg/Transform", distro)(
        translation=msg_class("geometry_msgs/msg/Vector3", distro)(x=x, y=y, z=0.0),
        rotation=msg_class("geometry_msgs/msg/Quaternion", distro)(x=qx, y=qy, z=qz, w=qw),
    )
    stamped = msg_class("geometry_msgs/msg/TransformStamped", distro)(
        header=header_msg(stamp_ns, topics.WORLD_FRAME, distro), child_frame_id=topics.BASE_FRAME, transform=transform
    )
    return msg_class("tf2_msgs/msg/TFMessage", distro)(transforms=[stamped])


def episode_info_msg(meta: EpisodeMeta, stamp_ns: int, distro: str = DEFAULT_DISTRO):
    object_state = msg_class("rlcg_interfaces/msg/ObjectState", distro)
    objects = [
        object_state(object_id=int(o.object_id), bin_index=int(o.bin_index), pose=pose_msg(o.position, o.orientation))
        for o in meta.objects
    ]
    return msg_class("rlcg_interfaces/msg/EpisodeInfo", distro)(
        header=header_msg(stamp_ns, topics.WORLD_FRAME, distro),
        episode_id=meta.episode_id,
        seed=int(meta.seed),
        domain=meta.domain,
        policy_id=meta.policy,
        bin_index=int(meta.bin_index),
        bins_mode=meta.bins_mode,
        object_split=meta.object_split,
        objects=objects,
    )


def outcome_msg(meta: EpisodeMeta, index: int, step: Step, stamp_ns: int, distro: str = DEFAULT_DISTRO):
    return msg_class("rlcg_interfaces/msg/GraspOutcome", distro)(
        header=header_msg(stamp_ns, topics.BASE_FRAME, distro),
        episode_id=meta.episode_id,
        step=index,
        reward=float(step.reward),
        done=bool(step.done),
        success=bool(step.success),
        lifted_height=float(step.lifted_height),
        q_value=float(step.q_value) if step.q_value is not None else math.nan,
        domain=meta.domain,
        policy_id=meta.policy,
        seed=int(meta.seed),
        bin_index=int(meta.bin_index),
        action=np.asarray(step.action, dtype=np.float64).reshape(4),
    )


def episode_messages(
    episode: Episode, clock: Callable[[], int], distro: str = DEFAULT_DISTRO
) -> Iterator[tuple[OutMessage, int]]:
    """(message, bag log time) pairs of ``episode`` in recording order.

    ``clock()`` returns strictly increasing nanoseconds; it stamps each message's log time, and the
    headers of steps whose ``stamp_ns`` is None (simulated episodes have no capture time of their own).
    """
    meta = episode.meta
    t0 = clock()
    yield OutMessage(topics.EPISODE, topics.TOPIC_TYPES[topics.EPISODE], episode_info_msg(meta, t0, distro)), t0
    t = clock()
    yield OutMessage(topics.TF, topics.TOPIC_TYPES[topics.TF], base_tf_msg(meta.base_pose, t0, distro)), t
    if meta.camera is not None:
        t = clock()
        info = meta.camera.as_camera_info()
        yield (
            OutMessage(topics.CAMERA_INFO, topics.TOPIC_TYPES[topics.CAMERA_INFO], camera_info_msg(info, t0, distro)),
            t,
        )
    frame = meta.camera.frame_id if meta.camera is not None else topics.CAMERA_FRAME
    for index, step in enumerate(episode.steps):
        t_image = clock()
        stamp = int(step.stamp_ns) if step.stamp_ns is not None else t_image
        yield (
            OutMessage(topics.IMAGE, topics.TOPIC_TYPES[topics.IMAGE], image_msg(step.image, stamp, frame, distro)),
            t_image,
        )
        t = clock()
        yield (
            OutMessage(
                topics.GRASP_POSE, topics.TOPIC_TYPES[topics.GRASP_POSE], grasp_pose_msg(step.action, stamp, distro)
            ),
            t,
        )
        t = clock()
        next_stamp = max(stamp, t)  # taken after the attempt: never before the image it follows
        yield (
            OutMessage(
                topics.NEXT_IMAGE,
                topics.TOPIC_TYPES[topics.NEXT_IMAGE],
                image_msg(step.next_image, next_stamp, frame, distro),
            ),
            t,
        )
        t = clock()
        yield (
            OutMessage(
                topics.OUTCOME, topics.TOPIC_TYPES[topics.OUTCOME], outcome_msg(meta, index, step, stamp, distro)
            ),
            t,
        )
