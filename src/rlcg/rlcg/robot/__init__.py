"""The robot side of rlcg without ROS: the logic of the ROS 2 nodes in plain Python.

The rclpy nodes of ``src/rlcg_ros`` are thin shells: they move CDR bytes between DDS and the
classes here. Nothing in this package imports rclpy or any ROS package; ROS 2 messages are built
and read with the ``rosbags`` type store of the target distro, whose CDR is the bytes on the wire.
"""
