"""MoveIt's planning scene for moveit_executor_node (rlcg.robot.scene) and the camera's collision
box in the ROS robot description: OMPL must plan the free-space moves around the table, the bins and
the camera, and the grasps the executor accepts and the arm at home must be clear of all of them.
Checked with PyBullet's collision geometry of the iiwa (the simulated robot's meshes)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from rlcg.robot.executor import ExecutorSettings, GraspGoal, plan_grasp
from rlcg.robot.scene import TABLE_CLEARANCE, collision_boxes

URDF = Path(__file__).resolve().parents[1] / "urdf"


def test_table_and_every_bin_are_in_the_scene(sim_config):
    boxes = {b.name: b for b in collision_boxes(sim_config)}
    bins = sim_config.world.bins
    assert set(boxes) == {"table"} | {
        f"bin_{i}_{part}"
        for i in range(bins.count)
        for part in ("floor", "wall_front", "wall_back", "wall_left", "wall_right")
    }
    table = boxes["table"]
    assert table.center[2] + table.size[2] / 2 == pytest.approx(-TABLE_CLEARANCE)  # just under the base
    base_y = bins.center_y(bins.centre_index)
    for i in range(bins.count):
        floor = boxes[f"bin_{i}_floor"]
        assert floor.center[2] + floor.size[2] / 2 == pytest.approx(bins.floor_z)
        assert floor.center[:2] == pytest.approx((bins.center_x, bins.center_y(i) - base_y))
        assert boxes[f"bin_{i}_wall_front"].size[2] == pytest.approx(bins.wall_height)


def test_every_accepted_grasp_is_clear_of_the_scene(sim_config):
    """The TCP at every waypoint, and the fingertips at the deepest grasp, at the corners of the
    policy's workspace: outside every box (inside the bin, above its floor)."""
    settings = ExecutorSettings()
    ws = sim_config.robot.workspace
    boxes = collision_boxes(sim_config)
    from rlcg.robot import messages

    for x, y, z_offset in itertools.product(ws.x, ws.y, ws.z_offset):
        pose = messages.action_pose_msg([x, y, 0.0, 0.0], settings.base_frame, 1)
        goal = GraspGoal.from_msg(
            messages.msg_class("rlcg_interfaces/action/ExecuteGrasp_Goal")(
                grasp=pose, z_offset=z_offset, episode_id="", dry_run=False
            )
        )
        plan = plan_grasp(goal, settings)
        tips = plan.grasp.position - np.array([0.0, 0.0, settings.fingertip_length])
        for point in (plan.pre_grasp.position, plan.grasp.position, plan.lift.position, tips):
            assert not any(b.contains(point) for b in boxes), (x, y, z_offset, point)


def test_the_ros_camera_link_has_a_collision_box_around_its_body():
    root = ET.parse(URDF / "rlcg_tool.xacro").getroot()
    link = next(e for e in root.iter("link") if e.get("name") == "camera_link")
    visual = [float(v) for v in link.find("visual/geometry/box").get("size").split()]
    collision = [float(v) for v in link.find("collision/geometry/box").get("size").split()]
    assert all(c >= v + 0.04 for c, v in zip(collision, visual))  # 2 cm or more to spare on every side


def test_the_arm_at_home_is_clear_of_the_scene_and_the_camera(sim_config):
    """MoveIt refuses to plan from a start state in collision: at its home joints (and the IK rest
    pose) the simulated iiwa with its gripper touches none of the boxes nor the camera's box."""
    import pybullet as pb

    from rlcg.sim.world import expand_robot_urdf

    root = ET.parse(URDF / "rlcg_tool.xacro").getroot()
    link = next(e for e in root.iter("link") if e.get("name") == "camera_link")
    camera_size = [float(v) for v in link.find("collision/geometry/box").get("size").split()]
    cid = pb.connect(pb.DIRECT)
    try:
        robot = pb.loadURDF(str(expand_robot_urdf(sim_config)), useFixedBase=True, physicsClientId=cid)
        joints = {
            pb.getJointInfo(robot, j, physicsClientId=cid)[1].decode(): j
            for j in range(pb.getNumJoints(robot, physicsClientId=cid))
        }
        obstacles = {}
        cam = sim_config.camera
        for name, size, center, quat in [
            *((b.name, b.size, b.center, (0, 0, 0, 1)) for b in collision_boxes(sim_config)),
            ("camera", camera_size, cam.mount_xyz, pb.getQuaternionFromEuler(cam.mount_rpy())),
        ]:
            shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[s / 2 for s in size], physicsClientId=cid)
            obstacles[name] = pb.createMultiBody(
                0, shape, basePosition=center, baseOrientation=quat, physicsClientId=cid
            )
        for pose in (sim_config.robot.home_joints, sim_config.robot.ik_rest_joints):
            for name, value in zip(sim_config.robot.arm_joints, pose):
                pb.resetJointState(robot, joints[name], value, physicsClientId=cid)
            pb.performCollisionDetection(physicsClientId=cid)
            for name, body in obstacles.items():
                near = pb.getClosestPoints(robot, body, distance=0.5, physicsClientId=cid)
                moving = [p[8] for p in near if p[3] > 0]  # the links above the base
                assert not moving or min(moving) > 0.0, (pose, name, min(moving))
    finally:
        pb.disconnect(cid)


