"""Typed views of config/world.yaml, config/robot.yaml and config/camera.yaml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rlcg import paths
from rlcg.configio import ConfigError, from_dict, load_yaml


@dataclass(frozen=True)
class TableConfig:
    size: tuple[float, float, float] = (1.2, 1.8, 0.04)
    center_xy: tuple[float, float] = (0.45, 0.0)
    color: tuple[float, float, float] = (0.62, 0.60, 0.56)


@dataclass(frozen=True)
class BinsConfig:
    count: int = 3
    spacing: float = 0.40
    center_x: float = 0.60
    inner_size: tuple[float, float] = (0.30, 0.30)
    wall_height: float = 0.07
    wall_thickness: float = 0.012
    floor_thickness: float = 0.02
    color: tuple[float, float, float] = (0.30, 0.38, 0.52)
    centre_index: int = 1

    def validate(self) -> None:
        if self.count < 1:
            raise ConfigError("count must be at least 1")
        if not 0 <= self.centre_index < self.count:
            raise ConfigError(f"centre_index {self.centre_index} is not a bin index (0..{self.count - 1})")

    def center_y(self, index: int) -> float:
        return (index - (self.count - 1) / 2.0) * self.spacing

    @property
    def floor_z(self) -> float:
        """Height of the top face of a bin's floor (the table top is z = 0)."""
        return self.floor_thickness

    def tray_parts(self) -> list[tuple[str, tuple[float, float, float], tuple[float, float, float]]]:
        """A bin's floor and four walls as (name, full size, centre) boxes in its frame on the table
        (x towards the front wall): the one geometry of PyBullet's trays, Gazebo's and MoveIt's."""
        ix, iy = self.inner_size[0] / 2, self.inner_size[1] / 2
        th, h = self.wall_thickness, self.wall_height
        return [
            ("floor", (2 * (ix + th), 2 * (iy + th), self.floor_thickness), (0.0, 0.0, self.floor_thickness / 2)),
            ("wall_front", (th, 2 * (iy + th), h), (ix + th / 2, 0.0, h / 2)),
            ("wall_back", (th, 2 * (iy + th), h), (-ix - th / 2, 0.0, h / 2)),
            ("wall_left", (2 * ix, th, h), (0.0, iy + th / 2, h / 2)),
            ("wall_right", (2 * ix, th, h), (0.0, -iy - th / 2, h / 2)),
        ]


@dataclass(frozen=True)
class ObjectsConfig:
    source: str = "pybullet_data/random_urdfs"
    test_split: str = "ends_with_0"
    per_bin: tuple[int, int] = (5, 5)
    scale: float = 0.65
    mass: float = 0.1
    lateral_friction: float = 1.0
    rolling_friction: float = 0.01
    spinning_friction: float = 0.01
    angular_damping: float = 0.3
    spawn_margin: float = 0.05
    drop_height: tuple[float, float] = (0.01, 0.05)
    settle_steps: int = 120
    hull_points: int = 48

    def validate(self) -> None:
        lo, hi = self.per_bin
        if not 1 <= lo <= hi:
            raise ConfigError(f"per_bin must be [min, max] with 1 <= min <= max, got {list(self.per_bin)}")
        if self.test_split != "ends_with_0":
            raise ConfigError(f"test_split {self.test_split!r} is not supported (only 'ends_with_0')")
        if hi > 100:  # a bin draws its objects without replacement, and the test split holds 100
            raise ConfigError(f"per_bin allows at most 100 objects, got {hi}")
        if not 0 <= self.drop_height[0] <= self.drop_height[1]:
            raise ConfigError(f"drop_height must be [low, high] with 0 <= low <= high, got {list(self.drop_height)}")
        if self.scale <= 0 or self.mass <= 0:
            raise ConfigError("scale and mass must be > 0")
        if self.settle_steps < 1 or self.hull_points < 0 or 0 < self.hull_points < 4:
            raise ConfigError("settle_steps must be at least 1, and hull_points 0 (all) or at least 4")


@dataclass(frozen=True)
class PhysicsConfig:
    time_step: float = 1.0 / 240.0
    solver_iterations: int = 50
    settle_step_factor: int = 2
    settle_solver_iterations: int = 50
    gravity: float = -9.81

    def validate(self) -> None:
        if not 0 < self.time_step <= 0.1:
            raise ConfigError(f"time_step must be within (0, 0.1] s, got {self.time_step}")
        if min(self.solver_iterations, self.settle_step_factor, self.settle_solver_iterations) < 1:
            raise ConfigError("solver_iterations, settle_step_factor and settle_solver_iterations must be at least 1")


@dataclass(frozen=True)
class WorldConfig:
    table: TableConfig = field(default_factory=TableConfig)
    bins: BinsConfig = field(default_factory=BinsConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)


