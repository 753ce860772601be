"""The rlcg nodes every setup shares: the policy (Q-network + CEM) and, with record:=true, the recorder.

Included by sim.launch.py and real_iiwa.launch.py; the ExecuteGrasp server (pybullet_sim_node or
moveit_executor_node) comes from the including file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGS = [
    ("model", "default", "policy checkpoint directory, 'default' (packaged model) or 'random'"),
    ("device", "cpu", "torch device of the policy (cpu, cuda)"),
    ("record", "false", "record episodes (one per ExecuteGrasp goal) into bag_dir"),
    ("bag_dir", "rlcg_bags", "directory for the bags; must not hold a bag yet"),
    ("image_topic", "/camera/color/image_raw", "camera image the policy acts on"),
    ("camera_info_topic", "/camera/color/camera_info", "camera info of that image"),
    ("domain", "real", "domain label recorded with each episode"),
    ("bins_mode", "single", "bins mode label recorded with each episode"),
    ("use_sim_time", "false", "use /clock (Gazebo)"),
    ("auto_execute", "true", "send ExecuteGrasp goals; false: only publish the chosen pose"),
]


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("rlcg_bringup"), "config"])
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    policy = Node(
        package="rlcg_ros",
        executable="policy_node",
        name="policy_node",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "policy_node.yaml"]),
            {
                "model": LaunchConfiguration("model"),
                "device": LaunchConfiguration("device"),
                "domain": LaunchConfiguration("domain"),
                "bins_mode": LaunchConfiguration("bins_mode"),
                "auto_execute": ParameterValue(LaunchConfiguration("auto_execute"), value_type=bool),
                "use_sim_time": use_sim_time,
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    recorder = Node(
        package="rlcg_ros",
        executable="recorder_node",
        name="recorder_node",
        output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[
            PathJoinSubstitution([config, "recorder_node.yaml"]),
            {"bag_dir": LaunchConfiguration("bag_dir"), "use_sim_time": use_sim_time},
        ],
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGS]
        + [policy, recorder]
    )
