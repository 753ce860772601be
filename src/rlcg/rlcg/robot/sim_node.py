"""The PyBullet three-bin world as a ROS node's logic: camera frames, TF, and ExecuteGrasp goals.

The node publishes what a camera driver and robot_state_publisher would (Image, CameraInfo, TF
from the world to the robot base and from the base to the camera's optical frame) and serves
ExecuteGrasp goals by running the core's grasp in the simulator. Goals go through the same checks
as on the robot: base frame, finite values, top-down orientation, workspace bounds; a goal that
fails them is rejected before the simulator moves.

Goal convention (rlcg_interfaces/action/ExecuteGrasp, shared with the MoveIt executor): position
x, y and a yaw about z in the base frame; the pose's z is ignored and z_offset comes from the goal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlcg.configio import ConfigError
from rlcg.data import topics
from rlcg.robot import messages
from rlcg.robot.executor import GoalRejected, GraspGoal, GraspResult
from rlcg.robot.params import check_range
from rlcg.sim.geometry import quat_from_matrix, rot_z, rpy_matrix


@dataclass(frozen=True)
class SimNodeSettings:
    """Parameters of ``pybullet_sim_node`` (config/pybullet_sim_node.yaml)."""

    domain: str = "sim"  # a visual domain of config/domains (sim, randomized, pseudo-real, sim-camera-jitter)
    bins: str = "single"  # single: the robot always faces the centre bin; multi: a random bin per scene
    split: str = "train"  # object split
    seed: int = 0  # first scene; scene k uses seed + k
    attempts_per_scene: int = 5  # grasps before the scene is rebuilt (also rebuilt when the bin is empty)
    image_encoding: str = "rgb8"
    image_size: int = 64
    camera_rate_hz: float = 10.0
    world_frame: str = topics.WORLD_FRAME
    base_frame: str = topics.BASE_FRAME
    camera_frame: str = topics.CAMERA_FRAME
    max_tilt_deg: float = 5.0
    action_name: str = topics.ACTION_NAME

    def validate(self) -> None:
        if self.bins not in ("single", "multi"):
            raise ConfigError(f"bins must be 'single' or 'multi', got {self.bins!r}")
        if self.image_encoding not in messages.WRITABLE_ENCODINGS:
            raise ConfigError(f"image_encoding must be one of {list(messages.WRITABLE_ENCODINGS)}")
        if self.attempts_per_scene < 1:
            raise ConfigError("attempts_per_scene must be at least 1")
        if self.image_size < 8:
            raise ConfigError("image_size must be at least 8")
        check_range("camera_rate_hz", self.camera_rate_hz, 0.0, 1000.0, low_open=True)


@dataclass
class SimGraspReport:
    result: GraspResult
    action: np.ndarray | None  # the simulator's x, y, yaw, z_offset (None when rejected)
    scene_seed: int
    reset: bool  # the scene was rebuilt after this grasp


class PyBulletSimCore:
    """Owns a ThreeBinWorld; every method returns rosbags messages or CDR bytes, never ROS objects."""

    def __init__(self, world, settings: SimNodeSettings, distro: str = messages.DEFAULT_DISTRO):
        self.world = world
        self.settings = settings
        self.distro = distro
        self.scene_index = 0
        self.attempts = 0
        self.image: np.ndarray | None = None

    @classmethod
    def create(cls, settings: SimNodeSettings, distro: str = messages.DEFAULT_DISTRO) -> PyBulletSimCore:
        from rlcg.sim.world import ThreeBinWorld

        world = ThreeBinWorld(
            domain=settings.domain, bins=settings.bins, split=settings.split, image_size=settings.image_size
        )
        return cls(world, settings, distro)

    @property
    def scene_seed(self) -> int:
        return self.settings.seed + self.scene_index

    def start(self) -> np.ndarray:
        self.image = self.world.reset(self.scene_seed)
        self.attempts = 0
        return self.image

    def _next_scene(self) -> None:
        self.scene_index += 1
        self.start()

    # ----------------------------------------------------------------- camera and TF
    def camera_messages(self, stamp: int) -> tuple[Any, Any]:
        """(Image, CameraInfo) of the current camera frame, both stamped ``stamp``."""
        assert self.image is not None, "call start() first"
        s = self.settings
        image = messages.image_msg(self.image, stamp, s.camera_frame, s.image_encoding, self.distro)
        intr = self.world.intrinsics
        info = messages.camera_info_msg(
            type(intr)(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy, s.camera_frame), stamp, self.distro
        )
        return image, info

    def camera_cdr(self, stamp: int) -> tuple[bytes, bytes]:
        image, info = self.camera_messages(stamp)
        return (
            messages.serialize(image, "sensor_msgs/msg/Image", self.distro),
            messages.serialize(info, "sensor_msgs/msg/CameraInfo", self.distro),
        )

    def tf_messages(self, stamp: int) -> tuple[Any, Any]:
        """tf2_msgs/TFMessage pair: (world -> base, this scene's base pose, for /tf) and
        (base -> camera optical frame, for /tf_static), both stamped ``stamp``."""
        s = self.settings
        scene = self.world.scene
        assert scene is not None, "call start() first"
        base = scene.base_pose
        base_rot = rot_z(base.yaw)
        cam_pos, cam_rot = self.world.camera_pose()  # world frame, including the domain's camera jitter
        rel_pos = base_rot.T @ (cam_pos - np.array([base.x, base.y, 0.0]))
        rel_rot = base_rot.T @ cam_rot
        d = self.distro
        world_base = messages.transform_msg(
            s.world_frame, s.base_frame, (base.x, base.y, 0.0), quat_from_matrix(base_rot), stamp, d
        )
        base_camera = messages.transform_msg(s.base_frame, s.camera_frame, rel_pos, quat_from_matrix(rel_rot), stamp, d)
        return messages.tf_message([world_base], d), messages.tf_message([base_camera], d)

    def tf_cdr(self, stamp: int) -> tuple[bytes, bytes]:
        dynamic, static = self.tf_messages(stamp)
        return (
            messages.serialize(dynamic, "tf2_msgs/msg/TFMessage", self.distro),
            messages.serialize(static, "tf2_msgs/msg/TFMessage", self.distro),
        )

    # ----------------------------------------------------------------- grasping
    def goal_action(self, goal_msg: Any) -> np.ndarray:
        """The simulator's action for an ExecuteGrasp goal; GoalRejected when it must not run."""
        from rlcg.sim.world import GraspAction, InvalidActionError

        goal = GraspGoal.from_msg(goal_msg)
        if goal.frame_id != self.settings.base_frame:
            raise GoalRejected(
                f"grasp pose is in frame {goal.frame_id!r}; the simulator takes poses in {self.settings.base_frame!r}"
            )
        try:
            yaw = messages.yaw_of_quaternion(goal.quaternion, math.radians(self.settings.max_tilt_deg))
        except messages.MessageError as exc:
            raise GoalRejected(str(exc)) from None
        from rlcg.sim.geometry import wrap_half_turn

        action = GraspAction(float(goal.position[0]), float(goal.position[1]), wrap_half_turn(yaw), goal.z_offset)
        try:
            self.world.check_action(action)
        except InvalidActionError as exc:
            raise GoalRejected(str(exc)) from None
        return action.as_array()

    def execute(
        self,
        goal_msg: Any,
        feedback: Callable[[str], None] = lambda stage: None,
        cancel_requested: Callable[[], bool] = lambda: False,
    ) -> SimGraspReport:
        """Run one grasp; the camera image afterwards shows the new scene (or a fresh one)."""
        from rlcg.sim.world import GraspAction

        feedback("validate")
        try:
            action = self.goal_action(goal_msg)
        except GoalRejected as exc:
            return SimGraspReport(
                GraspResult(False, 0.0, f"rejected: {exc}", "validate", rejected=True), None, self.scene_seed, False
            )
        if bool(goal_msg.dry_run):
            return SimGraspReport(
                GraspResult(True, 0.0, "dry run: goal is inside the workspace", "validate"),
                action,
                self.scene_seed,
                False,
            )
        if cancel_requested():
            return SimGraspReport(
                GraspResult(False, 0.0, "canceled before approach", "validate", canceled=True),
                action,
                self.scene_seed,
                False,
            )
        # The simulated grasp runs as one physics sequence (approach, descend, close, lift, home);
        # its feedback is the first stage only.
        feedback("approach")
        outcome = self.world.execute(GraspAction.from_array(action))
        seed = self.scene_seed
        self.attempts += 1
        message = (
            f"lifted object {outcome.grasped_object_id} by {outcome.lifted_height:.3f} m"
            if outcome.success
            else f"nothing lifted (highest object {outcome.lifted_height:.3f} m above the bin floor)"
        )
        result = GraspResult(bool(outcome.success), float(outcome.lifted_height), message, "done")
        reset = self.attempts >= self.settings.attempts_per_scene or not self.world.objects_in_front()
        if reset:
            self._next_scene()
        else:
            self.image = self.world.render()
        feedback("done")
        return SimGraspReport(result, action, seed, reset)

    def close(self) -> None:
        self.world.close()


def base_to_camera_pose(camera_config) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Nominal optical-frame pose in the base frame from config/camera.yaml (no domain jitter)."""
    r_link = rpy_matrix(*camera_config.mount_rpy())
    r_opt = r_link @ rpy_matrix(-math.pi / 2, 0.0, -math.pi / 2)
    return np.asarray(camera_config.mount_xyz, dtype=np.float64), quat_from_matrix(r_opt)
