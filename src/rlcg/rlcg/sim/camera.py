"""Pinhole camera model: intrinsics as a CameraInfo-like record and OpenGL matrices for PyBullet."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlcg.sim.config import CameraConfig


@dataclass(frozen=True)
class CameraIntrinsics:
    """The fields of sensor_msgs/CameraInfo that a pinhole camera without distortion fills."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frame_id: str = "camera_optical_frame"
    distortion_model: str = "plumb_bob"

    @classmethod
    def from_config(cls, cfg: CameraConfig, fov_scale: float = 1.0) -> CameraIntrinsics:
        fov = math.radians(cfg.vertical_fov_deg) * fov_scale
        f = (cfg.height / 2.0) / math.tan(fov / 2.0)
        return cls(
            width=cfg.width,
            height=cfg.height,
            fx=f,
            fy=f,
            cx=cfg.width / 2.0,
            cy=cfg.height / 2.0,
            frame_id=cfg.frame_id,
        )

    @property
    def k(self) -> tuple[float, ...]:
        return (self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0)

    @property
    def d(self) -> tuple[float, ...]:
        return (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def r(self) -> tuple[float, ...]:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def p(self) -> tuple[float, ...]:
        return (self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0)

    def as_camera_info(self) -> dict:
        """Field names and layout of sensor_msgs/msg/CameraInfo (lower-case k, d, r, p as in ROS 2)."""
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": self.distortion_model,
            "d": list(self.d),
            "k": list(self.k),
            "r": list(self.r),
            "p": list(self.p),
            "frame_id": self.frame_id,
        }

    def projection_matrix(self, near: float, far: float) -> list[float]:
        """Column-major OpenGL projection whose pixels match this pinhole model exactly."""
        w, h = float(self.width), float(self.height)
        proj = np.array(
            [
                [2 * self.fx / w, 0.0, 1.0 - 2 * self.cx / w, 0.0],
                [0.0, 2 * self.fy / h, 2 * self.cy / h - 1.0, 0.0],
                [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )
        return proj.T.reshape(-1).tolist()

    def project(self, points_optical: np.ndarray) -> np.ndarray:
        """Pixel coordinates (u, v) of points given in the optical frame (z forward)."""
        pts = np.atleast_2d(points_optical)
        u = self.fx * pts[:, 0] / pts[:, 2] + self.cx
        v = self.fy * pts[:, 1] / pts[:, 2] + self.cy
        return np.stack([u, v], axis=1)


def view_matrix(position: np.ndarray, rotation: np.ndarray) -> list[float]:
    """Column-major OpenGL view matrix for an optical frame (x right, y down, z forward)."""
    # OpenGL's camera looks down -z with y up: flip the optical frame's y and z axes.
    gl_from_optical = np.diag([1.0, -1.0, -1.0])
    r_world_gl = rotation @ gl_from_optical
    view = np.eye(4)
    view[:3, :3] = r_world_gl.T
    view[:3, 3] = -r_world_gl.T @ position
    return view.T.reshape(-1).tolist()


class TablePlaneProjector:
    """Maps between image pixels and points on a horizontal plane in the robot base frame, for
    the nominal camera mount of a CameraConfig (no domain jitter): heatmaps and grasp markers."""

    def __init__(self, cfg: CameraConfig, intrinsics: CameraIntrinsics | None = None):
        from rlcg.sim.geometry import rpy_matrix

        self.intrinsics = intrinsics or CameraIntrinsics.from_config(cfg)
        r_link = rpy_matrix(*cfg.mount_rpy())
        # camera_optical_joint: rpy (-pi/2, 0, -pi/2) from camera_link (see urdf/rlcg_iiwa.urdf.xacro).
        self.rotation = r_link @ rpy_matrix(-math.pi / 2, 0.0, -math.pi / 2)
        self.position = np.asarray(cfg.mount_xyz, dtype=np.float64)

    def project(self, points_base: np.ndarray) -> np.ndarray:
        """Pixel (u, v) of base-frame points (N x 3)."""
        pts = (np.atleast_2d(points_base) - self.position) @ self.rotation
        return self.intrinsics.project(pts)

    def unproject(self, u: np.ndarray, v: np.ndarray, z: float) -> np.ndarray:
        """Base-frame (x, y) where the rays through pixels (u, v) meet the plane at height z."""
        k = self.intrinsics
        rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u, dtype=np.float64)], -1)
        dirs = rays @ self.rotation.T
        t = (z - self.position[2]) / dirs[..., 2]
        return (self.position + t[..., None] * dirs)[..., :2]
