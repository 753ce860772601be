"""Gazebo (gz sim Harmonic) three-bin world with an LBR of lbr_fri_ros2_stack and rlcg's gripper.

World: rlcg_description/urdf/three_bin_world.sdf (generated from config/). Robot: rlcg_lbr.urdf.xacro
in mode gazebo (lbr_description's gz_ros2_control plugin and controllers, in namespace robot_name),
spawned in front of the centre bin; the camera is part of the world. The ros_gz_bridge brings
/clock and the camera into ROS.
"""

from launch import LaunchDescription
from launch.actions import AppendEnvironmentVariable, DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, FindExecutable, LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("robot_model", "iiwa14", "LBR model: iiwa7 or iiwa14"),
    ("robot_name", "lbr", "robot name and namespace (as lbr_fri_ros2_stack)"),
    ("headless", "false", "run gz sim without its GUI (server only), e.g. in docker"),
]


def generate_launch_description() -> LaunchDescription:
    description = FindPackageShare("rlcg_description")
    robot_name = LaunchConfiguration("robot_name")
    default_world = PathJoinSubstitution([description, "urdf", "three_bin_world.sdf"])
    robot_description = Command(
        [
            FindExecutable(name="xacro"),
            " ",
            PathJoinSubstitution([description, "urdf", "rlcg_lbr.urdf.xacro"]),
            " model:=",
            LaunchConfiguration("robot_model"),
            " robot_name:=",
            robot_name,
            " mode:=gazebo",
        ]
    )
    gz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])
        ),
        launch_arguments={
            "gz_args": [
                PythonExpression(["'-s ' if '", LaunchConfiguration("headless"), "' == 'true' else ''"]),
                "-r ",
                LaunchConfiguration("world"),
            ]
        }.items(),
    )
    controller_manager = ["/", robot_name, "/controller_manager"]

    def spawner(name: str, *extra) -> Node:
        return Node(
            package="controller_manager",
            executable="spawner",
            arguments=[name, "--controller-manager", controller_manager, *extra],
            output="screen",
        )

    gripper_params = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "config", "gripper_controllers.yaml"])
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGS]
        + [
            DeclareLaunchArgument("world", default_value=default_world, description="SDF world file"),
            # package:// meshes of lbr_description resolve through the share directories' parent.
            AppendEnvironmentVariable(
                "GZ_SIM_RESOURCE_PATH", PathJoinSubstitution([FindPackageShare("lbr_description"), ".."])
            ),
            gz,
            Node(
                package="robot_state_publisher",
                executable="robot_state_publisher",
                namespace=robot_name,
                output="screen",
                parameters=[
                    {"robot_description": ParameterValue(robot_description, value_type=str), "use_sim_time": True}
                ],
            ),
            Node(
                package="tf2_ros",
                executable="static_transform_publisher",
                arguments=["--frame-id", "world", "--child-frame-id", [robot_name, "_floating_link"]],
            ),
            Node(
                package="ros_gz_sim",
                executable="create",
                namespace=robot_name,
                arguments=[
                    "-topic",
                    "robot_description",
                    "-name",
                    robot_name,
                    "-allow_renaming",
                    "-x",
                    "0",
                    "-y",
                    "0",
                    "-z",
                    "0",
                ],
                output="screen",
            ),
            Node(
                package="ros_gz_bridge",
                executable="parameter_bridge",
                parameters=[{"config_file": PathJoinSubstitution([description, "urdf", "gz_bridge.yaml"])}],
                output="screen",
            ),
            spawner("joint_state_broadcaster"),
            spawner("joint_trajectory_controller"),
            spawner("gripper_controller", "--param-file", gripper_params),
        ]
    )
