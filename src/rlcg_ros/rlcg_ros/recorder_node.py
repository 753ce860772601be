"""recorder_node: rlcg's episode topics in (raw CDR), complete episodes out as rosbag2 bags.

Thin shell over rlcg.robot.recorder_core.RecorderCore, which writes through the core's
EpisodeRecorder: one episode per ExecuteGrasp goal and result, made durable as it completes.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from rlcg.data import topics
from rlcg.robot.recorder_core import RECORDED_TOPICS, RecorderCore, RecorderNodeSettings
from rlcg_ros.node_util import declare_settings, now_ns, ros_type, run


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder_node")
        self.settings = declare_settings(self, RecorderNodeSettings)
        self.core = RecorderCore.create(self.settings)  # refuses an existing bag directory at start-up
        self.lock = threading.Lock()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        # /tf_static is latched: only a transient-local subscription gets what was sent before it started
        latched = QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        for topic, msgtype in RECORDED_TOPICS.items():
            profile = latched if topic == topics.TF_STATIC else qos
            self.create_subscription(ros_type(msgtype), topic, self._callback(topic), profile, raw=True)
        self.get_logger().info(f"recording rlcg episodes into {self.settings.bag_dir} ({self.settings.storage})")

    def _callback(self, topic: str):
        def on_message(cdr: bytes) -> None:
            with self.lock:
                note = self.core.on_message(topic, cdr, now_ns(self))
            if note:
                self.get_logger().info(note)

        return on_message

    def close(self) -> None:
        with self.lock:
            note = self.core.close()
        if note:
            self.get_logger().warning(note)
        st = self.core.stats
        self.get_logger().info(f"closed: {st.episodes_written} episodes written, {st.episodes_dropped} dropped")


def main() -> int:
    return run(RecorderNode, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
