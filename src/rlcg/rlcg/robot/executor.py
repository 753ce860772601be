"""The grasp executor's logic, independent of the motion stack: goal checks, stages, cancel, result.

A goal (rlcg_interfaces/action/ExecuteGrasp) is a grasp in the robot base frame: position x, y,
orientation = yaw about z, and a height offset; the pose's z is ignored, the TCP goes to
``grasp_z + z_offset`` pointing straight down, but never so low that the fingertips (which reach
``fingertip_length`` below the TCP) pass ``min_fingertip_z``: a deeper grasp stops there, as the
simulated descent stops at contact, since a straight-line descent on the robot has no contact stop.
The yaw is folded into [-pi/2, pi/2] (the parallel gripper is symmetric), so the wrist never turns
further than the policy's own range. Before anything moves, every waypoint (pre-grasp above the
target, the grasp, the lift) is checked against the configured workspace box, the orientation must
be a rotation about z, the frame must be the base frame, the open gripper at the grasp must clear
the planning scene's boxes (a bin wall under a finger), and the goal's stamp (the time of the image
the grasp was chosen on) must be at most ``max_goal_age_s`` old: a goal that fails any check is
rejected and the robot never moves.

Stages (the action's feedback): approach (open the gripper, free-space motion to the pre-grasp)
-> descend (Cartesian) -> close -> lift (Cartesian) -> check -> home (release the object back into
the bin, go to the home joints). Success is read from the gripper opening after the lift: fingers
that stopped between fully closed and fully open hold something. A cancel request is honoured
between stages and, through ``MotionBackend.stop``, during a motion (the node calls ``stop`` when
the cancel arrives; the motion that fails because of it is reported canceled, not aborted). One
goal runs at a time: ``execute`` takes a lock, so two goals racing never both move the arm.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rlcg.configio import ConfigError
from rlcg.data import topics
from rlcg.errors import RlcgError
from rlcg.robot import messages
from rlcg.robot.params import check_interval, check_range
from rlcg.sim.geometry import quat_from_matrix

STAGES = ("validate", "approach", "descend", "close", "lift", "check", "home", "done")


class GoalRejected(RlcgError):
    """The goal fails a check (frame, NaN, orientation, workspace box); nothing has moved."""


class MotionError(RlcgError):
    """Planning or execution failed (no plan within the timeout, controller error, ...)."""


class Canceled(RlcgError):
    """The goal was canceled; raised by backends that notice the cancel during a motion."""


@dataclass(frozen=True)
class ExecutorSettings:
    """Parameters of ``moveit_executor_node`` (config/moveit_executor_node.yaml)."""

    base_frame: str = topics.BASE_FRAME
    tcp_link: str = "gripper_tcp"
    planning_group: str = "arm"
    # Workspace box for every TCP waypoint, base frame (m). Conservative: the bin in front.
    box_x: list[float] = field(default_factory=lambda: [0.42, 0.78])
    box_y: list[float] = field(default_factory=lambda: [-0.18, 0.18])
    box_z: list[float] = field(default_factory=lambda: [0.01, 0.45])
    z_offset_limits: list[float] = field(default_factory=lambda: [-0.02, 0.08])
    grasp_z: float = 0.04  # TCP height of a grasp at z_offset 0, base frame (bin floor + grasp depth)
    fingertip_length: float = 0.015  # how far the fingertips reach below the TCP (urdf/rlcg_tool.xacro)
    min_fingertip_z: float = 0.025  # the fingertips never go lower: bin floor top (0.02) + 5 mm
    max_goal_age_s: float = 2.0  # a goal stamped longer ago than this is rejected; 0: unchecked
    max_clock_skew_s: float = 0.05  # a goal stamped later than now by more than this is rejected
    max_tilt_deg: float = 5.0  # largest tilt of the goal orientation's z axis (it must be a yaw about z)
    approach_height: float = 0.15  # pre-grasp this far above the grasp (m)
    lift_height: float = 0.20
    velocity_scaling: float = 0.1  # MoveIt max_velocity_scaling_factor (0, 1]
    acceleration_scaling: float = 0.1  # MoveIt max_acceleration_scaling_factor (0, 1]
    cartesian_velocity_scaling: float = 0.05  # descent and lift (Pilz LIN)
    planning_time_s: float = 5.0
    planning_attempts: int = 1
    free_space_pipeline: str = "ompl"
    free_space_planner: str = "RRTConnectkConfigDefault"
    cartesian_pipeline: str = "pilz_industrial_motion_planner"
    cartesian_planner: str = "LIN"
    execution_timeout_s: float = 30.0
    gripper_open_width: float = 0.11  # m between the finger pads when open
    gripper_closed_width: float = 0.0
    gripper_effort: float = 40.0  # N
    # Success: after the lift the fingers stopped at least this far apart (an object between them) ...
    success_min_opening: float = 0.004
    # ... and at least this much short of fully open (they did close).
    success_open_margin: float = 0.005
    release_after_lift: bool = True  # drop the object back into the bin (self-supervised collection)
    collision_scene: bool = True  # table and bins (config/world.yaml) in MoveIt's planning scene
    go_home: bool = True
    home_joints: list[float] = field(default_factory=lambda: [0.0, -0.75, 0.0, 1.55, 0.0, -0.85, 0.0])
    action_name: str = topics.ACTION_NAME
    gripper_action: str = "gripper_controller/gripper_cmd"  # control_msgs/action/GripperCommand server
    gripper_position_per_width: float = 0.5  # GripperCommand position per metre of opening (one finger's travel)

    def validate(self) -> None:
        for name in ("box_x", "box_y", "box_z", "z_offset_limits"):
            check_interval(name, getattr(self, name))
        check_range("velocity_scaling", self.velocity_scaling, 0.0, 1.0, low_open=True)
        check_range("acceleration_scaling", self.acceleration_scaling, 0.0, 1.0, low_open=True)
        check_range("cartesian_velocity_scaling", self.cartesian_velocity_scaling, 0.0, 1.0, low_open=True)
        check_range("max_tilt_deg", self.max_tilt_deg, 0.0, 45.0)
        check_range("approach_height", self.approach_height, 0.0, 1.0, low_open=True)
        check_range("lift_height", self.lift_height, 0.0, 1.0, low_open=True)
        check_range("planning_time_s", self.planning_time_s, 0.0, 600.0, low_open=True)
        check_range("execution_timeout_s", self.execution_timeout_s, 0.0, 3600.0, low_open=True)
        check_range("gripper_open_width", self.gripper_open_width, 0.0, 1.0, low_open=True)
        if self.planning_attempts < 1:
            raise ConfigError("planning_attempts must be at least 1")
        check_range("gripper_closed_width", self.gripper_closed_width, 0.0, self.gripper_open_width)
        if not self.gripper_closed_width < self.gripper_open_width:
            raise ConfigError("gripper_closed_width must be smaller than gripper_open_width")
        check_range("gripper_effort", self.gripper_effort, 0.0, 1000.0, low_open=True)
        check_range("gripper_position_per_width", self.gripper_position_per_width, 0.0, 100.0, low_open=True)
        check_range("success_min_opening", self.success_min_opening, 0.0, self.gripper_open_width)
        check_range("success_open_margin", self.success_open_margin, 0.0, self.gripper_open_width)
        check_range("grasp_z", self.grasp_z, -2.0, 2.0)  # a TCP height in the base frame, in metres
        check_range("fingertip_length", self.fingertip_length, 0.0, 0.5)
        check_range("min_fingertip_z", self.min_fingertip_z, -2.0, 2.0)
        check_range("max_goal_age_s", self.max_goal_age_s, 0.0, 3600.0)
        check_range("max_clock_skew_s", self.max_clock_skew_s, 0.0, 10.0)
        lowest_tcp = self.min_fingertip_z + self.fingertip_length
        if not self.box_z[0] - 1e-9 <= lowest_tcp <= self.box_z[1] + 1e-9:
            raise ConfigError(
                f"the lowest grasp (TCP at min_fingertip_z + fingertip_length = {lowest_tcp:.4f} m) is outside "
                f"box_z {list(self.box_z)}"
            )
        if len(self.home_joints) not in (0, 7):
            raise ConfigError("home_joints needs 7 values (or none to skip going home)")
        if not all(math.isfinite(v) and abs(v) <= 2 * math.pi for v in self.home_joints):
            raise ConfigError(f"home_joints must be finite angles within +-2 pi rad, got {list(self.home_joints)}")


@dataclass(frozen=True)
class GraspGoal:
    """The fields of an ExecuteGrasp goal, read from a rosbags or rclpy goal object."""

    frame_id: str
    position: np.ndarray  # (3,) as sent; z is ignored
    quaternion: np.ndarray  # (4,) x, y, z, w
    z_offset: float = 0.0
    episode_id: str = ""
    dry_run: bool = False
    stamp_ns: int = 0

    @classmethod
    def from_msg(cls, goal: Any) -> GraspGoal:
        """From an object with ExecuteGrasp goal fields; non-finite values raise GoalRejected."""
        try:
            position, quat = messages.pose_arrays(goal.grasp.pose)
        except messages.MessageError as exc:
            raise GoalRejected(str(exc)) from None
        z_offset = float(goal.z_offset)
        if not math.isfinite(z_offset):
            raise GoalRejected(f"z_offset is {z_offset}: not a finite number")
        return cls(
            frame_id=str(goal.grasp.header.frame_id),
            position=position,
            quaternion=quat,
            z_offset=z_offset,
            episode_id=str(goal.episode_id),
            dry_run=bool(goal.dry_run),
            stamp_ns=messages.stamp_ns(goal.grasp.header),
        )


@dataclass(frozen=True)
class Waypoint:
    stage: str
    position: np.ndarray
    quaternion: np.ndarray
    cartesian: bool


@dataclass(frozen=True)
class GraspPlan:
    """The checked waypoints of one grasp, all inside the workspace box."""

    goal: GraspGoal
    yaw: float
    pre_grasp: Waypoint
    grasp: Waypoint
    lift: Waypoint
    held_above_floor: bool = False  # the asked-for depth would have put the fingertips below min_fingertip_z


@dataclass
class GraspResult:
    success: bool
    lifted_height: float
    message: str
    stage: str = "done"  # the last stage entered
    canceled: bool = False
    rejected: bool = False
    aborted: bool = False  # planning or execution failed: not a grasp attempt, must not be recorded as one
    opening: float = math.nan

    def result_fields(self) -> dict[str, Any]:
        """Fields of an ExecuteGrasp result."""
        return {"success": bool(self.success), "lifted_height": float(self.lifted_height), "message": self.message}


class MotionBackend(Protocol):
    """What the executor needs from a motion stack (MoveItPy + a gripper action on a robot)."""

    def plan_to_pose(self, waypoint: Waypoint, settings: ExecutorSettings) -> None:
        """Plan (not execute) a motion to ``waypoint``; raise MotionError when there is no plan."""

    def move_to_pose(self, waypoint: Waypoint, settings: ExecutorSettings) -> None:
        """Plan and execute, free-space or Cartesian (``waypoint.cartesian``); raise MotionError."""

    def move_to_joints(self, joints: list[float], settings: ExecutorSettings) -> None: ...

    def set_gripper(self, width: float, settings: ExecutorSettings) -> float:
        """Command the finger opening (m); return the opening where the fingers stopped."""

    def gripper_opening(self) -> float: ...

    def stop(self) -> None:
        """Stop any motion now (cancel)."""


def plan_grasp(goal: GraspGoal, settings: ExecutorSettings) -> GraspPlan:
    """Check a goal and compute its waypoints; GoalRejected names the first failed check."""
    if goal.frame_id != settings.base_frame:
        raise GoalRejected(
            f"grasp pose is in frame {goal.frame_id!r}; the executor takes poses in {settings.base_frame!r}"
        )
    lo, hi = settings.z_offset_limits
    if not lo - 1e-9 <= goal.z_offset <= hi + 1e-9:
        raise GoalRejected(f"z_offset {goal.z_offset:.4f} is outside [{lo}, {hi}]")
    try:
        yaw = messages.yaw_of_quaternion(goal.quaternion, math.radians(settings.max_tilt_deg))
    except messages.MessageError as exc:
        raise GoalRejected(str(exc)) from None
    yaw = fold_yaw(yaw)
    # The TCP always points straight down, turned by the goal's yaw.
    quat = np.array(quat_from_matrix(messages.tcp_rotation(yaw)))
    lowest = settings.min_fingertip_z + settings.fingertip_length
    depth = settings.grasp_z + goal.z_offset
    grasp = np.array([goal.position[0], goal.position[1], max(depth, lowest)])
    points = {
        "grasp": grasp,
        "pre_grasp": grasp + np.array([0.0, 0.0, settings.approach_height]),
        "lift": grasp + np.array([0.0, 0.0, settings.lift_height]),
    }
    for name, p in points.items():
        for axis, value, (a, b) in zip("xyz", p, (settings.box_x, settings.box_y, settings.box_z)):
            if not a - 1e-9 <= value <= b + 1e-9:
                raise GoalRejected(
                    f"{name} waypoint {axis}={value:.4f} m is outside the workspace box [{a}, {b}] "
                    f"(frame {settings.base_frame}); nothing moved"
                )
    for name, p in points.items():  # what the box leaves to chance: the fingers below the TCP
        if p[2] - settings.fingertip_length < settings.min_fingertip_z - 1e-9:
            raise GoalRejected(f"{name} waypoint puts the fingertips below min_fingertip_z; nothing moved")
    return GraspPlan(
        goal=goal,
        yaw=yaw,
        pre_grasp=Waypoint("approach", points["pre_grasp"], quat, cartesian=False),
        grasp=Waypoint("descend", points["grasp"], quat, cartesian=True),
        lift=Waypoint("lift", points["lift"], quat, cartesian=True),
        held_above_floor=depth < lowest - 1e-9,
    )


def fold_yaw(yaw: float) -> float:
    """The same parallel-jaw grasp with the yaw in [-pi/2, pi/2): turned by pi it is unchanged."""
    return (yaw + math.pi / 2) % math.pi - math.pi / 2


def check_goal_age(goal: GraspGoal, now_ns: int, settings: ExecutorSettings) -> None:
    """GoalRejected unless the goal's stamp is recent on the executor's clock (``max_goal_age_s`` 0: no check)."""
    if settings.max_goal_age_s <= 0:
        return
    if goal.stamp_ns <= 0:
        raise GoalRejected(
            "the grasp pose has no header stamp; stamp it with the time of the image it was chosen on "
            "(or set max_goal_age_s to 0)"
        )
    age = (now_ns - goal.stamp_ns) / 1e9
    if age > settings.max_goal_age_s:
        raise GoalRejected(f"the grasp pose is stamped {age:.3f} s ago (max_goal_age_s {settings.max_goal_age_s})")
    if -age > settings.max_clock_skew_s:
        raise GoalRejected(f"the grasp pose is stamped {-age:.3f} s in the future: check the clocks (use_sim_time?)")


def holds_object(opening: float, settings: ExecutorSettings) -> bool:
    """Fingers that stopped clearly short of closed and of open have something between them."""
    return (
        math.isfinite(opening)
        and opening >= settings.gripper_closed_width + settings.success_min_opening
        and opening <= settings.gripper_open_width - settings.success_open_margin
    )


class GraspExecutor:
    """Runs one goal at a time through a MotionBackend, reporting stages through ``feedback``."""

    def __init__(
        self,
        backend: MotionBackend,
        settings: ExecutorSettings,
        clock: Callable[[], int] | None = None,
        obstacles: Sequence[Any] = (),
    ):
        """``clock`` gives now in ns on the clock that stamps the goals (the node's); without it
        goals' ages are not checked. ``obstacles`` (rlcg.robot.scene.CollisionBox, the planning
        scene's): a goal whose open gripper would touch one at the grasp is rejected."""
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.obstacles = list(obstacles)
        self._running = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._running.locked()

    def check(self, goal_msg: Any) -> GraspPlan:
        """Goal acceptance: GoalRejected if the goal must not run (the node rejects it)."""
        goal = GraspGoal.from_msg(goal_msg)
        plan = plan_grasp(goal, self.settings)
        if self.obstacles:
            from rlcg.robot.scene import gripper_obstacle

            rotation = messages.tcp_rotation(plan.yaw)
            hit = gripper_obstacle(plan.grasp.position, rotation, self.settings.gripper_open_width, self.obstacles)
            if hit is not None:
                raise GoalRejected(f"{hit} at the grasp; nothing moved")
        if self.clock is not None:
            check_goal_age(goal, self.clock(), self.settings)
        return plan

    def execute(
        self,
        goal_msg: Any,
        feedback: Callable[[str], None] = lambda stage: None,
        cancel_requested: Callable[[], bool] = lambda: False,
    ) -> GraspResult:
        if not self._running.acquire(blocking=False):
            return GraspResult(False, 0.0, "executor busy with another goal", stage="validate", rejected=True)
        try:
            return self._execute(goal_msg, feedback, cancel_requested)
        finally:
            self._running.release()

    def _execute(self, goal_msg, feedback, cancel_requested) -> GraspResult:
        s = self.settings
        b = self.backend
        stage = "validate"
        feedback(stage)
        measured: GraspResult | None = None  # the outcome, once the gripper has been read after the lift
        try:
            plan = self.check(goal_msg)
        except GoalRejected as exc:
            return GraspResult(False, 0.0, f"rejected: {exc}", stage=stage, rejected=True)
        try:
            if plan.goal.dry_run:
                stage = "approach"
                feedback(stage)
                b.plan_to_pose(plan.pre_grasp, s)
                return GraspResult(
                    True, 0.0, "dry run: goal is inside the workspace and the pre-grasp is reachable", stage
                )
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("approach", lambda: b.set_gripper(s.gripper_open_width, s)),
                ("approach", lambda: b.move_to_pose(plan.pre_grasp, s)),
                ("descend", lambda: b.move_to_pose(plan.grasp, s)),
                ("close", lambda: b.set_gripper(s.gripper_closed_width, s)),
                ("lift", lambda: b.move_to_pose(plan.lift, s)),
            ]
            last = None
            for stage, step in steps:
                if cancel_requested():
                    return self._canceled(stage)
                if stage != last:
                    feedback(stage)
                    last = stage
                step()
            stage = "check"
            feedback(stage)
            opening = b.gripper_opening()
            success = holds_object(opening, s)
            lifted = s.lift_height if success else 0.0
            message = (
                f"holding an object after the lift (gripper opening {opening * 1000:.1f} mm)"
                if success
                else f"nothing held after the lift (gripper opening {opening * 1000:.1f} mm)"
            )
            if plan.held_above_floor:
                message += "; the descent stopped at min_fingertip_z"
            measured = GraspResult(success, lifted, message, "check", opening=opening)
            # Release and home are tidying up: a cancel now still reports the measured outcome.
            tidy: list[Callable[[], Any]] = []
            if s.release_after_lift:
                tidy.append(lambda: b.set_gripper(s.gripper_open_width, s))
            if s.go_home and s.home_joints:
                tidy.append(lambda: b.move_to_joints(list(s.home_joints), s))
            if tidy:
                stage = "home"
                feedback(stage)
            for step in tidy:
                if cancel_requested():
                    b.stop()
                    return GraspResult(
                        success, lifted, message + "; canceled before going home", stage, canceled=True, opening=opening
                    )
                step()
            feedback("done")
            return GraspResult(success, lifted, message, "done", opening=opening)
        except Canceled:
            return self._canceled(stage)
        except MotionError as exc:
            if cancel_requested():  # the node stopped the motion for the cancel: that is why it failed
                if measured is not None:  # while tidying up: the grasp itself was measured, and stands
                    self.backend.stop()
                    return GraspResult(
                        measured.success,
                        measured.lifted_height,
                        measured.message + "; canceled while going home",
                        stage,
                        canceled=True,
                        opening=measured.opening,
                    )
                return self._canceled(stage)
            b.stop()
            return GraspResult(False, 0.0, f"{stage} failed: {exc}", stage, aborted=True)

    def _canceled(self, stage: str) -> GraspResult:
        self.backend.stop()
        return GraspResult(False, 0.0, f"canceled before/during {stage}", stage, canceled=True)
