"""rlcg_description: the ROS-side robot xacros expand with the `xacro` package and load in PyBullet;
the gz world SDF matches config/ and loads with Gazebo's own parser (libsdformat); the
ros_gz_bridge config matches the SDF and the launch files."""

from __future__ import annotations

import ast
import math
import shutil
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlcg.robot import gz_world

ROOT = Path(__file__).resolve().parents[1]
URDF = ROOT / "urdf"
SDF = URDF / "three_bin_world.sdf"

# A stand-in for lbr_fri_ros2_stack's lbr_description (not installable without ROS): the macro
# interface rlcg_lbr.urdf.xacro relies on (<model>_description.xacro defining macro <model> with
# robot_name, mode, system_config_path) and the link/joint names of the real package.
INERTIAL = '<inertial><mass value="1"/><inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.01"/></inertial>'
STANDIN_LBR = f"""<?xml version="1.0"?>
<robot xmlns:xacro="http://www.ros.org/wiki/xacro">
  <xacro:macro name="iiwa14" params="robot_name mode system_config_path">
    <link name="${{robot_name}}_link_0">{INERTIAL}</link>
    <xacro:macro name="seg" params="i">
      <link name="${{robot_name}}_link_${{i}}">{INERTIAL}</link>
      <joint name="${{robot_name}}_A${{i}}" type="revolute">
        <parent link="${{robot_name}}_link_${{i - 1}}"/><child link="${{robot_name}}_link_${{i}}"/>
        <origin xyz="0 0 0.18"/><axis xyz="0 0 1"/>
        <limit lower="-2.9" upper="2.9" effort="100" velocity="1"/>
      </joint>
    </xacro:macro>
    {"".join(f'<xacro:seg i="{i}"/>' for i in range(1, 8))}
    <link name="${{robot_name}}_link_ee"/>
    <joint name="${{robot_name}}_joint_ee" type="fixed">
      <parent link="${{robot_name}}_link_7"/><child link="${{robot_name}}_link_ee"/><origin xyz="0 0 0.045"/>
    </joint>
    <ros2_control name="${{robot_name}}_system_interface" type="system">
      <hardware><plugin>${{mode}}</plugin></hardware>
    </ros2_control>
  </xacro:macro>
</robot>
"""
STANDIN_SRDF = """<?xml version="1.0"?>
<robot name="iiwa14">
  <group name="arm"><chain base_link="lbr_link_0" tip_link="lbr_link_ee"/></group>
  <disable_collisions link1="lbr_link_0" link2="lbr_link_1" reason="Adjacent"/>
</robot>
"""


@pytest.fixture
def ament_index(tmp_path, monkeypatch):
    """An ament index of package share dirs for xacro's $(find): rlcg_description from the checkout,
    stand-ins for lbr_description and iiwa14_moveit_config."""
    shares = {"rlcg_description": tmp_path / "rlcg_description"}
    shares["rlcg_description"].mkdir()
    (shares["rlcg_description"] / "urdf").symlink_to(URDF)
    lbr = tmp_path / "lbr_description"
    (lbr / "urdf" / "iiwa14").mkdir(parents=True)
    (lbr / "urdf" / "iiwa14" / "iiwa14_description.xacro").write_text(STANDIN_LBR)
    (lbr / "ros2_control").mkdir()
    (lbr / "ros2_control" / "lbr_system_config.yaml").write_text("hardware: {}\n")
    moveit = tmp_path / "iiwa14_moveit_config"
    (moveit / "config").mkdir(parents=True)
    (moveit / "config" / "iiwa14.srdf").write_text(STANDIN_SRDF)
    shares.update(lbr_description=lbr, iiwa14_moveit_config=moveit)

    def get_package_share_directory(name: str) -> str:
        if name not in shares:
            raise LookupError(name)
        return str(shares[name])

    module = types.ModuleType("ament_index_python.packages")
    module.get_package_share_directory = get_package_share_directory
    package = types.ModuleType("ament_index_python")
    package.packages = module
    monkeypatch.setitem(sys.modules, "ament_index_python", package)
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", module)
    return shares


def expand(path: Path, **mappings: str) -> str:
    import xacro

    return xacro.process_file(str(path), mappings=mappings).toprettyxml(indent="  ")


