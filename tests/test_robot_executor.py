"""moveit_executor_node logic (rlcg.robot.executor) without MoveIt: goal checks before any motion,
stages, success from the gripper opening, cancel and failures. The backend here is a recording
stand-in for MoveItPy + GripperCommand (which cannot run without ROS); it only logs the calls the
executor makes and simulates a gripper closing on an object of a given width."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlcg.configio import ConfigError
from rlcg.robot import messages
from rlcg.robot.executor import (
    Canceled,
    ExecutorSettings,
    GoalRejected,
    GraspExecutor,
    GraspGoal,
    GraspResult,
    MotionError,
    plan_grasp,
)
from rlcg.robot.params import read_node_params, settings_from_params


class RecordingBackend:
    def __init__(self, object_width: float | None = 0.03, fail_at: str | None = None, cancel_at: str | None = None):
        self.calls: list[tuple] = []
        self.object_width = object_width
        self.fail_at = fail_at
        self.cancel_at = cancel_at
        self.opening = math.nan
        self.stopped = False

    def plan_to_pose(self, wp, settings):
        self.calls.append(("plan", wp.stage, tuple(np.round(wp.position, 4))))

    def move_to_pose(self, wp, settings):
        if wp.stage == self.fail_at:
            raise MotionError("no plan")
        if wp.stage == self.cancel_at:
            raise Canceled("canceled")
        self.calls.append(("move", wp.stage, tuple(np.round(wp.position, 4)), wp.cartesian))

    def move_to_joints(self, joints, settings):
        self.calls.append(("joints", tuple(joints)))

    def set_gripper(self, width, settings):
        if width < settings.gripper_open_width and self.object_width is not None:
            self.opening = max(width, self.object_width)
        else:
            self.opening = width
        self.calls.append(("gripper", width))
        return self.opening

    def gripper_opening(self):
        return self.opening

    def stop(self):
        self.stopped = True

    @property
    def moved(self) -> bool:
        return any(c[0] in ("move", "joints", "gripper") for c in self.calls)


def goal(x=0.6, y=0.0, yaw=0.3, z_offset=0.0, frame="lbr_link_0", dry_run=False):
    cls = messages.msg_class("rlcg_interfaces/action/ExecuteGrasp_Goal")
    pose = messages.action_pose_msg([0.0, 0.0, yaw, 0.0], frame, 5)
    pose.pose.position.x, pose.pose.position.y = x, y  # may be NaN: the executor must catch it
    return cls(grasp=pose, z_offset=z_offset, episode_id="ep", dry_run=dry_run)


SETTINGS = ExecutorSettings()


def test_defaults_are_conservative_for_the_real_robot():
    assert SETTINGS.velocity_scaling == 0.1 and SETTINGS.acceleration_scaling == 0.1
    shipped = settings_from_params(
        ExecutorSettings, read_node_params("config/moveit_executor_node.yaml", "moveit_executor_node")
    )
    assert shipped.velocity_scaling == 0.1 and shipped.acceleration_scaling == 0.1


def test_successful_grasp_runs_all_stages_in_order():
    b = RecordingBackend(object_width=0.03)
    stages = []
    result = GraspExecutor(b, SETTINGS).execute(goal(), stages.append)
    assert result.success and not result.canceled and result.lifted_height == SETTINGS.lift_height
    assert stages == ["validate", "approach", "descend", "close", "lift", "check", "home", "done"]
    moves = [c for c in b.calls if c[0] == "move"]
    assert [m[1] for m in moves] == ["approach", "descend", "lift"]
    assert [m[3] for m in moves] == [False, True, True]  # descent and lift are Cartesian
    z_grasp = SETTINGS.grasp_z
    assert moves[0][2][2] == pytest.approx(z_grasp + SETTINGS.approach_height)
    assert moves[1][2][2] == pytest.approx(z_grasp)
    assert moves[2][2][2] == pytest.approx(z_grasp + SETTINGS.lift_height)
    assert b.calls[-1][0] == "joints"  # home last


def test_pose_z_is_ignored_and_z_offset_applies():
    g = goal(z_offset=0.05)
    g.grasp.pose.position.z = 3.0  # far outside the box: must not matter
    plan = plan_grasp(GraspGoal.from_msg(g), SETTINGS)
    assert plan.grasp.position[2] == pytest.approx(SETTINGS.grasp_z + 0.05)


def test_tcp_points_down_with_the_goal_yaw():
    plan = plan_grasp(GraspGoal.from_msg(goal(yaw=0.4)), SETTINGS)
    m = messages.matrix_from_quat(plan.grasp.quaternion)
    np.testing.assert_allclose(m[:, 2], [0, 0, -1], atol=1e-9)
    assert math.atan2(m[1, 0], m[0, 0]) == pytest.approx(0.4)


def test_empty_gripper_is_a_failed_grasp():
    result = GraspExecutor(RecordingBackend(object_width=None), SETTINGS).execute(goal())
    assert not result.success and result.lifted_height == 0.0 and "nothing held" in result.message
    assert not result.aborted  # a real attempt: the policy records it


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": 0.95}, "outside the workspace box"),
        ({"y": -0.5}, "outside the workspace box"),
        ({"z_offset": 0.5}, "z_offset"),
        ({"frame": "world"}, "frame"),
        ({"x": float("nan")}, "non-finite"),
        ({"z_offset": float("inf")}, "finite"),
    ],
)
def test_bad_goals_are_rejected_before_any_motion(kwargs, match):
    b = RecordingBackend()
    executor = GraspExecutor(b, SETTINGS)
    with pytest.raises(GoalRejected, match=match):
        executor.check(goal(**kwargs))
    result = executor.execute(goal(**kwargs))
    assert result.rejected and not result.success and match.split()[0] in result.message
    assert b.calls == [] and not b.moved


def test_lift_waypoint_outside_the_box_rejects_the_goal():
    low_ceiling = ExecutorSettings(box_z=[0.01, 0.2])  # pre-grasp (0.19) fits, lift (0.24) does not
    with pytest.raises(GoalRejected, match="lift waypoint z"):
        plan_grasp(GraspGoal.from_msg(goal()), low_ceiling)


def test_tilted_goal_is_rejected():
    g = goal()
    g.grasp.pose.orientation.x, g.grasp.pose.orientation.w = math.sin(0.3), math.cos(0.3)
    with pytest.raises(GoalRejected, match="tilts"):
        GraspExecutor(RecordingBackend(), SETTINGS).check(g)


def test_dry_run_plans_but_never_moves():
    b = RecordingBackend()
    result = GraspExecutor(b, SETTINGS).execute(goal(dry_run=True))
    assert result.success and result.message.startswith("dry run")
    assert [c[0] for c in b.calls] == ["plan"] and not b.moved


def test_cancel_between_stages_stops_and_reports():
    b = RecordingBackend()
    asked = iter([False, False, True])  # cancel requested before the third motion stage
    result = GraspExecutor(b, SETTINGS).execute(goal(), cancel_requested=lambda: next(asked, True))
    assert result.canceled and not result.success and b.stopped
    assert [c[1] for c in b.calls if c[0] == "move"] == ["approach"]


def test_cancel_during_a_motion():
    b = RecordingBackend(cancel_at="descend")
    result = GraspExecutor(b, SETTINGS).execute(goal())
    assert result.canceled and result.stage == "descend" and b.stopped


def test_planning_failure_aborts_without_further_motion():
    b = RecordingBackend(fail_at="descend")
    result = GraspExecutor(b, SETTINGS).execute(goal())
    assert result.aborted and not result.success and "descend failed" in result.message and b.stopped
    assert [c[1] for c in b.calls if c[0] == "move"] == ["approach"]


def test_busy_executor_refuses_a_second_goal():
    ex = GraspExecutor(RecordingBackend(), SETTINGS)
    ex._running.acquire()  # another goal is running
    assert ex.execute(goal()).rejected and not ex.backend.moved


def test_executor_is_busy_while_a_grasp_runs_and_free_after():
    """execute() itself sets ``busy`` for the whole grasp (moveit_executor_node rejects a second goal
    on it): seen from inside the backend at every motion, a second goal is refused meanwhile."""
    seen: list[tuple[str, bool]] = []
    second: list[GraspResult] = []
    tried: list[bool] = []

    class WatchingBackend(RecordingBackend):
        def move_to_pose(self, wp, settings):
            seen.append((wp.stage, ex.busy))
            if wp.stage == "descend" and not tried:
                tried.append(True)
                second.append(ex.execute(goal(x=0.5)))
            super().move_to_pose(wp, settings)

        def move_to_joints(self, joints, settings):
            seen.append(("home", ex.busy))
            super().move_to_joints(joints, settings)

    b = WatchingBackend()
    ex = GraspExecutor(b, SETTINGS)
    assert not ex.busy
    result = ex.execute(goal())
    assert result.success
    assert seen == [("approach", True), ("descend", True), ("lift", True), ("home", True)]
    assert len(second) == 1 and second[0].rejected and "busy" in second[0].message
    assert [c[1] for c in b.calls if c[0] == "move"] == ["approach", "descend", "lift"]  # the second never moved
    assert not ex.busy
    # ... also after a grasp that ended in a motion failure
    failing = GraspExecutor(RecordingBackend(fail_at="lift"), SETTINGS)
    assert failing.execute(goal()).aborted and not failing.busy
    assert failing.execute(goal()).aborted  # not refused as busy: it ran again


def test_gripper_that_never_closes_is_a_failed_grasp():
    """Fingers still fully open after the lift (gripper fault, ignored command) hold nothing."""

    class StuckOpen(RecordingBackend):
        def set_gripper(self, width, settings):
            self.calls.append(("gripper", width))
            self.opening = settings.gripper_open_width
            return self.opening

    result = GraspExecutor(StuckOpen(), SETTINGS).execute(goal())
    assert not result.success and result.lifted_height == 0.0 and "nothing held" in result.message
    assert result.opening == pytest.approx(SETTINGS.gripper_open_width) and not result.aborted
    # just inside the margin from fully open: still not closed enough to count
    almost_open = SETTINGS.gripper_open_width - SETTINGS.success_open_margin / 2
    result = GraspExecutor(RecordingBackend(object_width=almost_open), SETTINGS).execute(goal())
    assert not result.success and "nothing held" in result.message
    # the widest object that does count
    widest = SETTINGS.gripper_open_width - 2 * SETTINGS.success_open_margin
    assert GraspExecutor(RecordingBackend(object_width=widest), SETTINGS).execute(goal()).success


@pytest.mark.parametrize("cancel_before", ["release", "home"])
def test_cancel_during_release_or_home_stops_before_going_home(cancel_before):
    """A cancel after the check still reports the measured outcome, and the arm does not go home."""
    b = RecordingBackend(object_width=0.03)
    stages: list[str] = []
    # asked once before each of the five grasp steps, then once before release and before home
    answers = [False] * 5 + ([True] if cancel_before == "release" else [False, True])
    asked = iter(answers)
    result = GraspExecutor(b, SETTINGS).execute(goal(), stages.append, cancel_requested=lambda: next(asked, True))
    assert result.canceled and result.stage == "home" and "canceled before going home" in result.message
    assert result.success and result.lifted_height == SETTINGS.lift_height  # the measured outcome stays
    assert b.stopped and "done" not in stages
    assert not any(c[0] == "joints" for c in b.calls)  # never went home
    grips = [c[1] for c in b.calls if c[0] == "gripper"]
    released = grips[-1] == SETTINGS.gripper_open_width and len(grips) == 3
    assert released == (cancel_before == "home")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"velocity_scaling": 0.0}, "velocity_scaling"),
        ({"velocity_scaling": 1.5}, "velocity_scaling"),
        ({"acceleration_scaling": -0.1}, "acceleration_scaling"),
        ({"box_x": [0.8, 0.4]}, "box_x"),
        ({"home_joints": [0.0, 1.0]}, "home_joints"),
        ({"home_joints": [0.0, float("nan"), 0.0, 1.55, 0.0, -0.85, 0.0]}, "home_joints"),
        ({"gripper_closed_width": float("-inf")}, "gripper_closed_width"),
        ({"gripper_closed_width": -0.01}, "gripper_closed_width"),
        ({"gripper_effort": float("nan")}, "gripper_effort"),
        ({"gripper_effort": -5.0}, "gripper_effort"),
        ({"success_min_opening": float("nan")}, "success_min_opening"),
        ({"success_open_margin": -0.001}, "success_open_margin"),
        ({"grasp_z": float("nan")}, "grasp_z"),
        ({"fingertip_length": -0.01}, "fingertip_length"),
        ({"min_fingertip_z": float("nan")}, "min_fingertip_z"),
        ({"min_fingertip_z": 0.0, "box_z": [0.05, 0.45]}, "lowest grasp"),
        ({"max_goal_age_s": float("inf")}, "max_goal_age_s"),
    ],
)
def test_bad_settings_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        settings_from_params(ExecutorSettings, params)


# ----------------------------------------------------------------------------- found by the robot audit
@pytest.mark.parametrize("z_offset", [-0.02, -0.01, -0.005, 0.0, 0.03])
def test_the_fingertips_never_go_below_the_floor_limit(z_offset):
    """The fingertips reach 15 mm below the TCP. A deep grasp stops with them at min_fingertip_z
    (the bin floor + 5 mm), as the simulated descent stops at contact; a shallow one is unchanged."""
    b = RecordingBackend()
    result = GraspExecutor(b, SETTINGS).execute(goal(z_offset=z_offset))
    lowest = min(c[2][2] for c in b.calls if c[0] == "move")
    assert lowest - SETTINGS.fingertip_length >= SETTINGS.min_fingertip_z - 1e-9
    asked = SETTINGS.grasp_z + z_offset
    assert lowest == pytest.approx(max(asked, SETTINGS.min_fingertip_z + SETTINGS.fingertip_length))
    assert ("stopped at min_fingertip_z" in result.message) == (asked - SETTINGS.fingertip_length < 0.025 - 1e-9)


def test_yaw_is_folded_into_the_grippers_half_turn():
    """A parallel-jaw grasp turned by pi is the same grasp: the wrist is sent the turn within +-pi/2."""
    for yaw, folded in [
        (3.0, 3.0 - math.pi),
        (-1.7, math.pi - 1.7),
        (0.3, 0.3),
        (math.pi / 2 + 0.01, 0.01 - math.pi / 2),
    ]:
        plan = plan_grasp(GraspGoal.from_msg(goal(yaw=yaw)), SETTINGS)
        assert plan.yaw == pytest.approx(folded) and -math.pi / 2 <= plan.yaw < math.pi / 2


def test_goals_stamped_too_long_ago_unstamped_or_in_the_future_are_rejected():
    """With the node's clock, the goal's stamp (its image's time) must be recent; nothing moves otherwise."""
    stamped = 1_700_000_000 * 10**9

    def stamped_goal(stamp_ns):
        g = goal()
        g.grasp.header.stamp.sec, g.grasp.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return g

    for now, stamp, match in [
        (stamped + 3 * 10**9, stamped, "stamped 3.000 s ago"),
        (stamped, 0, "no header stamp"),
        (stamped, stamped + 10**9, "in the future"),
    ]:
        b = RecordingBackend()
        result = GraspExecutor(b, SETTINGS, clock=lambda now=now: now).execute(stamped_goal(stamp))
        assert result.rejected and match in result.message and not b.moved
    b = RecordingBackend()
    assert GraspExecutor(b, SETTINGS, clock=lambda: stamped + 10**9).execute(stamped_goal(stamped)).success
    unchecked = ExecutorSettings(max_goal_age_s=0.0)
    assert GraspExecutor(RecordingBackend(), unchecked, clock=lambda: stamped).execute(stamped_goal(0)).success


def test_two_goals_racing_never_both_move_the_arm():
    """moveit_executor_node runs goals on several threads: the second, arriving while the first is
    inside its approach, is refused without moving anything."""
    import threading

    inside, release = threading.Event(), threading.Event()
    moves: list[str] = []

    class SlowBackend(RecordingBackend):
        def move_to_pose(self, wp, settings):
            moves.append(threading.current_thread().name)
            inside.set()
            release.wait(5)
            super().move_to_pose(wp, settings)

    ex = GraspExecutor(SlowBackend(), SETTINGS)
    results: dict[str, GraspResult] = {}
    first = threading.Thread(target=lambda: results.update(first=ex.execute(goal())), name="first")
    first.start()
    assert inside.wait(5)
    second_stages: list[str] = []  # moveit_executor_node takes "validate" to mean "this goal runs now"
    second = threading.Thread(
        target=lambda: results.update(second=ex.execute(goal(x=0.5), second_stages.append)), name="second"
    )
    second.start()
    second.join(5)
    release.set()
    first.join(5)
    assert results["second"].rejected and "busy" in results["second"].message and second_stages == []
    assert results["first"].success and set(moves) == {"first"}


def test_a_motion_stopped_for_a_cancel_is_reported_canceled_not_aborted():
    """The node calls stop() when a cancel arrives; MoveIt's execution then fails. That failure is
    the cancel, and the goal ends canceled."""
    canceled: list[bool] = []

    class StoppedMidMotion(RecordingBackend):
        def move_to_pose(self, wp, settings):
            if wp.stage == "descend":
                canceled.append(True)  # the cancel arrives, the node stops the motion
                raise MotionError("trajectory execution failed: PREEMPTED")
            super().move_to_pose(wp, settings)

    b = StoppedMidMotion()
    result = GraspExecutor(b, SETTINGS).execute(goal(), cancel_requested=lambda: bool(canceled))
    assert result.canceled and not result.aborted and result.stage == "descend" and b.stopped


def test_a_cancel_that_stops_the_trip_home_keeps_the_measured_outcome():
    """The node stops the running motion when a cancel arrives; stopped on its way home, the arm had
    already lifted and measured the grasp, and that outcome is reported (review of the cancel fix)."""
    canceled: list[bool] = []

    class StoppedGoingHome(RecordingBackend):
        def move_to_joints(self, joints, settings):
            canceled.append(True)
            raise MotionError("trajectory execution failed: PREEMPTED")

    b = StoppedGoingHome(object_width=0.03)
    result = GraspExecutor(b, SETTINGS).execute(goal(), cancel_requested=lambda: bool(canceled))
    assert result.canceled and not result.aborted and result.stage == "home"
    assert result.success and result.lifted_height == SETTINGS.lift_height and result.opening == pytest.approx(0.03)
    assert "canceled while going home" in result.message and b.stopped