def test_the_gripper_geometry_of_the_wall_check_is_the_tools():
    from rlcg.robot.scene import FINGER_HALF, FINGER_Z, PALM_HALF, PALM_Z

    root = ET.parse(URDF / "rlcg_tool.xacro").getroot()
    links = {e.get("name"): e for e in root.iter("link")}
    joints = {e.get("name"): e for e in root.iter("joint")}

    def floats(text):
        return [float(v) for v in text.replace("${sign * 0.006}", "0.006").split()]

    finger = links["gripper_finger_${side}"].find("collision")
    size, origin = floats(finger.find("geometry/box").get("size")), floats(finger.find("origin").get("xyz"))
    finger_joint_z = floats(joints["gripper_finger_${side}_joint"].find("origin").get("xyz"))[2]
    tcp_z = floats(joints["gripper_tcp_joint"].find("origin").get("xyz"))[2]
    assert pytest.approx((size[0] / 2, size[1] / 2)) == FINGER_HALF and origin[1] == pytest.approx(FINGER_HALF[1])
    bottom, top = finger_joint_z + origin[2] + size[2] / 2, finger_joint_z + origin[2] - size[2] / 2
    assert pytest.approx((tcp_z - bottom, tcp_z - top)) == FINGER_Z  # heights above the TCP
    palm = links["gripper_palm"].find("collision")
    psize, porigin = floats(palm.find("geometry/box").get("size")), floats(palm.find("origin").get("xyz"))
    assert pytest.approx((psize[0] / 2, psize[1] / 2)) == PALM_HALF
    assert pytest.approx((tcp_z - porigin[2] - psize[2] / 2, tcp_z - porigin[2] + psize[2] / 2)) == PALM_Z
    assert ExecutorSettings().fingertip_length == pytest.approx(-FINGER_Z[0])


def test_the_wall_check_agrees_with_pybullets_collision_geometry(sim_config):
    """An independent judge: the open gripper's boxes and the scene's boxes in PyBullet, at random
    grasps over the workspace (the fingers open to gripper_open_width)."""
    import pybullet as pb

    from rlcg.robot import messages
    from rlcg.robot.scene import FINGER_HALF, FINGER_Z, PALM_HALF, PALM_Z, gripper_obstacle
    from rlcg.sim.geometry import quat_from_matrix

    settings = ExecutorSettings()
    boxes = collision_boxes(sim_config)
    ws = sim_config.robot.workspace
    rng = np.random.default_rng(5)
    cid = pb.connect(pb.DIRECT)
    try:

        def body(half, center, quat=(0, 0, 0, 1)):
            shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=list(half), physicsClientId=cid)
            return pb.createMultiBody(0, shape, basePosition=list(center), baseOrientation=quat, physicsClientId=cid)

        obstacles = [body(np.asarray(b.size) / 2, b.center) for b in boxes]
        hits = 0
        for _ in range(150):
            x, y, yaw = rng.uniform(*ws.x), rng.uniform(*ws.y), rng.uniform(*ws.yaw)
            tcp = np.array([x, y, settings.grasp_z])
            rotation = messages.tcp_rotation(yaw)
            quat = quat_from_matrix(rotation)
            uy = rotation[:2, 1]
            parts = []
            for side in (1, -1):
                c = tcp[:2] + side * (settings.gripper_open_width / 2 + FINGER_HALF[1]) * uy
                parts.append(
                    body((*FINGER_HALF, (FINGER_Z[1] - FINGER_Z[0]) / 2), (*c, tcp[2] + sum(FINGER_Z) / 2), quat)
                )
            parts.append(body((*PALM_HALF, (PALM_Z[1] - PALM_Z[0]) / 2), (*tcp[:2], tcp[2] + sum(PALM_Z) / 2), quat))
            pb.performCollisionDetection(physicsClientId=cid)
            touching = any(
                pb.getClosestPoints(p, o, distance=0.0, physicsClientId=cid) for p in parts for o in obstacles
            )
            assert (gripper_obstacle(tcp, rotation, settings.gripper_open_width, boxes) is not None) == touching
            hits += touching
            for p in parts:
                pb.removeBody(p, physicsClientId=cid)
        assert 0 < hits < 150  # both kinds of grasp were tried
    finally:
        pb.disconnect(cid)


def test_the_executor_refuses_a_grasp_whose_open_fingers_would_hit_a_wall(sim_config):
    from test_robot_executor import RecordingBackend, goal

    from rlcg.robot.executor import GraspExecutor
    from rlcg.robot.scene import FINGER_HALF

    settings = ExecutorSettings()
    boxes = collision_boxes(sim_config)
    wall = next(b for b in boxes if b.name == "bin_1_wall_front")
    b = RecordingBackend()
    # near the workspace's far edge, the fingers opening along x: one of them comes down on the front wall
    x = wall.center[0] - settings.gripper_open_width / 2 - FINGER_HALF[1]
    assert x <= sim_config.robot.workspace.x[1]
    result = GraspExecutor(b, settings, obstacles=boxes).execute(goal(x=x, y=0.0, yaw=1.5))
    assert result.rejected and "would hit bin_1_wall_front" in result.message and not b.moved
    ok = GraspExecutor(RecordingBackend(), ExecutorSettings(), obstacles=boxes).execute(goal(x=0.6, y=0.0, yaw=0.0))
    assert ok.success
