"""Small rigid-transform helpers (yaw-only poses of the robot base, quaternions as x, y, z, w)."""

from __future__ import annotations

import math

import numpy as np


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), the URDF convention."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return rot_z(yaw) @ ry @ rx


def quat_from_matrix(m: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation matrix."""
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return (float(x), float(y), float(z), float(w))


def matrix_from_quat(q) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def wrap_half_turn(yaw: float) -> float:
    """Map a gripper yaw into [-pi/2, pi/2): a parallel gripper is the same turned by pi."""
    return (yaw + math.pi / 2) % math.pi - math.pi / 2


def yaw_of(q) -> float:
    m = matrix_from_quat(q)
    return math.atan2(m[1, 0], m[0, 0])


class Pose2D:
    """A planar pose (x, y, yaw) of the robot base in the world."""

    __slots__ = ("x", "y", "yaw")

    def __init__(self, x: float, y: float, yaw: float):
        self.x, self.y, self.yaw = float(x), float(y), float(yaw)

    def to_world(self, xy: np.ndarray) -> np.ndarray:
        """Points (..., 2) from the base frame into the world frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([c * xy[..., 0] - s * xy[..., 1] + self.x, s * xy[..., 0] + c * xy[..., 1] + self.y], -1)

    def to_base(self, xy: np.ndarray) -> np.ndarray:
        """Points (..., 2) from the world frame into the base frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        xy = np.asarray(xy, dtype=np.float64)
        dx, dy = xy[..., 0] - self.x, xy[..., 1] - self.y
        return np.stack([c * dx + s * dy, -s * dx + c * dy], -1)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.yaw)
