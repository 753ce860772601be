"""Integration tests of the ROS 2 graph (launch_pytest), for a machine with ROS 2 Jazzy and this
workspace built (`colcon build`, `source install/setup.bash`, then `pytest tests/test_ros_integration.py`).
Skipped elsewhere, with the reason shown by `pytest -rs`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
REASON = "needs ROS 2 (rclpy, launch_pytest, launch_ros) and the built workspace; not installable from PyPI"
launch_pytest = pytest.importorskip("launch_pytest", reason=REASON)
rclpy = pytest.importorskip("rclpy", reason=REASON)

from geometry_msgs.msg import PoseStamped  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.substitutions import PathJoinSubstitution  # noqa: E402
from launch_ros.actions import Node  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from rlcg.data import topics  # noqa: E402
from rlcg.robot import messages  # noqa: E402

BAG_DIR = Path(tempfile.mkdtemp(prefix="rlcg-launch-test-")) / "bags"


@launch_pytest.fixture
def policy_only():
    # the shipped parameter file first, as the launch files load it; then overrides as a user gives
    # them: a search box as a list and an integer where a float is declared
    shipped = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "config", "policy_node.yaml"])
    overrides = {"model": "random", "auto_execute": False, "decision_period_s": 1, "publish_heatmap": False}
    node = Node(
        package="rlcg_ros",
        executable="policy_node",
        name="policy_node",
        parameters=[shipped, {**overrides, "workspace_x": [0.5, 0.7]}],
        remappings=[("image", "/rlcg_test/image")],
    )
    return LaunchDescription([node, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=policy_only)
def test_policy_node_picks_a_grasp_from_a_published_image():
    rclpy.init()
    try:
        probe = rclpy.create_node("rlcg_probe")
        poses: list[PoseStamped] = []
        probe.create_subscription(PoseStamped, topics.GRASP_POSE, poses.append, 10)
        pub = probe.create_publisher(Image, "/rlcg_test/image", qos_profile_sensor_data)
        rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        deadline = time.monotonic() + 30
        while not poses and time.monotonic() < deadline:
            stamp = probe.get_clock().now().nanoseconds
            cdr = messages.serialize(messages.image_msg(rgb, stamp, topics.CAMERA_FRAME))
            pub.publish(deserialize_message(cdr, Image))
            rclpy.spin_once(probe, timeout_sec=0.1)
        assert poses, "policy_node published no grasp pose within 30 s"
        assert poses[0].header.frame_id == topics.BASE_FRAME
        assert 0.5 <= poses[0].pose.position.x <= 0.7  # inside the search box given as a parameter
    finally:
        rclpy.shutdown()


@launch_pytest.fixture
def pybullet_graph():
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "launch", "sim.launch.py"])
        ),
        launch_arguments={
            "simulator": "pybullet",
            "model": "random",
            "record": "true",
            "bag_dir": str(BAG_DIR),
        }.items(),
    )
    return LaunchDescription([sim, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=pybullet_graph)
def test_pybullet_graph_completes_a_grasp_and_records_a_bag():
    from rlcg.data.bags import Problems, find_bags
    from rlcg.data.decode import EpisodeStream

    deadline = time.monotonic() + 180
    episodes = []
    while time.monotonic() < deadline:
        time.sleep(2.0)
        if BAG_DIR.exists():
            problems = Problems()
            episodes = [e for bag in find_bags(BAG_DIR) for e in EpisodeStream(bag, problems)]
            if episodes:
                break
    assert episodes, f"no complete episode in {BAG_DIR} after 180 s"
    ep = episodes[0]
    assert ep.num_steps == 1 and ep.images.shape[1:] == (64, 64, 3) and ep.policy == "random"
