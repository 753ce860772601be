"""pybullet_sim_node: the core's PyBullet three-bin world as a camera, TF and an ExecuteGrasp server,
so the whole rlcg graph runs without Gazebo or MoveIt.

Thin shell over rlcg.robot.sim_node.PyBulletSimCore. Publishes ``camera/image_raw`` and
``camera/camera_info`` (remappable), world -> base on /tf and base -> camera on /tf_static.
"""

from __future__ import annotations

import threading

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from rlcg.robot.executor import GoalRejected
from rlcg.robot.sim_node import PyBulletSimCore, SimNodeSettings
from rlcg_interfaces.action import ExecuteGrasp
from rlcg_ros.node_util import declare_settings, now_ns, run


class PyBulletSimNode(Node):
    def __init__(self) -> None:
        super().__init__("pybullet_sim_node")
        self.settings = declare_settings(self, SimNodeSettings)
        action_name = self.settings.action_name
        self.core = PyBulletSimCore.create(self.settings)
        self.lock = threading.Lock()  # PyBullet is not thread-safe
        self._goal_lock = threading.Lock()
        self._busy = False  # a goal accepted and not finished: one grasp at a time, like moveit_executor_node
        with self.lock:
            self.core.start()
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos_profile_sensor_data)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", latched)
        self._publish_static = True
        self.create_timer(
            1.0 / self.settings.camera_rate_hz, self._publish_camera, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.server = ActionServer(
            self,
            ExecuteGrasp,
            action_name,
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        self.get_logger().info(
            f"PyBullet three-bin world ({self.settings.domain}, bins {self.settings.bins}), scene seed "
            f"{self.core.scene_seed}; ExecuteGrasp server {action_name}"
        )

    def _publish_camera(self) -> None:
        with self.lock:
            stamp = now_ns(self)
            image, info = self.core.camera_cdr(stamp)
            dynamic, static = self.core.tf_cdr(stamp)
            publish_static, self._publish_static = self._publish_static, False
        self.tf_pub.publish(dynamic)
        if publish_static:
            self.tf_static_pub.publish(static)
        self.image_pub.publish(image)
        self.info_pub.publish(info)

    def _on_goal(self, goal) -> GoalResponse:
        with self._goal_lock:  # not the world's lock: a goal during a grasp is answered at once
            if self._busy:
                self.get_logger().warning("goal rejected: busy with another grasp")
                return GoalResponse.REJECT
            try:
                self.core.goal_action(goal)  # checks the goal only; the world is not touched
            except GoalRejected as exc:
                self.get_logger().warning(f"goal rejected: {exc}")
                return GoalResponse.REJECT
            self._busy = True
            return GoalResponse.ACCEPT

    def _execute(self, handle) -> ExecuteGrasp.Result:
        def feedback(stage: str) -> None:
            msg = ExecuteGrasp.Feedback()
            msg.stage = stage
            handle.publish_feedback(msg)

        try:
            with self.lock:
                report = self.core.execute(handle.request, feedback, lambda: handle.is_cancel_requested)
                if report.reset:
                    self._publish_static = True
        finally:
            with self._goal_lock:
                self._busy = False
        r = report.result
        if r.canceled:
            handle.canceled()
        elif r.rejected:
            handle.abort()
        else:
            handle.succeed()
        self.get_logger().info(f"{handle.request.episode_id}: {r.message}" + (" (new scene)" if report.reset else ""))
        out = ExecuteGrasp.Result()
        for key, value in r.result_fields().items():
            setattr(out, key, value)
        return out

    def close(self) -> None:
        with self.lock:
            self.core.close()


def main() -> int:
    return run(PyBulletSimNode)


if __name__ == "__main__":
    raise SystemExit(main())
