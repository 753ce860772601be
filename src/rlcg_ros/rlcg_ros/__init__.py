"""rclpy nodes of rlcg. Each module is a thin shell over a core class of ``rlcg.robot``; see
the README section "With ROS 2" for the graph and the launch files."""
