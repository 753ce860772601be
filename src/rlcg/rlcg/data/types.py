"""Message types of rlcg bags: the ROS 2 standard types of a distro plus rlcg_interfaces.

The rlcg_interfaces definitions are parsed from the package's .msg and .action files at run time
(``rlcg.paths.interfaces_dir()``), so the ROS 2 package and the pure-Python core share one source of
truth. Type stores are built once per distro and then only read.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

from rlcg.errors import RlcgError

DISTROS = ("jazzy", "humble")
DEFAULT_DISTRO = "jazzy"
INTERFACES_PACKAGE = "rlcg_interfaces"


class InterfaceError(RlcgError):
    """The rlcg_interfaces files cannot be found or parsed, or a type is unknown."""


def _split_action(text: str) -> tuple[str, str, str]:
    """Goal, result and feedback parts of a .action file (separated by lines of ``---``)."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == "---":
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) != 3:
        raise InterfaceError(f"an action definition needs exactly two '---' separators, found {len(parts) - 1}")
    goal, result, feedback = ("\n".join(p) + "\n" for p in parts)
    return goal, result, feedback


def interface_definitions(root: Path | None = None) -> dict[str, str]:
    """Message definitions of rlcg_interfaces: type name -> .msg text (actions as _Goal/_Result/_Feedback)."""
    from rlcg.paths import interfaces_dir

    root = root or interfaces_dir()
    defs: dict[str, str] = {}
    for path in sorted((root / "msg").glob("*.msg")):
        defs[f"{INTERFACES_PACKAGE}/msg/{path.stem}"] = path.read_text(encoding="utf-8")
    for path in sorted((root / "action").glob("*.action")):
        try:
            goal, result, feedback = _split_action(path.read_text(encoding="utf-8"))
        except InterfaceError as exc:
            raise InterfaceError(f"{path}: {exc}") from None
        base = f"{INTERFACES_PACKAGE}/action/{path.stem}"
        defs.update({f"{base}_Goal": goal, f"{base}_Result": result, f"{base}_Feedback": feedback})
    if not defs:
        raise InterfaceError(f"no .msg files in {root / 'msg'}")
    return defs


@cache
def typestore(distro: str = DEFAULT_DISTRO):
    """The rosbags type store of ``distro`` (jazzy or humble) with the rlcg_interfaces types registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    stores = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE}
    if distro not in stores:
        raise InterfaceError(f"unknown ROS 2 distro {distro!r} (supported: {', '.join(DISTROS)})")
    store = get_typestore(stores[distro])
    types = {}
    for name, text in interface_definitions().items():
        try:
            types.update(get_types_from_msg(text, name))
        except Exception as exc:  # the rosbags parser raises its own error types
            raise InterfaceError(f"cannot parse the definition of {name}: {exc}") from exc
    store.register(types)
    return store


def msg_class(msgtype: str, distro: str = DEFAULT_DISTRO):
    try:
        return typestore(distro).types[msgtype]
    except KeyError:
        raise InterfaceError(f"message type {msgtype!r} is not known to the {distro} type store") from None


# --------------------------------------------------------------------------- small builders
def time_msg(stamp_ns: int, distro: str = DEFAULT_DISTRO):
    stamp_ns = int(stamp_ns)
    return msg_class("builtin_interfaces/msg/Time", distro)(
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000
    )


def header_msg(stamp_ns: int, frame_id: str, distro: str = DEFAULT_DISTRO):
    return msg_class("std_msgs/msg/Header", distro)(stamp=time_msg(stamp_ns, distro), frame_id=frame_id)


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` about z."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def quaternion_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z) of a quaternion; exact for pure z rotations."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
