"""moveit_executor_node: the ExecuteGrasp action server on moveit_py (MoveItPy) and a gripper action.

Thin shell over rlcg.robot.executor.GraspExecutor, which does every check (base frame, yaw-only
orientation, workspace box for every waypoint: a bad goal is rejected before anything moves) and
runs the stages. This file adapts MoveItPy and control_msgs/GripperCommand to its MotionBackend.
Run it in the robot's namespace (lbr) so that MoveItPy finds joint_states and the controllers.
"""

from __future__ import annotations

import threading
import time

from control_msgs.action import GripperCommand
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from rlcg.robot.executor import ExecutorSettings, GoalRejected, GraspExecutor, MotionError, Waypoint
from rlcg_interfaces.action import ExecuteGrasp
from rlcg_ros.node_util import declare_settings, now_ns, run


class MoveItBackend:
    """rlcg.robot.executor.MotionBackend on MoveItPy (arm) and a GripperCommand action (fingers)."""

    def __init__(
        self, node: Node, settings: ExecutorSettings, gripper_action: str, width_to_position: float, obstacles=()
    ):
        from moveit.planning import MoveItPy  # Jazzy and later; not released for Humble

        self.node = node
        # MoveItPy starts its own rclcpp node, which does not see this process's __ns remap: give it
        # the robot's namespace, or it plans from /joint_states and drives /<controller> outside it.
        # (name_space: moveit_py 2.11 and later; Jazzy's 2.10.0 lacked it.)
        self.moveit = MoveItPy(node_name="rlcg_moveit_py", name_space=node.get_namespace())
        self.arm = self.moveit.get_planning_component(settings.planning_group)
        self.gripper = ActionClient(node, GripperCommand, gripper_action, callback_group=ReentrantCallbackGroup())
        self.width_to_position = width_to_position
        self.opening = float("nan")
        self._gripper_goal = None
        if obstacles:
            self._add_obstacles(settings, obstacles)

    def _add_obstacles(self, settings: ExecutorSettings, boxes) -> None:
        """Table and bins into the planning scene: OMPL plans the free-space moves around them."""
        from geometry_msgs.msg import Pose
        from moveit_msgs.msg import CollisionObject
        from shape_msgs.msg import SolidPrimitive

        with self.moveit.get_planning_scene_monitor().read_write() as scene:
            for box in boxes:
                obj = CollisionObject()
                obj.header.frame_id = settings.base_frame
                obj.id = f"rlcg_{box.name}"
                shape = SolidPrimitive()
                shape.type = SolidPrimitive.BOX
                shape.dimensions = [float(v) for v in box.size]
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = (float(v) for v in box.center)
                pose.orientation.w = 1.0
                obj.primitives.append(shape)
                obj.primitive_poses.append(pose)
                obj.operation = CollisionObject.ADD
                scene.apply_collision_object(obj)
            scene.current_state.update()
        self.node.get_logger().info(f"planning scene: {len(boxes)} boxes (table, bins) from config/world.yaml")

    def _params(self, cartesian: bool, s: ExecutorSettings):
        from moveit.planning import PlanRequestParameters

        p = PlanRequestParameters(self.moveit)
        p.planning_pipeline = s.cartesian_pipeline if cartesian else s.free_space_pipeline
        p.planner_id = s.cartesian_planner if cartesian else s.free_space_planner
        p.planning_time = s.planning_time_s
        p.planning_attempts = s.planning_attempts
        p.max_velocity_scaling_factor = s.cartesian_velocity_scaling if cartesian else s.velocity_scaling
        p.max_acceleration_scaling_factor = s.acceleration_scaling
        return p

    def _plan_pose(self, wp: Waypoint, s: ExecutorSettings):
        pose = PoseStamped()
        pose.header.frame_id = s.base_frame
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in wp.position)
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in wp.quaternion)
        self.arm.set_start_state_to_current_state()
        self.arm.set_goal_state(pose_stamped_msg=pose, pose_link=s.tcp_link)
        return self._plan(wp.stage, wp.cartesian, s)

    def _plan(self, stage: str, cartesian: bool, s: ExecutorSettings):
        result = self.arm.plan(single_plan_parameters=self._params(cartesian, s))
        if not result:
            kind = "Cartesian" if cartesian else "free-space"
            raise MotionError(f"no {kind} plan for {stage} within {s.planning_time_s} s")
        return result.trajectory

    def _execute(self, trajectory) -> None:
        status = self.moveit.execute(trajectory, controllers=[])  # blocks; an ExecutionStatus
        if not bool(status):  # true only for SUCCEEDED; PREEMPTED after stop()
            raise MotionError(f"trajectory execution failed: {getattr(status, 'status', status)}")

    def plan_to_pose(self, waypoint: Waypoint, settings: ExecutorSettings) -> None:
        self._plan_pose(waypoint, settings)

    def move_to_pose(self, waypoint: Waypoint, settings: ExecutorSettings) -> None:
        self._execute(self._plan_pose(waypoint, settings))

    def move_to_joints(self, joints: list[float], settings: ExecutorSettings) -> None:
        from moveit.core.robot_state import RobotState

        state = RobotState(self.moveit.get_robot_model())
        state.set_joint_group_positions(settings.planning_group, joints)
        self.arm.set_start_state_to_current_state()
        self.arm.set_goal_state(robot_state=state)
        self._execute(self._plan("home", False, settings))

    def set_gripper(self, width: float, settings: ExecutorSettings) -> float:
        if not self.gripper.wait_for_server(timeout_sec=5.0):
            raise MotionError("the gripper action server is not available")
        goal = GripperCommand.Goal()
        goal.command.position = float(width) * self.width_to_position
        goal.command.max_effort = float(settings.gripper_effort)
        done = threading.Event()
        box = {}

        def on_goal(future):
            handle = future.result()
            if handle is None or not handle.accepted:
                box["error"] = "gripper goal rejected"
                done.set()
                return
            self._gripper_goal = handle
            handle.get_result_async().add_done_callback(lambda f: (box.update(result=f.result().result), done.set()))

        self.gripper.send_goal_async(goal).add_done_callback(on_goal)
        if not done.wait(settings.execution_timeout_s):
            raise MotionError(f"gripper did not finish within {settings.execution_timeout_s} s")
        self._gripper_goal = None
        if "error" in box:
            raise MotionError(box["error"])
        self.opening = float(box["result"].position) / self.width_to_position
        return self.opening

    def gripper_opening(self) -> float:
        return self.opening

    def stop(self) -> None:
        manager = getattr(self.moveit, "get_trajectory_execution_manager", None) or getattr(
            self.moveit, "get_trajactory_execution_manager", None
        )
        if manager is not None:
            manager().stop_execution()
        if self._gripper_goal is not None:
            self._gripper_goal.cancel_goal_async()