def load_in_pybullet(urdf_text: str, tmp_path: Path) -> dict:
    import pybullet as pb

    f = tmp_path / "robot.urdf"
    f.write_text(urdf_text)
    cid = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(f), useFixedBase=True, physicsClientId=cid)
        joints = {}
        for j in range(pb.getNumJoints(body, physicsClientId=cid)):
            info = pb.getJointInfo(body, j, physicsClientId=cid)
            joints[info[1].decode()] = {"type": info[2], "limits": (info[8], info[9]), "link": info[12].decode()}
        links = {v["link"]: k for k, v in joints.items()}
        poses = {}
        for name, index in ((n, list(joints).index(j)) for n, j in links.items()):
            state = pb.getLinkState(body, index, computeForwardKinematics=True, physicsClientId=cid)
            poses[name] = (np.array(state[4]), np.array(state[5]))
        return {"joints": joints, "poses": poses}
    finally:
        pb.disconnect(cid)


def test_camera_defaults_of_the_xacro_match_config(sim_config):
    doc = ET.parse(URDF / "rlcg_lbr.urdf.xacro").getroot()
    args = {a.get("name"): a.get("default") for a in doc.iter("{http://www.ros.org/wiki/xacro}arg")}
    np.testing.assert_allclose([float(v) for v in args["camera_xyz"].split()], sim_config.camera.mount_xyz)
    np.testing.assert_allclose([float(v) for v in args["camera_rpy"].split()], sim_config.camera.mount_rpy(), atol=1e-9)
    assert float(args["finger_travel"]) == pytest.approx(sim_config.robot.gripper.max_opening / 2)


@pytest.mark.parametrize("mode", ["mock", "gazebo", "hardware"])
def test_ros_robot_xacro_expands_and_loads(ament_index, tmp_path, mode):
    text = expand(URDF / "rlcg_lbr.urdf.xacro", model="iiwa14", mode=mode)
    root = ET.fromstring(text)
    controls = {c.get("name") for c in root.iter("ros2_control")}
    assert "lbr_system_interface" in controls
    assert ("rlcg_gripper" in controls) == (mode in ("mock", "gazebo"))
    right = next(j for j in root.iter("joint") if j.get("name") == "gripper_finger_right_joint")
    assert right.find("mimic").get("joint") == "gripper_finger_left_joint"
    robot = load_in_pybullet(text, tmp_path)
    joints = robot["joints"]
    movable = sorted(n for n, j in joints.items() if j["type"] != 4)
    assert movable == sorted(
        [f"lbr_A{i}" for i in range(1, 8)] + ["gripper_finger_left_joint", "gripper_finger_right_joint"]
    )
    assert joints["gripper_finger_left_joint"]["limits"] == pytest.approx((0.0, 0.055))
    for link in ("gripper_tcp", "camera_optical_frame", "lbr_link_ee"):
        assert link in robot["poses"]


def test_tool_matches_the_pybullet_robot(ament_index, tmp_path, sim_config):
    """TCP below the flange and camera on the base: the same in the ROS robot and in rlcg_iiwa.urdf.xacro."""
    from rlcg.sim.world import expand_robot_urdf

    ros = load_in_pybullet(expand(URDF / "rlcg_lbr.urdf.xacro", model="iiwa14", mode="mock"), tmp_path)
    core = load_in_pybullet(expand_robot_urdf(sim_config, mesh_prefix="").read_text(), tmp_path)

    def relative(robot, parent, child):
        from rlcg.sim.geometry import matrix_from_quat

        p0, q0 = robot["poses"][parent] if parent in robot["poses"] else (np.zeros(3), (0, 0, 0, 1))
        p1, q1 = robot["poses"][child]
        r0 = matrix_from_quat(q0)
        return r0.T @ (p1 - p0), r0.T @ matrix_from_quat(q1)

    for parent, child in (("lbr_link_ee", "gripper_tcp"), ("lbr_link_ee", "gripper_finger_left")):
        (pa, ra), (pb_, rb) = relative(ros, parent, child), relative(core, parent, child)
        np.testing.assert_allclose(pa, pb_, atol=1e-6)
        np.testing.assert_allclose(ra, rb, atol=1e-6)


