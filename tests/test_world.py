"""The PyBullet three-bin world: determinism, action checks, camera model, grasping physics."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from rlcg.policies import Observation, OraclePolicy
from rlcg.rollout import episode_seed, run_episode
from rlcg.sim.camera import CameraIntrinsics, TablePlaneProjector
from rlcg.sim.config import SimConfig
from rlcg.sim.world import GraspAction, InvalidActionError, ThreeBinWorld


def _episode_digest(world: ThreeBinWorld, seed: int) -> str:
    from rlcg.policies import ScriptedPolicy

    ep = run_episode(world, ScriptedPolicy(), seed)
    h = hashlib.sha256()
    for step in ep.steps:
        h.update(step.image.tobytes())
        h.update(step.next_image.tobytes())
        h.update(step.action.tobytes())
        h.update(repr((step.reward, step.lifted_height)).encode())
    h.update(repr([(o.object_id, o.position, o.orientation) for o in ep.meta.objects]).encode())
    return h.hexdigest()


def test_same_seed_same_episode_in_any_order():
    seeds = [episode_seed(7, i) for i in range(4)]
    with ThreeBinWorld(domain="randomized", bins="multi") as a:
        forward = {s: _episode_digest(a, s) for s in seeds}
    with ThreeBinWorld(domain="randomized", bins="multi") as b:
        backward = {s: _episode_digest(b, s) for s in reversed(seeds)}
        again = _episode_digest(b, seeds[0])
    assert forward == backward
    assert again == forward[seeds[0]]
    assert len(set(forward.values())) == len(seeds)  # different seeds, different episodes


def test_an_episode_after_others_is_the_episode_of_a_fresh_world():
    """Episode 22 of base seed 1000 (train objects) is one whose grasp came out differently (after-grasp image)
    after any other episode in the same world, when the world reused its simulation across episodes:
    a worker's history changed its results."""
    seeds = [episode_seed(1000, i) for i in (22, 21, 23)]
    with ThreeBinWorld() as fresh:
        alone = _episode_digest(fresh, seeds[0])
    with ThreeBinWorld() as used:
        used.preload_objects()
        for before in seeds[1:]:
            _episode_digest(used, before)
            assert _episode_digest(used, seeds[0]) == alone


def test_bins_single_always_centre_multi_varies(sim_config):
    single = set()
    with ThreeBinWorld(bins="single") as w:
        for i in range(6):
            w.reset(episode_seed(1, i))
            single.add(w.scene.bin_index)
    with ThreeBinWorld(bins="multi") as w:
        multi = set()
        for i in range(12):
            w.reset(episode_seed(1, i))
            multi.add(w.scene.bin_index)
            # the robot stands before the chosen bin, within the configured jitter
            base = w.scene.base_pose
            assert abs(base.y - sim_config.world.bins.center_y(w.scene.bin_index)) <= sim_config.robot.base_jitter_xy
            assert abs(math.degrees(base.yaw)) <= sim_config.robot.base_jitter_yaw_deg + 1e-9
    assert single == {sim_config.world.bins.centre_index}
    assert multi == {0, 1, 2}


def test_bins_hold_objects_from_the_split(sim_config):
    lo, hi = sim_config.world.objects.per_bin
    with ThreeBinWorld(split="test") as w:
        w.reset(3)
        ids = {o.object_id for o in w.scene.objects}
        assert ids and all(i % 10 == 0 for i in ids)  # test objects end in 0
        for b in range(sim_config.world.bins.count):
            n = sum(o.bin_index == b for o in w.scene.objects)
            assert 1 <= n <= hi
    with ThreeBinWorld(split="train") as w:
        w.reset(3)
        assert all(o.object_id % 10 != 0 for o in w.scene.objects)


