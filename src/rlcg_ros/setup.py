"""rlcg_ros: rclpy nodes over the rlcg core (ament_python; built by colcon)."""

from setuptools import setup

PACKAGE = "rlcg_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="rlcg developers",
    maintainer_email="maintainers@users.noreply.r-seed-25078846.example",
    description="rclpy nodes of rlcg: policy, MoveIt executor, recorder, PyBullet world",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"policy_node = {PACKAGE}.policy_node:main",
            f"moveit_executor_node = {PACKAGE}.moveit_executor_node:main",
            f"recorder_node = {PACKAGE}.recorder_node:main",
            f"pybullet_sim_node = {PACKAGE}.pybullet_sim_node:main",
            f"train = {PACKAGE}.train:main",
        ],
    },
)