def test_srdf_adds_the_gripper_to_lbr_moveit_config(ament_index):
    root = ET.fromstring(expand(URDF / "rlcg_lbr.srdf.xacro"))
    assert root.find("group").get("name") == "arm"  # lbr's SRDF is included, not copied
    pairs = {(d.get("link1"), d.get("link2")) for d in root.iter("disable_collisions")}
    assert ("gripper_palm", "lbr_link_7") in pairs and ("lbr_link_0", "lbr_link_1") in pairs
    assert root.find("passive_joint").get("name") == "gripper_finger_right_joint"


def test_with_the_real_lbr_description():
    pytest.importorskip(
        "ament_index_python", reason="needs a ROS 2 install with lbr_fri_ros2_stack (ament_index_python)"
    )
    from ament_index_python.packages import get_package_share_directory

    try:
        get_package_share_directory("lbr_description")
    except Exception:
        pytest.skip("lbr_description (lbr_fri_ros2_stack) is not installed")
    text = expand(URDF / "rlcg_lbr.urdf.xacro", model="iiwa14", mode="mock")
    assert "gripper_tcp" in text and "lbr_A7" in text


# --------------------------------------------------------------------------- the gz world
def test_committed_sdf_is_generated_from_the_config():
    assert SDF.read_text() == gz_world.world_sdf(), (
        "regenerate: python -m rlcg.robot.gz_world --out urdf/three_bin_world.sdf"
    )


def test_sdf_structure_and_values(sim_config):
    root = ET.parse(SDF).getroot()
    assert root.tag == "sdf" and root.get("version") == "1.9"
    (world,) = root.findall("world")
    plugins = {p.get("name") for p in world.findall("plugin")}
    assert {"gz::sim::systems::Physics", "gz::sim::systems::Sensors", "gz::sim::systems::SceneBroadcaster"} <= plugins
    models = {m.get("name"): m for m in world.findall("model")}
    bins = sim_config.world.bins
    for i in range(bins.count):
        pose = [float(v) for v in models[f"bin_{i}"].find("pose").text.split()]
        assert pose[:2] == pytest.approx([bins.center_x, bins.center_y(i)])
    objects = [m for n, m in models.items() if n.startswith("object_")]
    lo, hi = sim_config.world.objects.per_bin
    assert lo * bins.count <= len(objects) <= hi * bins.count
    for m in objects:
        assert m.find("static") is None  # objects fall and can be grasped
        assert float(m.find("link/inertial/mass").text) == pytest.approx(sim_config.world.objects.mass)