@dataclass(frozen=True)
class WorkspaceBounds:
    """Allowed grasp poses in the robot base frame."""

    x: tuple[float, float] = (0.48, 0.72)
    y: tuple[float, float] = (-0.12, 0.12)
    yaw: tuple[float, float] = (-math.pi / 2, math.pi / 2)
    z_offset: tuple[float, float] = (-0.02, 0.08)

    def validate(self) -> None:
        for name in ("x", "y", "yaw", "z_offset"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ConfigError(f"{name} must be [low, high] with low < high")

    @property
    def low(self) -> np.ndarray:
        return np.array([self.x[0], self.y[0], self.yaw[0], self.z_offset[0]])

    @property
    def high(self) -> np.ndarray:
        return np.array([self.x[1], self.y[1], self.yaw[1], self.z_offset[1]])


@dataclass(frozen=True)
class GripperConfig:
    max_opening: float = 0.11
    force: float = 40.0
    speed: float = 0.25
    finger_friction: float = 1.5


@dataclass(frozen=True)
class ExecutorConfig:
    approach_height: float = 0.22
    grasp_depth: float = 0.02
    descend_steps: int = 90
    close_steps: int = 60
    lift_height: float = 0.25
    lift_steps: int = 90
    hold_steps: int = 20
    success_height: float = 0.10
    arm_force: float = 300.0
    ik_iterations: int = 100
    waypoints: int = 10
    contact_stop: bool = True

    def validate(self) -> None:
        steps = ("descend_steps", "close_steps", "lift_steps", "ik_iterations", "waypoints")
        for name in steps:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hold_steps < 0:
            raise ConfigError(f"hold_steps must be >= 0, got {self.hold_steps}")


@dataclass(frozen=True)
class RobotConfig:
    urdf: str = "rlcg_iiwa.urdf.xacro"
    arm_joints: tuple[str, ...] = tuple(f"lbr_A{i}" for i in range(1, 8))
    finger_joints: tuple[str, ...] = ("gripper_finger_left_joint", "gripper_finger_right_joint")
    tcp_link: str = "gripper_tcp"
    camera_link: str = "camera_optical_frame"
    home_joints: tuple[float, ...] = (0.0, -0.75, 0.0, 1.55, 0.0, -0.85, 0.0)
    ik_rest_joints: tuple[float, ...] = (0.0, 0.45, 0.0, -1.45, 0.0, 1.25, 0.0)
    base_jitter_xy: float = 0.02
    base_jitter_yaw_deg: float = 3.0
    workspace: WorkspaceBounds = field(default_factory=WorkspaceBounds)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def validate(self) -> None:
        if len(self.home_joints) != len(self.arm_joints):
            raise ConfigError("home_joints needs one value per arm joint")
        if len(self.ik_rest_joints) != len(self.arm_joints):
            raise ConfigError("ik_rest_joints needs one value per arm joint")


@dataclass(frozen=True)
class CameraConfig:
    frame_id: str = "camera_optical_frame"
    mount_xyz: tuple[float, float, float] = (-0.05, 0.30, 0.80)
    look_at: tuple[float, float, float] = (0.60, 0.0, 0.0)
    width: int = 64
    height: int = 64
    vertical_fov_deg: float = 40.0
    near: float = 0.05
    far: float = 3.0

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ConfigError(f"image size {self.width}x{self.height} is too small (8 pixels at least)")
        if not 1.0 < self.vertical_fov_deg < 170.0:
            raise ConfigError("vertical_fov_deg must be within (1, 170)")
        if not 0 < self.near < self.far:
            raise ConfigError(f"near and far must satisfy 0 < near < far, got {self.near} and {self.far}")

    def mount_rpy(self) -> tuple[float, float, float]:
        """camera_link orientation (x forward, z up convention) that looks at ``look_at``."""
        d = np.asarray(self.look_at, float) - np.asarray(self.mount_xyz, float)
        yaw = math.atan2(d[1], d[0])
        pitch = math.atan2(-d[2], math.hypot(d[0], d[1]))
        return (0.0, pitch, yaw)

    def with_size(self, size: int | None) -> CameraConfig:
        return self if size is None else replace(self, width=size, height=size)


@dataclass(frozen=True)
class SimConfig:
    world: WorldConfig
    robot: RobotConfig
    camera: CameraConfig

    @classmethod
    def load(cls, config_dir: str | Path | None = None, image_size: int | None = None) -> SimConfig:
        root = Path(config_dir) if config_dir is not None else paths.config_dir()
        world = from_dict(WorldConfig, load_yaml(root / "world.yaml"), str(root / "world.yaml"))
        robot = from_dict(RobotConfig, load_yaml(root / "robot.yaml"), str(root / "robot.yaml"))
        camera = from_dict(CameraConfig, load_yaml(root / "camera.yaml"), str(root / "camera.yaml"))
        return cls(world=world, robot=robot, camera=camera.with_size(image_size))