@pytest.mark.parametrize(
    "action, field",
    [
        (GraspAction(0.30, 0.0, 0.0), "x"),
        (GraspAction(0.60, 0.5, 0.0), "y"),
        (GraspAction(0.60, 0.0, 2.5), "yaw"),
        (GraspAction(0.60, 0.0, 0.0, 0.5), "z_offset"),
        (GraspAction(float("nan"), 0.0, 0.0), "x"),
        (GraspAction(0.60, float("inf"), 0.0), "y"),
        (GraspAction(0.60, 0.0, float("-inf")), "yaw"),
    ],
)
def test_bad_grasps_are_rejected_before_any_motion(sim_world, action, field):
    sim_world.reset(11)
    c = sim_world.client
    joints_before = [c.getJointState(sim_world._robot, j)[0] for j in sim_world._arm + sim_world._fingers]
    objects_before = [c.getBasePositionAndOrientation(o.uid) for o in sim_world.scene.objects]
    with pytest.raises(InvalidActionError, match=field):
        sim_world.execute(action)
    assert [c.getJointState(sim_world._robot, j)[0] for j in sim_world._arm + sim_world._fingers] == joints_before
    assert [c.getBasePositionAndOrientation(o.uid) for o in sim_world.scene.objects] == objects_before


def test_action_array_of_wrong_length_is_rejected():
    with pytest.raises(InvalidActionError, match="3 or 4 values"):
        GraspAction.from_array([0.6, 0.0])


def test_camera_model_matches_the_renderer(sim_world):
    """A marker placed at a known base-frame point shows up at the pixel the pinhole model predicts."""
    import pybullet as pb

    sim_world.reset(5)
    sim_world.remove_objects()
    c = sim_world.client
    target = np.array([0.66, -0.07, sim_world.config.world.bins.floor_z + 0.01])
    world_pt = sim_world.base_to_world(*target)
    vis = c.createVisualShape(pb.GEOM_SPHERE, radius=0.012, rgbaColor=[1, 0, 0, 1])
    c.createMultiBody(0, -1, vis, basePosition=world_pt.tolist())
    img = sim_world.render().astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert red.sum() >= 2
    v, u = np.nonzero(red)
    pos, rot = sim_world.camera_pose()
    expected = sim_world.intrinsics.project(((world_pt - pos) @ rot)[None])[0]
    assert np.hypot(u.mean() + 0.5 - expected[0], v.mean() + 0.5 - expected[1]) < 1.5


def test_camera_info_record_and_plane_projection(sim_config):
    intr = CameraIntrinsics.from_config(sim_config.camera)
    info = intr.as_camera_info()
    assert info["width"] == info["height"] == 64
    assert info["k"][0] == pytest.approx(32 / math.tan(math.radians(sim_config.camera.vertical_fov_deg) / 2))
    assert info["p"][2] == info["k"][2] == 32.0 and len(info["d"]) == 5
    proj = TablePlaneProjector(sim_config.camera)
    pts = np.array([[0.5, 0.1, 0.02], [0.7, -0.1, 0.02]])
    uv = proj.project(pts)
    assert np.allclose(proj.unproject(uv[:, 0], uv[:, 1], 0.02), pts[:, :2])
    # the configured look-at point is the image centre
    centre = proj.project(np.array([sim_config.camera.look_at]))[0]
    assert np.allclose(centre, [32, 32], atol=1e-6)


@pytest.mark.parametrize("size", [64, 128, 472])
def test_image_sizes(size):
    cfg = SimConfig.load(image_size=size)
    with ThreeBinWorld(cfg, domain="sim") as w:
        img = w.reset(2)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 10  # a scene, not a blank frame


def test_hand_placed_object_is_grasped(sim_world):
    sim_world.reset(21)
    sim_world.remove_objects(bin_index=sim_world.scene.bin_index)
    obj = sim_world.place_object(object_id=101, x=0.60, y=0.02, yaw=0.4)
    assert sim_world.objects_in_front() == [obj]
    decision = OraclePolicy().act(
        Observation(sim_world.render(), sim_world.bounds, np.random.default_rng(0), sim_world)
    )
    # the oracle aims at the object it was given
    assert np.hypot(decision.action[0] - 0.60, decision.action[1] - 0.02) < 0.04
    outcome = sim_world.execute(GraspAction.from_array(decision.action))
    assert outcome.success and outcome.grasped_object_id == 101
    assert outcome.lifted_height >= sim_world.config.robot.executor.success_height
    assert sim_world.objects_in_front() == []  # a grasped object is put away


