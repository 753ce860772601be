"""`colcon build` of the workspace's packages that build without ROS 2 (all but rlcg_interfaces, an
ament_cmake/rosidl package), into a temporary directory, and the install tree a ROS user gets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES = ("policy_node", "moveit_executor_node", "recorder_node", "pybullet_sim_node", "train")
LAUNCH = (
    "sim.launch.py",
    "real_iiwa.launch.py",
    "gazebo.launch.py",
    "moveit_executor.launch.py",
    "rlcg_nodes.launch.py",
)
NODE_CONFIGS = (
    "policy_node.yaml",
    "moveit_executor_node.yaml",
    "recorder_node.yaml",
    "pybullet_sim_node.yaml",
    "moveit_py.yaml",
    "gripper_controllers.yaml",
)
DESCRIPTION = (
    "rlcg_lbr.urdf.xacro",
    "rlcg_tool.xacro",
    "rlcg_lbr.srdf.xacro",
    "three_bin_world.sdf",
    "gz_bridge.yaml",
    "rlcg_iiwa.urdf.xacro",
)


def colcon(tmp: Path, *select: str, ignore: tuple[str, ...] = ("rlcg_interfaces",)) -> subprocess.CompletedProcess:
    exe = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(exe).exists():
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    cmd = [
        exe,
        "--log-base",
        str(tmp / "log"),
        "build",
        "--build-base",
        str(tmp / "build"),
        "--install-base",
        str(tmp / "install"),
        "--base-paths",
        str(ROOT / "src"),
        "--packages-ignore",
        *ignore,
        "--event-handlers",
        "console_direct-",
    ]
    if select:
        cmd += ["--packages-select", *select]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("colcon")
    proc = colcon(tmp, "rlcg", "rlcg_ros", "rlcg_bringup", "rlcg_description", ignore=("rlcg_interfaces",))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp / "install"


def test_node_executables_are_installed(install):
    lib = install / "rlcg_ros" / "lib" / "rlcg_ros"
    for node in NODES:
        exe = lib / node
        assert exe.is_file(), f"missing {exe}"
        assert exe.stat().st_mode & 0o111, f"{exe} is not executable"


def test_each_node_executable_runs_its_own_module(install):
    """Which code an installed executable starts is set by the installed package's metadata
    (entry_points.txt), which the setuptools script looks up by the script's name: each node's
    console_script must be ``rlcg_ros.<node>:main``, and that module must be installed with a main()."""
    import ast
    import re
    from importlib.metadata import distributions

    site = next((install / "rlcg_ros" / "lib").glob("python3*/site-packages"))
    (dist,) = [d for d in distributions(path=[str(site)]) if d.metadata["Name"].replace("_", "-") == "rlcg-ros"]
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {node: f"rlcg_ros.{node}:main" for node in NODES}
    for node in NODES:
        module = site / "rlcg_ros" / f"{node}.py"
        assert module.is_file(), f"{module} is not installed"
        tree = ast.parse(module.read_text())
        assert any(isinstance(f, ast.FunctionDef) and f.name == "main" for f in tree.body), f"{module} has no main()"
        # the executable looks its entry point up by its own name in that same distribution
        header = re.search(
            r"EASY-INSTALL-ENTRY-SCRIPT: '([^']+)','([^']+)','([^']+)'",
            (install / "rlcg_ros" / "lib" / "rlcg_ros" / node).read_text(),
        )
        if header is not None:  # the setuptools stub colcon installs today
            assert header.groups() == (f"rlcg-ros=={dist.version}", "console_scripts", node)


def test_launch_and_config_files_are_in_share(install):
    share = install / "rlcg_bringup" / "share" / "rlcg_bringup"
    for name in LAUNCH:
        assert (share / "launch" / name).is_file(), name
    for name in NODE_CONFIGS + ("world.yaml", "robot.yaml", "camera.yaml"):
        assert (share / "config" / name).is_file(), name
    assert (share / "config" / "domains" / "sim.yaml").is_file()
    desc = install / "rlcg_description" / "share" / "rlcg_description" / "urdf"
    for name in DESCRIPTION:
        assert (desc / name).is_file(), name


def test_packages_are_in_the_ament_index(install):
    for pkg in ("rlcg_ros", "rlcg_bringup", "rlcg_description"):
        assert (install / pkg / "share" / "ament_index" / "resource_index" / "packages" / pkg).is_file()
        assert (install / pkg / "share" / pkg / "package.xml").is_file()


def test_train_entry_point_wraps_rlcg_train(install):
    """The installed `train` executable runs `rlcg train` with ROS's arguments stripped."""
    import os

    from rlcg.cli import build_parser

    site = next((install / "rlcg_ros" / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    exe = install / "rlcg_ros" / "lib" / "rlcg_ros" / "train"
    proc = subprocess.run(
        [sys.executable, str(exe), "--help", "--ros-args", "-r", "__node:=x", "--"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    if "train" not in commands:
        assert "invalid choice: 'train'" in proc.stderr  # the wrapper did call `rlcg train`
        pytest.skip("rlcg has no `train` command yet (trainer issue); the wrapper reached the rlcg CLI")
    assert proc.returncode == 0, proc.stderr
    assert "usage: rlcg train" in proc.stdout


def test_core_package_builds_with_colcon(install):
    """src/rlcg is an ament_python package too: config/ and urdf/ go into share/rlcg, and the installed
    core finds them there (outside a source checkout)."""
    share = install / "rlcg" / "share" / "rlcg"
    assert (share / "config" / "world.yaml").is_file() and (share / "urdf" / "rlcg_iiwa.urdf.xacro").is_file()
    assert (share / "config" / "domains" / "pseudo-real.yaml").is_file()
    assert (install / "rlcg" / "share" / "ament_index" / "resource_index" / "packages" / "rlcg").is_file()


def test_the_colcon_built_core_finds_its_files_under_its_own_prefix(install, tmp_path):
    """Sourcing install/setup.bash puts the colcon-built rlcg ahead of the editable one: it must find
    config/, urdf/ and the message definitions under install/rlcg, not the interpreter's prefix."""
    import os

    site = next((install / "rlcg" / "lib").glob("python3*/site-packages"))
    prefix = install / "rlcg"
    script = (
        "import rlcg, rlcg.paths as p; from rlcg.data.types import typestore; typestore('jazzy'); "
        "print(rlcg.__file__); print(p.config_dir()); print(p.urdf_dir()); print(p.interfaces_dir())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLCG_")} | {"PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split()
    assert len(lines) == 4 and all(Path(line).resolve().is_relative_to(prefix.resolve()) for line in lines), lines
