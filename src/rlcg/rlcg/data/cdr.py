"""Direct readers of the CDR bytes of the messages rlcg ingests.

A full rosbags decode builds a Python object per nested message (Header, Time, Point ...), which
for small images costs more than reading the bytes. These functions read the fields ingest needs
straight from little-endian CDR (what every ROS 2 middleware on x86 and ARM writes); anything else
goes through the rosbags decoder. Layouts follow the message definitions; tests compare every
reader with rosbags on real messages, and ``fast_path_valid`` turns the rlcg_interfaces readers off
if the .msg files no longer match them.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import NamedTuple

import numpy as np

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U32x2 = struct.Struct("<II")
_U32x3 = struct.Struct("<III")
_RGB8, _RGB8_CDR = "rgb8", b"rgb8\x00"
_F64x4 = struct.Struct("<4d")
_F64x7 = struct.Struct("<7d")
_TIME = struct.Struct("<iI")
_TIME_LEN = struct.Struct("<iII")  # stamp, then the length of the frame id that follows it

# rosbags RIHS01 hashes of the rlcg_interfaces definitions these readers follow.
GRASP_OUTCOME_HASH = "RIHS01_6cf4b35b1a978a27cff0633bd382d87d3c8de65001edf7c4c21d4ab6d38e62bc"


def _align(pos: int, n: int) -> int:
    return pos + (-(pos - 4) % n)  # alignment counts from the payload, after the 4-byte encapsulation


def _string(buf, pos: int) -> tuple[str, int]:
    pos += -(pos - 4) % 4
    (n,) = _U32.unpack_from(buf, pos)
    end = pos + 4 + n
    if n < 1 or end > len(buf):
        raise ValueError(f"bad CDR string length {n} at byte {pos}")
    return str(buf[pos + 4 : end - 1], "utf-8"), end


def _header(buf, pos: int = 4) -> tuple[int, str, int]:
    sec, nanosec = _TIME.unpack_from(buf, pos)
    frame_id, pos = _string(buf, pos + 8)
    return sec * 1_000_000_000 + nanosec, frame_id, pos


def _header_skip_frame(buf, pos: int = 4) -> tuple[int, int]:
    """Stamp and end of a std_msgs/Header, without decoding its frame id."""
    sec, nanosec, n = _TIME_LEN.unpack_from(buf, pos)
    if n < 1 or pos + 12 + n > len(buf):
        raise ValueError(f"bad CDR string length {n} at byte {pos + 8}")
    return sec * 1_000_000_000 + nanosec, pos + 12 + n


class ImageFields(NamedTuple):
    stamp_ns: int
    frame_id: str  # empty from ``image`` (not read: ingest has no use for it)
    height: int
    width: int
    encoding: str
    step: int
    data: np.ndarray  # uint8 view into the message bytes


def image(buf) -> ImageFields:
    """sensor_msgs/msg/Image (without its frame id)."""
    stamp, pos = _header_skip_frame(buf)
    pos += -(pos - 4) % 4
    height, width, n = _U32x3.unpack_from(buf, pos)  # height, width, then the encoding's length
    end = pos + 12 + n
    if n < 1 or end > len(buf):
        raise ValueError(f"bad CDR string length {n} at byte {pos + 8}")
    encoding = _RGB8 if buf[pos + 12 : end] == _RGB8_CDR else str(buf[pos + 12 : end - 1], "utf-8")
    pos = end + 1 + (-(end + 1 - 4) % 4)  # is_bigendian (uint8), then step aligned to 4
    step, count = _U32x2.unpack_from(buf, pos)
    if pos + 8 + count > len(buf):
        raise ValueError(f"image data of {count} bytes runs past the message")
    data = np.frombuffer(buf, dtype=np.uint8, count=count, offset=pos + 8)
    # A plain tuple in ImageFields' field order: this runs twice per transition.
    return (stamp, "", height, width, encoding, step, data)  # type: ignore[return-value]


def pose_stamped(buf) -> tuple[int, str, tuple[float, ...]]:
    """geometry_msgs/msg/PoseStamped: stamp, frame, (px, py, pz, qx, qy, qz, qw)."""
    stamp, frame, pos = _header(buf)
    return stamp, frame, _F64x7.unpack_from(buf, _align(pos, 8))


def tf_message(buf) -> list[tuple[int, str, str, tuple[float, ...]]]:
    """tf2_msgs/msg/TFMessage: (stamp, parent frame, child frame, (tx, ty, tz, qx, qy, qz, qw)) each."""
    (count,) = _U32.unpack_from(buf, 4)
    pos = 8
    out = []
    for _ in range(count):
        stamp, parent, pos = _header(buf, _align(pos, 4))
        child, pos = _string(buf, pos)
        pos = _align(pos, 8)
        out.append((stamp, parent, child, _F64x7.unpack_from(buf, pos)))
        pos += 56
    return out


class OutcomeFields(NamedTuple):
    stamp_ns: int
    frame_id: str  # empty from ``grasp_outcome`` (not read)
    episode_id: str
    step: int
    reward: float
    done: bool
    success: bool
    lifted_height: float
    q_value: float
    domain: str
    policy_id: str
    seed: int
    bin_index: int
    action: tuple[float, float, float, float]


def grasp_outcome(buf) -> OutcomeFields:
    """rlcg_interfaces/msg/GraspOutcome (field order of msg/GraspOutcome.msg), without its frame id."""
    stamp, pos = _header_skip_frame(buf)
    episode_id, pos = _string(buf, pos)
    pos = _align(pos, 4)
    step, reward, done, success = struct.unpack_from("<If??", buf, pos)
    pos = _align(pos + 10, 8)
    lifted, q_value = struct.unpack_from("<dd", buf, pos)
    domain, pos = _string(buf, pos + 16)
    policy_id, pos = _string(buf, pos)
    pos = _align(pos, 8)
    (seed,) = _I64.unpack_from(buf, pos)
    (bin_index,) = _I32.unpack_from(buf, pos + 8)
    action = _F64x4.unpack_from(buf, _align(pos + 12, 8))
    return OutcomeFields(
        stamp,
        "",
        episode_id,
        step,
        reward,
        done,
        success,
        lifted,
        q_value,
        domain,
        policy_id,
        seed,
        bin_index,
        action,
    )


class EpisodeInfoFields(NamedTuple):
    stamp_ns: int
    frame_id: str
    episode_id: str
    seed: int
    domain: str
    policy_id: str
    bin_index: int


def episode_info(buf) -> EpisodeInfoFields:
    """The leading fields of rlcg_interfaces/msg/EpisodeInfo, up to ``bin_index``; what follows (bins
    mode, object split, the objects list: the slow part of a full decode) is not needed for training."""
    stamp, frame, pos = _header(buf)
    episode_id, pos = _string(buf, pos)
    pos = _align(pos, 8)
    (seed,) = _I64.unpack_from(buf, pos)
    domain, pos = _string(buf, pos + 8)
    policy_id, pos = _string(buf, pos)
    (bin_index,) = _I32.unpack_from(buf, _align(pos, 4))
    return EpisodeInfoFields(stamp, frame, episode_id, seed, domain, policy_id, bin_index)


EPISODE_INFO_PREFIX = (
    "std_msgs/Header header\nstring episode_id\nint64 seed\nstring domain\nstring policy_id\nint32 bin_index\n"
)


@cache
def fast_path_valid() -> bool:
    """Whether the rlcg_interfaces definitions parsed at run time are the ones these readers follow."""
    from rlcg.data.types import typestore

    store = typestore("jazzy")
    outcome_ok = store.hash_rihs01("rlcg_interfaces/msg/GraspOutcome") == GRASP_OUTCOME_HASH
    info_def = store.generate_msgdef("rlcg_interfaces/msg/EpisodeInfo")[0]
    return outcome_ok and info_def.startswith(EPISODE_INFO_PREFIX)
