"""Launch files and node shells: they compile, declare the arguments the docs promise, reference
files that exist, and every node parameter file loads into its node's settings."""

from __future__ import annotations

import ast
import py_compile
from pathlib import Path

import pytest

from rlcg.robot.executor import ExecutorSettings
from rlcg.robot.params import misspelled_parameters, param_defaults, read_node_params, settings_from_params
from rlcg.robot.policy_runner import PolicyNodeSettings
from rlcg.robot.recorder_core import RecorderNodeSettings
from rlcg.robot.sim_node import SimNodeSettings

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
NODE_FILES = sorted((ROOT / "src" / "rlcg_ros" / "rlcg_ros").glob("*.py"))


@pytest.mark.parametrize("path", LAUNCH_FILES + NODE_FILES, ids=lambda p: p.name)
def test_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def declared_args(path: Path) -> set[str]:
    """Names of DeclareLaunchArgument(...) calls and of ARGS tables ((name, default, text) tuples)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        is_declare = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"
        if is_declare and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGS":
            names |= {entry[0] for entry in ast.literal_eval(node.value)}
    return names


def test_sim_launch_arguments():
    assert {"simulator", "bins", "model", "record", "bag_dir"} <= declared_args(ROOT / "launch" / "sim.launch.py")


def test_real_launch_arguments():
    args = declared_args(ROOT / "launch" / "real_iiwa.launch.py")
    assert {"robot_model", "sys_cfg", "image_topic", "camera_info_topic", "model", "record", "bag_dir"} <= args
    assert {"velocity_scaling", "acceleration_scaling"} <= args
    defaults = {e[0]: e[1] for e in ast.literal_eval(_assignment(ROOT / "launch" / "real_iiwa.launch.py", "ARGS"))}
    assert float(defaults["velocity_scaling"]) == 0.1 and float(defaults["acceleration_scaling"]) == 0.1


def _assignment(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return node.value
    raise KeyError(name)


def test_included_launch_files_and_shared_files_exist():
    """Every '<name>.launch.py', config and urdf file named in a launch file is in the workspace."""
    for path in LAUNCH_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value.endswith(".launch.py") and not value.startswith(("gz_sim", "ros_gz")):
                    if value != "gz_sim.launch.py":
                        assert (ROOT / "launch" / value).is_file(), f"{path.name}: {value}"
                elif value.endswith((".yaml", ".xacro", ".sdf")) and "/" not in value and "{" not in value:
                    assert (ROOT / "config" / value).is_file() or (ROOT / "urdf" / value).is_file(), value


def test_executables_in_launch_files_are_entry_points():
    setup = (ROOT / "src" / "rlcg_ros" / "setup.py").read_text()
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Node":
                kw = {k.arg: k.value for k in node.keywords}
                if isinstance(kw.get("package"), ast.Constant) and kw["package"].value == "rlcg_ros":
                    exe = kw["executable"].value
                    assert f"{exe} = " in setup, f"{path.name}: {exe} is not a console script of rlcg_ros"


@pytest.mark.parametrize(
    "node, settings",
    [
        ("policy_node", PolicyNodeSettings),
        ("moveit_executor_node", ExecutorSettings),
        ("recorder_node", RecorderNodeSettings),
        ("pybullet_sim_node", SimNodeSettings),
    ],
)
def test_node_parameter_files_load(node, settings):
    path = ROOT / "config" / f"{node}.yaml"
    params = read_node_params(path, node)
    loaded = settings_from_params(settings, params, node)
    # ROS parameter files cannot hold an empty list (rcl reads `[]` as no value): a field whose
    # default is empty is documented as a commented-out example instead, and left unset
    empty = {name for name, value in param_defaults(settings).items() if value == []}
    assert not empty & set(params), f"{path}: an empty list cannot be a ROS parameter value"
    commented = {name for name in empty if f"# {name}: [" in path.read_text()}
    assert set(params) | commented == set(settings.__dataclass_fields__)  # the file documents every parameter
    assert loaded == settings_from_params(settings, dict(params))


def test_parameter_files_of_namespaced_nodes_match_them_in_any_namespace():
    """A node started in the robot's namespace takes only entries keyed /**/<name> (or its full name)."""
    import yaml

    launch = (ROOT / "launch" / "moveit_executor.launch.py").read_text()
    assert 'executable="moveit_executor_node",\n            namespace=robot_name' in launch
    for node in ("moveit_executor_node", "policy_node", "recorder_node", "pybullet_sim_node"):
        # started in a namespace, a file keyed by the bare name would be dropped without a word
        keys = set(yaml.safe_load((ROOT / "config" / f"{node}.yaml").read_text()))
        assert keys == {f"/**/{node}"}, node
    gripper = yaml.safe_load((ROOT / "config" / "gripper_controllers.yaml").read_text())
    # the controller spawner (--param-file) reads the controller's type from its own entry
    controller = gripper["/**/gripper_controller"]["ros__parameters"]
    assert controller["type"] == "position_controllers/GripperActionController"


