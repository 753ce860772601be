"""moveit_executor_node with MoveItPy configured for an LBR of lbr_fri_ros2_stack plus rlcg's gripper.

The MoveIt configuration is lbr_fri_ros2_stack's <model>_moveit_config (kinematics, joint limits,
controllers, Pilz limits) with rlcg's robot description and SRDF additions (rlcg_description) and
config/moveit_py.yaml. MoveItConfigsBuilder is Python, so it runs in an OpaqueFunction; everything
else is declared.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGS = [
    ("robot_model", "iiwa14", "LBR model: iiwa7 or iiwa14"),
    ("robot_name", "lbr", "robot name and namespace of lbr_fri_ros2_stack"),
    ("mode", "gazebo", "robot description mode: mock, gazebo or hardware"),
    ("use_sim_time", "false", "use /clock (Gazebo)"),
    ("velocity_scaling", "0.1", "MoveIt max velocity scaling factor (0, 1]"),
    ("acceleration_scaling", "0.1", "MoveIt max acceleration scaling factor (0, 1]"),
    ("gripper_action", "gripper_controller/gripper_cmd", "control_msgs/GripperCommand action of the gripper"),
]


def _executor(context: LaunchContext):
    from moveit_configs_utils import MoveItConfigsBuilder

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    model, robot_name, mode = arg("robot_model"), arg("robot_name"), arg("mode")
    description = get_package_share_directory("rlcg_description")
    bringup = get_package_share_directory("rlcg_bringup")
    lbr_moveit = get_package_share_directory(f"{model}_moveit_config")
    moveit_config = (
        MoveItConfigsBuilder(robot_name=model, package_name=f"{model}_moveit_config")
        .robot_description(
            file_path=os.path.join(description, "urdf", "rlcg_lbr.urdf.xacro"),
            mappings={"model": model, "robot_name": robot_name, "mode": mode},
        )
        .robot_description_semantic(
            file_path=os.path.join(description, "urdf", "rlcg_lbr.srdf.xacro"),
            mappings={
                "robot_name": robot_name,
                "lbr_srdf": os.path.join(lbr_moveit, "config", f"{model}.srdf"),
            },
        )
        .planning_pipelines(default_planning_pipeline="ompl", pipelines=["ompl", "pilz_industrial_motion_planner"])
        .moveit_cpp(file_path=os.path.join(bringup, "config", "moveit_py.yaml"))
        .to_moveit_configs()
    )
    return [
        Node(
            package="rlcg_ros",
            executable="moveit_executor_node",
            namespace=robot_name,
            output="screen",
            parameters=[
                moveit_config.to_dict(),
                os.path.join(bringup, "config", "moveit_executor_node.yaml"),
                {
                    "use_sim_time": arg("use_sim_time").lower() == "true",
                    "velocity_scaling": float(arg("velocity_scaling")),
                    "acceleration_scaling": float(arg("acceleration_scaling")),
                    "gripper_action": arg("gripper_action"),
                },
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGS]
        + [OpaqueFunction(function=_executor)]
    )