@pytest.fixture(scope="module")
def sdf_summary_tool(tmp_path_factory) -> Path:
    """tools/sdf_summary.cc built against the system libsdformat (Debian: libsdformat-dev, sdformat 12)."""
    if shutil.which("g++") is None or shutil.which("pkg-config") is None:
        pytest.skip("needs g++ and pkg-config to build the libsdformat checker")
    for lib in ("sdformat14", "sdformat13", "sdformat12"):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", lib], capture_output=True, text=True)
        if flags.returncode == 0:
            break
    else:
        pytest.skip("libsdformat development files are not installed (apt-get install libsdformat-dev)")
    exe = tmp_path_factory.mktemp("sdf") / "sdf_summary"
    src = ROOT / "src" / "rlcg_description" / "tools" / "sdf_summary.cc"
    build = subprocess.run(
        ["g++", "-O0", str(src), *flags.stdout.split(), "-o", str(exe)], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr[-2000:]
    return exe


def test_sdf_loads_with_libsdformat_strictly(sdf_summary_tool, tmp_path, sim_config):
    import json

    proc = subprocess.run([str(sdf_summary_tool), str(SDF)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    w = sim_config.world
    assert summary["gravity"] == pytest.approx([0, 0, w.physics.gravity])
    assert summary["max_step_size"] == pytest.approx(w.physics.time_step)
    models = {m["name"]: m for m in summary["models"]}
    table = models["table"]
    assert table["static"] and table["pose"][:3] == pytest.approx([*w.table.center_xy, -w.table.size[2] / 2])
    assert table["links"][0]["collisions"][0]["geometry"]["size"] == pytest.approx(list(w.table.size))
    b = w.bins
    for i in range(b.count):
        tray = models[f"bin_{i}"]
        cols = {c["name"]: c for c in tray["links"][0]["collisions"]}
        floor = cols["floor_collision"]["geometry"]["size"]
        assert floor == pytest.approx(
            [b.inner_size[0] + 2 * b.wall_thickness, b.inner_size[1] + 2 * b.wall_thickness, b.floor_thickness]
        )
        front = cols["wall_front_collision"]
        assert front["geometry"]["size"][2] == pytest.approx(b.wall_height)
        # the inner face of the front wall is inner_size / 2 from the bin centre
        assert front["pose"][0] - front["geometry"]["size"][0] / 2 == pytest.approx(b.inner_size[0] / 2)
    cam_model = models[gz_world.CAMERA_MODEL]
    (sensor,) = cam_model["links"][0]["sensors"]
    cam = sim_config.camera
    assert sensor["type"] == "camera" and sensor["topic"] == gz_world.CAMERA_GZ_TOPIC
    assert cam_model["pose"][:3] == pytest.approx(
        [cam.mount_xyz[0], cam.mount_xyz[1] + b.center_y(b.centre_index), cam.mount_xyz[2]]
    )
    assert cam_model["pose"][3:] == pytest.approx(list(cam.mount_rpy()), abs=1e-8)
    c = sensor["camera"]
    assert (c["width"], c["height"], c["near"], c["far"]) == (
        cam.width,
        cam.height,
        pytest.approx(cam.near),
        pytest.approx(cam.far),
    )
    # fx = fy: the vertical field of view of camera.yaml follows from the horizontal one
    assert 2 * math.atan(math.tan(c["horizontal_fov"] / 2) * cam.height / cam.width) == pytest.approx(
        math.radians(cam.vertical_fov_deg)
    )
    objects = [m for m in summary["models"] if m["name"].startswith("object_")]
    for m in objects:
        x, y, z = m["pose"][:3]
        bin_index = int(m["name"].split("_")[1])
        assert abs(x - b.center_x) < b.inner_size[0] / 2 and abs(y - b.center_y(bin_index)) < b.inner_size[1] / 2
        assert m["links"][0]["mass"] == pytest.approx(w.objects.mass)
        assert m["links"][0]["collisions"][0]["mu"] == pytest.approx(w.objects.lateral_friction)


def test_libsdformat_rejects_an_unknown_element(sdf_summary_tool, tmp_path):
    bad = tmp_path / "bad.sdf"
    bad.write_text(SDF.read_text().replace("<always_on>", "<bogus_element>1</bogus_element><always_on>", 1))
    proc = subprocess.run([str(sdf_summary_tool), str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "bogus_element" in proc.stderr


def test_sdf_loads_with_sdformat14_python_bindings():
    try:
        import sdformat14
        from sdformat14 import sdformat14 as bindings  # the PyPI wheel keeps the extension in a submodule
    except ImportError as exc:
        pytest.skip(f"sdformat14 Python bindings unusable here: {exc}")
    root = bindings.Root()
    root.load(str(SDF))
    assert sdformat14 and root.world_count() == 1


# --------------------------------------------------------------------------- ros_gz_bridge
KNOWN_BRIDGE_PAIRS = {  # ros_gz_bridge's type mapping for what the world publishes
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock",
    "sensor_msgs/msg/Image": "gz.msgs.Image",
    "sensor_msgs/msg/CameraInfo": "gz.msgs.CameraInfo",
}


def launch_constant(name: str) -> str:
    tree = ast.parse((ROOT / "launch" / "sim.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)


def test_bridge_config_matches_world_and_launch():
    entries = yaml.safe_load((URDF / "gz_bridge.yaml").read_text())
    by_ros = {e["ros_topic_name"]: e for e in entries}
    for e in entries:
        assert set(e) == {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
        assert KNOWN_BRIDGE_PAIRS[e["ros_type_name"]] == e["gz_type_name"]
        assert e["direction"] == "GZ_TO_ROS"
    assert by_ros["/clock"]["gz_topic_name"] == "/clock"
    image = by_ros[launch_constant("SIM_IMAGE")]
    assert image["gz_topic_name"] == gz_world.CAMERA_GZ_TOPIC
    info = by_ros[launch_constant("SIM_CAMERA_INFO")]
    # gz-sensors publishes camera info next to the image topic, named camera_info
    assert info["gz_topic_name"] == gz_world.CAMERA_GZ_TOPIC.rsplit("/", 1)[0] + "/camera_info"
    assert info["gz_topic_name"] == gz_world.CAMERA_INFO_GZ_TOPIC
