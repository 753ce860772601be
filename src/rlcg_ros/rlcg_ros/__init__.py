"""rclpy nodes of rlcg. Each module is a thin shell over a core class of ``rlcg.robot``; see
docs/ros2.md for the graph and the launch files."""
