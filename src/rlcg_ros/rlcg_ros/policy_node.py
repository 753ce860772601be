"""policy_node: camera image in, ExecuteGrasp goals out, episodes published for the recorder.

Thin shell over rlcg.robot.policy_runner.PolicyRunner: this file only moves CDR bytes between DDS
and the runner and drives the ExecuteGrasp client. Subscribes to ``image`` and ``camera_info``
(remap them to the camera driver's topics); publishes ``q_heatmap`` and rlcg's episode topics.
"""

from __future__ import annotations

import threading

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from rlcg.data import topics
from rlcg.errors import RlcgError
from rlcg.robot.policy_runner import PolicyNodeSettings, PolicyRunner, RunnerState, StaleImageError
from rlcg_interfaces.action import ExecuteGrasp
from rlcg_ros.node_util import declare_settings, now_ns, ros_type, run

EPISODE_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy_node")
        self.settings = declare_settings(self, PolicyNodeSettings)
        # Loads the model now: a missing or broken checkpoint stops the node at start-up.
        self.runner = PolicyRunner.from_settings(self.settings)
        self.lock = threading.Lock()
        self.goal_handle = None  # of the goal out, to cancel it when it is overdue
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(
            Image, "image", self._on_image, qos_profile_sensor_data, raw=True, callback_group=group
        )
        self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data, raw=True, callback_group=group
        )
        self.pubs = {
            topic: self.create_publisher(ros_type(msgtype), topic, EPISODE_QOS)
            for topic, msgtype in topics.TOPIC_TYPES.items()
            if topic not in (topics.TF,)
        }
        self.heatmap_pub = self.create_publisher(Image, "q_heatmap", 2)
        self.client = ActionClient(self, ExecuteGrasp, self.settings.action_name)
        self.create_timer(self.settings.decision_period_s, self._tick, callback_group=group)
        self.get_logger().info(
            f"policy {getattr(self.runner.policy, 'name', self.settings.model)} ready; workspace "
            f"x {self.runner.bounds.x} y {self.runner.bounds.y}; max image age {self.settings.max_image_age_s} s; "
            f"grasp offset {getattr(self.runner.policy, 'grasp_offset', (0.0, 0.0))} m (rlcg calibrate)"
        )

    # ----------------------------------------------------------------- callbacks
    def _on_image(self, cdr: bytes) -> None:
        with self.lock:
            try:
                self.runner.on_image_cdr(cdr)
            except RlcgError as exc:
                self.get_logger().error(f"camera image ignored: {exc}", throttle_duration_sec=5.0)
                return
            self._publish(self.runner.finish_if_ready(now_ns(self)))

    def _on_camera_info(self, cdr: bytes) -> None:
        with self.lock:
            try:
                self.runner.on_camera_info_cdr(cdr)
            except RlcgError as exc:
                self.get_logger().error(f"camera info ignored: {exc}", throttle_duration_sec=5.0)

    def _tick(self) -> None:
        with self.lock:
            now = now_ns(self)
            self._publish(self.runner.finish_if_ready(now))
            if self.runner.overdue(now):
                if self.goal_handle is not None:
                    self.goal_handle.cancel_goal_async()
                reason = self.runner.abandon("no result from the executor in time; goal canceled", now)
                self.get_logger().error(f"{reason}; the episode is not recorded")
                self.goal_handle = None
            if self.runner.state != RunnerState.IDLE:
                return
            if self.settings.auto_execute and not self.client.server_is_ready():
                self.get_logger().info("waiting for the ExecuteGrasp server", throttle_duration_sec=10.0)
                return
            try:
                decision = self.runner.decide(now)
            except StaleImageError as exc:
                self.get_logger().info(f"not deciding: {exc}", throttle_duration_sec=5.0)
                return
            except RlcgError as exc:  # e.g. an action outside the workspace: refused, never sent
                self.get_logger().error(f"grasp refused: {exc}", throttle_duration_sec=5.0)
                return
            a = decision.action
            self.get_logger().info(
                f"{decision.episode_id}: grasp x={a[0]:.3f} y={a[1]:.3f} yaw={a[2]:.2f} dz={a[3]:.3f} "
                f"Q={decision.q_value:.3f} ({decision.latency_s * 1000:.0f} ms)"
            )
            if not self.settings.auto_execute:
                pose = [
                    m for m in self.runner.decision_messages(decision, episode=False) if m.topic == topics.GRASP_POSE
                ]
                self._publish(pose)
            else:
                goal = deserialize_message(self.runner.goal_cdr(decision), ExecuteGrasp.Goal)
                start = self.runner.start_episode(decision)
                future = self.client.send_goal_async(goal, feedback_callback=self._on_feedback)
                future.add_done_callback(lambda f, eid=decision.episode_id: self._on_goal_response(f, start, eid))
            heatmap = self.runner.heatmap_message(decision, "q_heatmap")  # after the goal: it takes time
            if heatmap is not None:
                self.heatmap_pub.publish(heatmap.cdr)

    def _on_feedback(self, feedback) -> None:
        self.get_logger().debug(f"executor stage: {feedback.feedback.stage}")

    def _current(self, episode_id: str) -> bool:
        pending = self.runner.pending
        return self.runner.state == RunnerState.EXECUTING and pending is not None and pending.episode_id == episode_id

    def _on_goal_response(self, future, start, episode_id: str) -> None:
        with self.lock:
            handle = future.result()
            if not self._current(episode_id):  # given up meanwhile (overdue): not this episode's any more
                if handle is not None and handle.accepted:
                    handle.cancel_goal_async()
                return
            if handle is None or not handle.accepted:
                reason = self.runner.abandon("goal rejected by the executor", now_ns(self))
                self.get_logger().warning(reason)
                return
            self.goal_handle = handle
            self._publish(start)  # the episode begins only with an accepted goal
            handle.get_result_async().add_done_callback(lambda f, eid=episode_id: self._on_result(f, eid))

    def _on_result(self, future, episode_id: str) -> None:
        with self.lock:
            response = future.result()
            now = now_ns(self)
            if not self._current(episode_id):
                self.get_logger().warning(f"{episode_id}: result arrived after the goal was given up; ignored")
                return
            self.goal_handle = None
            if response.status == GoalStatus.STATUS_SUCCEEDED:
                self.runner.on_result(response.result, now, episode_id)
                self.get_logger().info(
                    f"grasp {'succeeded' if response.result.success else 'failed'}: {response.result.message}"
                )
            else:
                reason = self.runner.abandon(
                    f"goal ended with status {response.status}: {response.result.message}", now
                )
                self.get_logger().warning(f"{reason}; the episode is not recorded")

    def _publish(self, outgoing) -> None:
        for m in outgoing:
            self.pubs[m.topic].publish(m.cdr)


def main() -> int:
    return run(PolicyNode)


if __name__ == "__main__":
    raise SystemExit(main())
