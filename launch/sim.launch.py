"""rlcg in simulation: the three-bin world, the robot, the policy, the executor and the recorder.

  ros2 launch rlcg_bringup sim.launch.py simulator:=pybullet bins:=single model:=default record:=false

simulator:=pybullet  the core's PyBullet world as a node (camera, TF, ExecuteGrasp); no Gazebo, no MoveIt
simulator:=gazebo    gz sim Harmonic world (rlcg_description), the LBR with ros2_control (lbr_fri_ros2_stack),
                     and moveit_executor_node on MoveItPy
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SIM_IMAGE = "/rlcg/sim/camera/image_raw"
SIM_CAMERA_INFO = "/rlcg/sim/camera/camera_info"


def generate_launch_description() -> LaunchDescription:
    simulator = LaunchConfiguration("simulator")
    is_gazebo = PythonExpression(["'", simulator, "' == 'gazebo'"])
    launch_dir = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "launch"])
    config_dir = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "config"])

    def include(name: str, condition=None, **args) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([launch_dir, name])),
            launch_arguments=args.items(),
            condition=condition,
        )

    pybullet = Node(
        package="rlcg_ros",
        executable="pybullet_sim_node",
        name="pybullet_sim_node",
        output="screen",
        condition=LaunchConfigurationEquals("simulator", "pybullet"),
        parameters=[
            PathJoinSubstitution([config_dir, "pybullet_sim_node.yaml"]),
            {"bins": LaunchConfiguration("bins"), "domain": LaunchConfiguration("domain")},
        ],
        remappings=[("camera/image_raw", SIM_IMAGE), ("camera/camera_info", SIM_CAMERA_INFO)],
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "simulator",
                default_value="pybullet",
                choices=["gazebo", "pybullet"],
                description="world and robot: gz sim + MoveIt, or the PyBullet node",
            ),
            DeclareLaunchArgument(
                "bins",
                default_value="single",
                choices=["single", "multi"],
                description="single: the robot faces the centre bin; multi: a random bin per "
                "scene (PyBullet; Gazebo keeps the robot at the centre bin)",
            ),
            DeclareLaunchArgument(
                "model", default_value="default", description="policy checkpoint directory, 'default' or 'random'"
            ),
            DeclareLaunchArgument(
                "record",
                default_value="false",
                choices=["true", "false"],
                description="record episodes as rosbag2 bags",
            ),
            DeclareLaunchArgument("bag_dir", default_value="rlcg_bags", description="bag directory (must be new)"),
            DeclareLaunchArgument(
                "domain", default_value="sim", description="PyBullet visual domain: sim, randomized, pseudo-real"
            ),
            DeclareLaunchArgument(
                "robot_model", default_value="iiwa14", choices=["iiwa7", "iiwa14"], description="LBR model in Gazebo"
            ),
            DeclareLaunchArgument("device", default_value="cpu", description="torch device of the policy"),
            DeclareLaunchArgument("headless", default_value="false", description="gz sim without GUI"),
            LogInfo(
                condition=IfCondition(
                    PythonExpression([is_gazebo, " and '", LaunchConfiguration("bins"), "' == 'multi'"])
                ),
                msg="bins:=multi: in Gazebo the robot and camera stay at the centre bin (a static world); "
                "use simulator:=pybullet for a random bin per scene",
            ),
            pybullet,
            include(
                "gazebo.launch.py",
                IfCondition(is_gazebo),
                robot_model=LaunchConfiguration("robot_model"),
                headless=LaunchConfiguration("headless"),
            ),
            include(
                "moveit_executor.launch.py",
                IfCondition(is_gazebo),
                robot_model=LaunchConfiguration("robot_model"),
                mode="gazebo",
                use_sim_time="true",
            ),
            include(
                "rlcg_nodes.launch.py",
                model=LaunchConfiguration("model"),
                device=LaunchConfiguration("device"),
                record=LaunchConfiguration("record"),
                bag_dir=LaunchConfiguration("bag_dir"),
                image_topic=SIM_IMAGE,
                camera_info_topic=SIM_CAMERA_INFO,
                domain=PythonExpression(["'gazebo' if ", is_gazebo, " else '", LaunchConfiguration("domain"), "'"]),
                bins_mode=LaunchConfiguration("bins"),
                use_sim_time=PythonExpression(["'true' if ", is_gazebo, " else 'false'"]),
            ),
        ]
    )