class MoveItExecutorNode(Node):
    def __init__(self) -> None:
        super().__init__("moveit_executor_node")
        self.settings = declare_settings(self, ExecutorSettings)
        action_name = self.settings.action_name
        obstacles = []
        if self.settings.collision_scene:
            from rlcg.robot.scene import collision_boxes
            from rlcg.sim.config import SimConfig

            obstacles = collision_boxes(SimConfig.load())
        backend = MoveItBackend(
            self, self.settings, self.settings.gripper_action, self.settings.gripper_position_per_width, obstacles
        )
        # The node's clock (sim time under use_sim_time) is the one the policy stamps its goals on.
        self.executor_core = GraspExecutor(backend, self.settings, clock=lambda: now_ns(self), obstacles=obstacles)
        self._cancels = threading.Lock()
        self._canceled: set[bytes] = set()  # goals whose cancel was accepted
        self._running: bytes | None = None  # the goal whose motions run (the others are refused as busy)
        self.server = ActionServer(
            self,
            ExecuteGrasp,
            action_name,
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )
        s = self.settings
        self.get_logger().info(
            f"ExecuteGrasp server {action_name}: box x {s.box_x} y {s.box_y} z {s.box_z} ({s.base_frame}), "
            f"velocity scaling {s.velocity_scaling}, acceleration scaling {s.acceleration_scaling}"
        )

    def _on_goal(self, goal) -> GoalResponse:
        if self.executor_core.busy:
            self.get_logger().warning("goal rejected: busy with another grasp")
            return GoalResponse.REJECT
        try:
            self.executor_core.check(goal)
        except GoalRejected as exc:
            self.get_logger().warning(f"goal rejected before any motion: {exc}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, handle) -> CancelResponse:
        # Stop the motion now: MoveItPy's execute() blocks until its trajectory ends and never looks
        # at the cancel. The stopped motion fails, and the executor reports the goal canceled.
        # The goal is marked first: rclpy marks the handle canceled only after this returns, and the
        # executing thread must not mistake the stopped motion for a failure in between.
        goal = bytes(handle.goal_id.uuid)
        with self._cancels:
            self._canceled.add(goal)
            if self._running == goal:  # only the running goal's motion: a queued goal's cancel stops nothing
                self.executor_core.backend.stop()
        return CancelResponse.ACCEPT

    def _execute(self, handle) -> ExecuteGrasp.Result:
        goal = bytes(handle.goal_id.uuid)

        def feedback(stage: str) -> None:
            if stage == "validate":  # sent once the executor holds its lock: this goal's motions run now
                with self._cancels:
                    self._running = goal
            msg = ExecuteGrasp.Feedback()
            msg.stage = stage
            handle.publish_feedback(msg)

        def cancel_requested() -> bool:
            with self._cancels:
                return handle.is_cancel_requested or goal in self._canceled

        try:
            result = self.executor_core.execute(handle.request, feedback, cancel_requested)
        finally:
            with self._cancels:
                self._canceled.discard(goal)
                if self._running == goal:
                    self._running = None
        if result.canceled:
            # rclpy moves the goal to CANCELING only after _on_cancel returns, and CANCELED is
            # allowed only from there: wait for it, or the call raises and the goal ends aborted.
            deadline = time.monotonic() + 2.0
            while not handle.is_cancel_requested and time.monotonic() < deadline:
                time.sleep(0.01)
            if handle.is_cancel_requested:
                handle.canceled()
            else:
                handle.abort()
        elif result.rejected or result.aborted:
            handle.abort()
        else:
            handle.succeed()
        self.get_logger().info(f"{handle.request.episode_id}: {result.message}")
        out = ExecuteGrasp.Result()
        for key, value in result.result_fields().items():
            setattr(out, key, value)
        return out


def main() -> int:
    return run(MoveItExecutorNode)


if __name__ == "__main__":
    raise SystemExit(main())