def test_executor_box_contains_the_policy_workspace(sim_config):
    """Every grasp the policy may choose passes the executor's box (with its default heights)."""
    ex = settings_from_params(
        ExecutorSettings, read_node_params(ROOT / "config" / "moveit_executor_node.yaml", "moveit_executor_node")
    )
    ws = sim_config.robot.workspace
    assert ex.box_x[0] <= ws.x[0] and ws.x[1] <= ex.box_x[1]
    assert ex.box_y[0] <= ws.y[0] and ws.y[1] <= ex.box_y[1]
    assert ex.z_offset_limits == list(ws.z_offset)
    assert ex.grasp_z == pytest.approx(sim_config.world.bins.floor_z + sim_config.robot.executor.grasp_depth)
    assert ex.box_z[0] <= ex.grasp_z + ws.z_offset[0]
    assert ex.grasp_z + ws.z_offset[1] + max(ex.approach_height, ex.lift_height) <= ex.box_z[1]
    assert ex.home_joints == list(sim_config.robot.home_joints)


def test_train_strips_ros_arguments():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train", ROOT / "src" / "rlcg_ros" / "rlcg_ros" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    argv = ["--steps", "10", "--ros-args", "-r", "__node:=t", "--", "--out", "x"]
    assert train.strip_ros_args(argv) == ["--steps", "10", "--out", "x"]


# Top-level parameter names that MoveItConfigsBuilder(...).to_dict() hands the executor's process
# (nested ones arrive dotted: planning_pipelines.pipeline_names, ompl.planning_plugins, ...).
MOVEIT_PARAMETERS = [
    "robot_description", "robot_description_semantic", "robot_description_kinematics.arm.kinematics_solver",
    "robot_description_planning.joint_limits.lbr_A1.max_velocity", "planning_pipelines.pipeline_names",
    "default_planning_pipeline", "moveit_manage_controllers", "moveit_controller_manager",
    "moveit_simple_controller_manager.controller_names", "trajectory_execution.allowed_execution_duration_scaling",
    "publish_planning_scene", "publish_geometry_updates", "publish_state_updates", "publish_transforms_updates",
    "publish_robot_description", "publish_robot_description_semantic", "planning_scene_monitor_options.name",
    "plan_request_params.planning_time", "ompl.planning_plugins", "pilz_industrial_motion_planner.planning_plugins",
    "capabilities", "disable_capabilities", "use_sim_time", "qos_overrides./tf.publisher.depth",
]  # fmt: skip


@pytest.mark.parametrize(
    "settings, given, typos",
    [
        (ExecutorSettings, ["box_Z", "velocity_scalling", "grasp_z"], {"box_Z": "box_z", "velocity_scalling": "velocity_scaling"}),  # noqa: E501
        (ExecutorSettings, MOVEIT_PARAMETERS + ["min_fingertip_z"], {}),
        (PolicyNodeSettings, ["max_image_age", "use_sim_time", "model"], {"max_image_age": "max_image_age_s"}),
        (RecorderNodeSettings, ["bagdir", "use_sim_time"], {"bagdir": "bag_dir"}),
    ],
)  # fmt: skip
def test_a_misspelled_parameter_is_named_not_silently_ignored(settings, given, typos):
    """A node ignores parameters it does not declare: node_util.declare_settings refuses those that
    look like one of its own, and lets other software's parameters in the same process pass."""
    assert misspelled_parameters(given, param_defaults(settings)) == typos


def test_the_docker_image_and_the_readme_pin_the_same_lbr_stack_commit():
    """real_iiwa.launch.py calls lbr_fri_ros2_stack's launch mixins, whose signatures change between
    commits: both install paths pin the commit it was written against."""
    import re

    docker = re.search(r"ARG LBR_STACK_COMMIT=([0-9a-f]{40})", (ROOT / "docker" / "Dockerfile").read_text())
    readme = set(
        re.findall(
            r"lbr_fri_ros2_stack checkout ([0-9a-f]{40})|/tmp/lbr checkout ([0-9a-f]{40})",
            (ROOT / "README.md").read_text(),
        )
    )
    pinned = {c for pair in readme for c in pair if c}
    assert docker and pinned == {docker.group(1)}
    assert "node_controller_spawner(controller=" in (ROOT / "launch" / "real_iiwa.launch.py").read_text()