def test_grasp_in_empty_space_fails(sim_world):
    sim_world.reset(21)
    sim_world.remove_objects(bin_index=sim_world.scene.bin_index)
    outcome = sim_world.execute(GraspAction(0.6, 0.0, 0.0))
    assert not outcome.success and outcome.grasped_object_id is None


def test_collision_hulls_are_simplified_but_keep_the_shape():
    """Objects collide with a hull of at most hull_points mesh vertices (contacts between big hulls
    dominate the physics cost); the simplified hull keeps the object's extent."""
    from pathlib import Path

    import pybullet_data

    from rlcg.sim import textures
    from rlcg.sim.objects import mesh_vertices

    cfg = SimConfig.load()
    k = cfg.world.objects.hull_points
    assert 8 <= k <= 64
    for oid in (0, 7, 423, 990):
        mesh = Path(pybullet_data.getDataPath()) / "random_urdfs" / f"{oid:03d}" / f"{oid:03d}.obj"
        full = mesh_vertices(mesh)
        hull = mesh_vertices(textures.single_hull_mesh_file(mesh, k))
        assert len(hull) == min(k, len(full))
        assert np.array_equal(hull, mesh_vertices(textures.single_hull_mesh_file(mesh, k)))  # deterministic
        # every simplified point is a mesh vertex, and the extent is kept to within 10%
        assert all(np.isclose(full, p, atol=1e-5).all(axis=1).any() for p in hull)
        ext_full, ext_hull = np.ptp(full, axis=0), np.ptp(hull, axis=0)
        assert np.all(ext_hull >= 0.9 * ext_full), (oid, ext_hull / ext_full)


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("robot.yaml", "waypoints: 5", "waypoints: 0", "waypoints must be at least 1"),
        ("world.yaml", "per_bin: [5, 5]", "per_bin: [5, 150]", "per_bin allows at most 100"),
        ("world.yaml", "time_step:", "time_step: 0 #", "time_step must be within"),
        ("world.yaml", "scale:", "scale: .nan #", "scale: expected a finite number"),
        ("camera.yaml", "far:", "far: 0.01 #", "0 < near < far"),
    ],
)
def test_config_values_that_would_break_the_world_are_refused(tmp_path, file, old, new, message):
    import shutil

    from rlcg.configio import ConfigError
    from rlcg.paths import config_dir
    from rlcg.sim.config import SimConfig

    root = tmp_path / "config"
    shutil.copytree(config_dir(), root)
    text = (root / file).read_text()
    assert old in text
    (root / file).write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        SimConfig.load(root)


def test_pybullet_banners_reach_neither_stdout_nor_stderr():
    """PyBullet's C code prints its build time on import and "argv[0]=" on connect; a user of
    `rlcg sim` or a `--json` command sees neither, and Python's own output still gets through."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from rlcg.sim.world import ThreeBinWorld\n"
        "world = ThreeBinWorld(image_size=32)\n"
        "world.reset(0)\n"
        "print('out-after'); print('err-after', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "out-after\n"
    assert done.stderr == "err-after\n"


def test_the_arm_keeps_the_inertia_of_its_collision_shapes(sim_config):
    """The simulated robot leaves the arm's collision meshes out (only the gripper touches the scene);
    PyBullet derives a link's inertia from them, so the world sets each link's inertia as the full
    robot description gives it."""
    import pybullet as pb
    from pybullet_utils.bullet_client import BulletClient

    from rlcg.sim.world import expand_robot_urdf

    full = BulletClient(connection_mode=pb.DIRECT)
    try:
        robot = full.loadURDF(str(expand_robot_urdf(sim_config)), useFixedBase=True)
        with ThreeBinWorld() as world:
            world.reset(0)
            assert full.getNumJoints(robot) == world.client.getNumJoints(world._robot)
            for link in range(full.getNumJoints(robot)):
                assert world.client.getDynamicsInfo(world._robot, link) == full.getDynamicsInfo(robot, link)
            assert full.getDynamicsInfo(robot, 1)[2][0] > 0.01  # lbr_link_1: a real arm link, not a frame
    finally:
        full.disconnect()
