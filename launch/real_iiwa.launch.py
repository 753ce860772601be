"""rlcg on a real KUKA LBR iiwa through lbr_fri_ros2_stack (FRI), with conservative motion scaling.

  ros2 launch rlcg_bringup real_iiwa.launch.py robot_model:=iiwa14 \
      image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \
      model:=/path/to/checkpoint record:=true bag_dir:=~/rlcg_real_bags

Starts lbr_fri_ros2_stack's ros2_control node with its FRI hardware interface (robot side: the
LBRServer application on the smartPAD; FRI port and robot address in the system config, sys_cfg),
the robot description with rlcg's gripper and camera, MoveItPy executor (velocity and acceleration
scaling 0.1 unless told otherwise), the policy and the recorder. The camera driver and the gripper
driver (a control_msgs/GripperCommand action) are the user's: start them alongside.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessStart
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, FindExecutable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lbr_bringup.ros2_control import LBRROS2ControlMixin

ARGS = [
    ("robot_model", "iiwa14", "LBR model: iiwa7 or iiwa14"),
    ("robot_name", "lbr", "robot name and namespace (as lbr_fri_ros2_stack)"),
    ("sys_cfg_pkg", "lbr_description", "package of the FRI system config"),
    ("sys_cfg", "ros2_control/lbr_system_config.yaml", "FRI system config: port_id, remote_host (robot IP) ..."),
    ("ctrl", "joint_trajectory_controller", "arm controller (MoveIt executes through it)"),
    ("camera_xyz", "0 0.22 0.7", "calibrated camera_link position in the base frame (m)"),
    ("camera_rpy", "0 0.830874908269 -0.351444794004", "calibrated camera_link orientation (rad)"),
    ("image_topic", "/camera/color/image_raw", "RGB image of the camera driver"),
    ("camera_info_topic", "/camera/color/camera_info", "camera info of the camera driver"),
    ("gripper_action", "/gripper/gripper_cmd", "control_msgs/GripperCommand action of the gripper driver"),
    ("model", "default", "policy checkpoint directory or 'default'"),
    ("device", "cpu", "torch device of the policy"),
    ("record", "false", "record episodes as rosbag2 bags"),
    ("bag_dir", "rlcg_real_bags", "bag directory (must be new)"),
    ("velocity_scaling", "0.1", "MoveIt velocity scaling (keep low on the real robot)"),
    ("acceleration_scaling", "0.1", "MoveIt acceleration scaling (keep low on the real robot)"),
]


def generate_launch_description() -> LaunchDescription:
    robot_name = LaunchConfiguration("robot_name")
    launch_dir = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "launch"])
    system_config = PathJoinSubstitution(
        [FindPackageShare(LaunchConfiguration("sys_cfg_pkg")), LaunchConfiguration("sys_cfg")]
    )
    robot_description = {
        "robot_description": ParameterValue(
            Command(
                [
                    FindExecutable(name="xacro"),
                    " ",
                    PathJoinSubstitution([FindPackageShare("rlcg_description"), "urdf", "rlcg_lbr.urdf.xacro"]),
                    " model:=",
                    LaunchConfiguration("robot_model"),
                    " robot_name:=",
                    robot_name,
                    " mode:=hardware system_config_path:=",
                    system_config,
                    " camera_xyz:='",
                    LaunchConfiguration("camera_xyz"),
                    "' camera_rpy:='",
                    LaunchConfiguration("camera_rpy"),
                    "'",
                ]
            ),
            value_type=str,
        )
    }
    ros2_control = LBRROS2ControlMixin.node_ros2_control(use_sim_time=False)
    spawners = [
        LBRROS2ControlMixin.node_controller_spawner(controller=name)
        for name in ("joint_state_broadcaster", "force_torque_broadcaster", "lbr_state_broadcaster")
    ] + [LBRROS2ControlMixin.node_controller_spawner(controller=LaunchConfiguration("ctrl"))]

    def include(name: str, **args) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([launch_dir, name])), launch_arguments=args.items()
        )

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGS]
        + [
            Node(
                package="tf2_ros",
                executable="static_transform_publisher",
                arguments=["--frame-id", "world", "--child-frame-id", [robot_name, "_floating_link"]],
            ),
            LBRROS2ControlMixin.node_robot_state_publisher(robot_description=robot_description, use_sim_time=False),
            ros2_control,
            RegisterEventHandler(OnProcessStart(target_action=ros2_control, on_start=spawners)),
            include(
                "moveit_executor.launch.py",
                robot_model=LaunchConfiguration("robot_model"),
                robot_name=robot_name,
                mode="hardware",
                use_sim_time="false",
                velocity_scaling=LaunchConfiguration("velocity_scaling"),
                acceleration_scaling=LaunchConfiguration("acceleration_scaling"),
                gripper_action=LaunchConfiguration("gripper_action"),
            ),
            include(
                "rlcg_nodes.launch.py",
                model=LaunchConfiguration("model"),
                device=LaunchConfiguration("device"),
                record=LaunchConfiguration("record"),
                bag_dir=LaunchConfiguration("bag_dir"),
                image_topic=LaunchConfiguration("image_topic"),
                camera_info_topic=LaunchConfiguration("camera_info_topic"),
                domain="real",
                bins_mode="single",
                use_sim_time="false",
            ),
        ]
    )
