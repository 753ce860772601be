"""rlcg: RL-CycleGAN sim-to-real grasping (core library; never imports ROS)."""

__version__ = "0.1.0"
