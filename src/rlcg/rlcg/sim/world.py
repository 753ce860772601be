"""The PyBullet three-bin world: a KUKA iiwa with a parallel gripper in front of one of three bins.

One ``ThreeBinWorld`` owns one PyBullet physics client (DIRECT mode, no display). Every
``reset(seed)`` rebuilds the simulation from scratch, so an episode depends on its seed alone,
not on what the process simulated before: the same seed gives the same episode, bit for bit,
in any worker and in any order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pybullet_data

from rlcg import paths
from rlcg.errors import RlcgError
from rlcg.scratch import scratch_dir
from rlcg.sim import objects as objset
from rlcg.sim import textures
from rlcg.sim.camera import CameraIntrinsics, view_matrix
from rlcg.sim.config import SimConfig
from rlcg.sim.domains import Domain, DomainSample, load_domain
from rlcg.sim.geometry import Pose2D, matrix_from_quat, quat_from_matrix, rot_z, rpy_matrix, wrap_half_turn
from rlcg.sim.quiet import c_output_discarded

with c_output_discarded():
    import pybullet as pb
    from pybullet_utils.bullet_client import BulletClient

BinsMode = Literal["single", "multi"]

# Only the gripper touches the scene: the arm links move in free space above the bins. Their collision
# meshes are left out of the simulated robot, which makes every physics step several times cheaper and
# loading the robot (once per episode) four times faster.
GRIPPER_LINKS = frozenset({"gripper_palm", "gripper_finger_left", "gripper_finger_right"})


class InvalidActionError(RlcgError, ValueError):
    """A grasp pose outside the workspace bounds, or not finite. Nothing was executed."""


@dataclass(frozen=True)
class GraspAction:
    """A top-down grasp in the robot base frame: position (m), yaw (rad), height offset (m)."""

    x: float
    y: float
    yaw: float
    z_offset: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.yaw, self.z_offset], dtype=np.float64)

    @classmethod
    def from_array(cls, a) -> GraspAction:
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        if a.size not in (3, 4):
            raise InvalidActionError(f"a grasp action has 3 or 4 values (x, y, yaw[, z_offset]), got {a.size}")
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]) if a.size == 4 else 0.0)


@dataclass
class ObjectState:
    uid: int
    object_id: int
    bin_index: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]


@dataclass
class GraspOutcome:
    success: bool
    lifted_height: float  # highest rise of any object above the bin floor at the end of the lift (m)
    grasped_object_id: int | None
    tcp_reached: tuple[float, float, float]  # where the descent stopped (world frame)
    stopped_on_contact: bool


@dataclass
class Scene:
    """Ground truth of the current episode (for the oracle policy and episode metadata)."""

    seed: int
    bin_index: int
    base_pose: Pose2D
    objects: list[ObjectState] = field(default_factory=list)


_URDF_CACHE: dict[tuple, Path] = {}


def expand_robot_urdf(
    config: SimConfig, mesh_prefix: str | None = None, colliding_links: frozenset[str] | None = None
) -> Path:
    """Expand urdf/rlcg_iiwa.urdf.xacro with the config's camera mount into a cached URDF file;
    with ``colliding_links``, every other link loses its collision geometry."""
    import xacro

    if mesh_prefix is None:
        mesh_prefix = str(Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "meshes")
    cam = config.camera
    rpy = cam.mount_rpy()
    mappings = {
        "mesh_prefix": mesh_prefix,
        "camera_xyz": " ".join(f"{v:.6f}" for v in cam.mount_xyz),
        "camera_rpy": " ".join(f"{v:.6f}" for v in rpy),
        "finger_friction": f"{config.robot.gripper.finger_friction}",
        "finger_travel": f"{config.robot.gripper.max_opening / 2:.6f}",
    }
    src = paths.urdf_dir() / config.robot.urdf
    key = (str(src), src.stat().st_mtime_ns, tuple(sorted(mappings.items())), colliding_links)
    if key not in _URDF_CACHE:
        doc = xacro.process_file(str(src), mappings=mappings)
        if colliding_links is not None:
            names = {link.getAttribute("name") for link in doc.getElementsByTagName("link")}
            if not colliding_links <= names:
                raise RlcgError(f"{src} has no link {sorted(colliding_links - names)[0]!r}, which the gripper needs")
            for link in doc.getElementsByTagName("link"):
                if link.getAttribute("name") not in colliding_links:
                    for collision in link.getElementsByTagName("collision"):
                        link.removeChild(collision)
        out_dir = scratch_dir("urdf-")
        out = out_dir / "rlcg_iiwa.urdf"
        out.write_text(doc.toprettyxml(indent="  "))
        _URDF_CACHE[key] = out
    return _URDF_CACHE[key]


@functools.cache
def link_inertia(urdf: Path) -> dict[str, tuple[float, float, float]]:
    """Each link's local inertia diagonal as PyBullet derives it from the robot's collision shapes."""
    with c_output_discarded():
        client = BulletClient(connection_mode=pb.DIRECT)
    try:
        robot = client.loadURDF(str(urdf), useFixedBase=True)
        return {
            client.getJointInfo(robot, j)[12].decode(): tuple(client.getDynamicsInfo(robot, j)[2])
            for j in range(client.getNumJoints(robot))
        }
    finally:
        client.disconnect()


class ThreeBinWorld:
    """Three bins on a table, a KUKA iiwa placed in front of one of them, a camera on its base."""

    def __init__(
        self,
        config: SimConfig | None = None,
        domain: Domain | str = "sim",
        bins: BinsMode = "single",
        split: str = "train",
        image_size: int | None = None,
    ):
        if bins not in ("single", "multi"):
            raise ValueError(f"bins must be 'single' or 'multi', got {bins!r}")
        self.config = config if config is not None else SimConfig.load(image_size=image_size)
        if image_size is not None and config is not None:
            self.config = SimConfig(self.config.world, self.config.robot, self.config.camera.with_size(image_size))
        self.domain = load_domain(domain) if isinstance(domain, str) else domain
        self.bins_mode: BinsMode = bins
        self.split = split
        self.object_ids = objset.object_ids(self.config.world.objects, split)
        self._objects_root = objset.objects_root(self.config.world.objects)
        self._urdf = expand_robot_urdf(self.config, colliding_links=GRIPPER_LINKS)
        self._link_inertia = link_inertia(expand_robot_urdf(self.config))
        with c_output_discarded():
            self.client = BulletClient(connection_mode=pb.DIRECT)
        self.scene: Scene | None = None
        self._single_hull = os.environ.get("RLCG_HULL", "1") == "1"
        self.appearance: DomainSample | None = None
        self._robot = -1
        self._joint_index: dict[str, int] = {}
        self._link_index: dict[str, int] = {}

    # ------------------------------------------------------------------ properties
    @property
    def bounds(self):
        return self.config.robot.workspace

    @property
    def intrinsics(self) -> CameraIntrinsics:
        fov_scale = self.appearance.fov_scale if self.appearance is not None else 1.0
        return CameraIntrinsics.from_config(self.config.camera, fov_scale)

    # ------------------------------------------------------------------ episode set-up
    def reset(self, seed: int) -> np.ndarray:
        """Set up the scene of episode ``seed`` and return the first camera image."""
        seed = int(seed)
        scene_seq, look_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(scene_seq)
        self.appearance = self.domain.sample(np.random.default_rng(look_seq), self.config)
        self._build_static()
        self._load_robot()
        self._frozen: set[int] = set()

        bins_cfg = self.config.world.bins
        bin_index = bins_cfg.centre_index if self.bins_mode == "single" else int(rng.integers(bins_cfg.count))
        rcfg = self.config.robot
        jitter = rng.uniform(-1.0, 1.0, size=3)
        base = Pose2D(
            jitter[0] * rcfg.base_jitter_xy,
            bins_cfg.center_y(bin_index) + jitter[1] * rcfg.base_jitter_xy,
            math.radians(jitter[2] * rcfg.base_jitter_yaw_deg),
        )
        self.scene = Scene(seed=seed, bin_index=bin_index, base_pose=base)
        self._place_robot(base)
        self._spawn_objects(rng)
        self._settle(self.config.world.objects.settle_steps)
        self._drop_escaped_objects()
        self._freeze_other_bins()
        self._apply_appearance()
        return self.render()

    def _build_static(self) -> None:
        """A new simulation with the table, the trays and the physics settings, for every episode.

        Reusing one simulation across episodes (only creating and removing objects) was about a fifth
        cheaper, but Bullet keeps internal orders (of bodies, contact manifolds, solver rows) that
        removing bodies permutes, so an episode's physics depended slightly on the episodes run before
        it in the same process: with two workers an evaluation differed by an episode or so from run
        to run. Built from scratch, an episode depends on its seed alone (tests/test_world.py).
        """
        c = self.client
        c.resetSimulation()
        self._texture_ids: dict[Path, int] = {}
        self._shape_cache: dict[tuple, tuple[int, int]] = {}
        phys = self.config.world.physics
        c.setTimeStep(phys.time_step)
        c.setGravity(0, 0, phys.gravity)
        c.setPhysicsEngineParameter(numSolverIterations=phys.solver_iterations, deterministicOverlappingPairs=1)
        wcfg = self.config.world
        t = wcfg.table
        half = [t.size[0] / 2, t.size[1] / 2, t.size[2] / 2]
        self._table = c.createMultiBody(
            0,
            c.createCollisionShape(pb.GEOM_BOX, halfExtents=half),
            c.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=[*t.color, 1]),
            basePosition=[t.center_xy[0], t.center_xy[1], -half[2]],
        )
        self._trays = [self._make_tray(i) for i in range(wcfg.bins.count)]

    def _make_tray(self, index: int) -> int:
        c = self.client
        b = self.config.world.bins
        # (half extents, centre) of floor and four walls, in the tray frame on the table
        boxes = [([s / 2 for s in size], list(center)) for _name, size, center in b.tray_parts()]
        col = c.createCollisionShapeArray(
            [pb.GEOM_BOX] * 5, halfExtents=[x[0] for x in boxes], collisionFramePositions=[x[1] for x in boxes]
        )
        vis = c.createVisualShapeArray(
            [pb.GEOM_BOX] * 5,
            halfExtents=[x[0] for x in boxes],
            visualFramePositions=[x[1] for x in boxes],
            rgbaColors=[[*b.color, 1]] * 5,
        )
        return c.createMultiBody(0, col, vis, basePosition=[b.center_x, b.center_y(index), 0])

    def _load_robot(self) -> None:
        c = self.client
        self._robot = c.loadURDF(str(self._urdf), useFixedBase=True)
        self._joint_index.clear()
        self._link_index.clear()
        for j in range(c.getNumJoints(self._robot)):
            info = c.getJointInfo(self._robot, j)
            self._joint_index[info[1].decode()] = j
            self._link_index[info[12].decode()] = j
            # PyBullet takes a link's inertia from its collision shapes: the arm's, left out, set it
            c.changeDynamics(self._robot, j, localInertiaDiagonal=self._link_inertia[info[12].decode()])
        rcfg = self.config.robot
        self._arm = [self._joint_index[n] for n in rcfg.arm_joints]
        self._fingers = [self._joint_index[n] for n in rcfg.finger_joints]
        self._tcp = self._link_index[rcfg.tcp_link]
        self._camera_link = self._link_index[rcfg.camera_link]
        self._movable = [j for j in range(c.getNumJoints(self._robot)) if c.getJointInfo(self._robot, j)[2] != 4]
        lim = [c.getJointInfo(self._robot, j)[8:10] for j in self._movable]
        self._lower = [x[0] for x in lim]
        self._upper = [x[1] for x in lim]
        self._ranges = [x[1] - x[0] for x in lim]
        for j in self._fingers:
            c.changeDynamics(self._robot, j, lateralFriction=rcfg.gripper.finger_friction, frictionAnchor=1)
        # The robot never sleeps: a sleep timer would make a grasp depend on how long the arm had
        # been still before it.
        for link in range(-1, c.getNumJoints(self._robot)):
            c.changeDynamics(self._robot, link, activationState=pb.ACTIVATION_STATE_DISABLE_SLEEPING)

    def _place_robot(self, base: Pose2D) -> None:
        self.client.resetBasePositionAndOrientation(
            self._robot, [base.x, base.y, 0.0], quat_from_matrix(rot_z(base.yaw))
        )
        self._set_arm(self.config.robot.home_joints)
        self._set_fingers(self.config.robot.gripper.max_opening / 2)

    def _set_arm(self, joints) -> None:
        for j, q in zip(self._arm, joints):
            self.client.resetJointState(self._robot, j, float(q))
        self.client.setJointMotorControlArray(
            self._robot,
            self._arm,
            pb.POSITION_CONTROL,
            targetPositions=list(joints),
            forces=[self.config.robot.executor.arm_force] * len(self._arm),
        )

    def _set_fingers(self, gap: float) -> None:
        for j in self._fingers:
            self.client.resetJointState(self._robot, j, gap)
        self._command_fingers(gap)

    def _command_fingers(self, gap: float) -> None:
        g = self.config.robot.gripper
        for j in self._fingers:
            self.client.setJointMotorControl2(
                self._robot, j, pb.POSITION_CONTROL, targetPosition=gap, force=g.force, maxVelocity=g.speed
            )

    def _spawn_objects(self, rng: np.random.Generator) -> None:
        c = self.client
        ocfg = self.config.world.objects
        bcfg = self.config.world.bins
        floor = bcfg.floor_z
        assert self.scene is not None and self.appearance is not None
        for b in range(bcfg.count):
            n = int(rng.integers(ocfg.per_bin[0], ocfg.per_bin[1] + 1))
            chosen = rng.choice(len(self.object_ids), size=n, replace=False)
            # Objects start in the air without overlapping: one whose footprint meets an earlier
            # one's starts above it (interpenetration would fling objects through the tray floor).
            placed: list[tuple[float, float, float, float]] = []  # x, y, z, radius
            for idx in chosen:
                oid = self.object_ids[int(idx)]
                model = objset.load_model(self._objects_root, oid)
                scale = [model.mesh_scale * ocfg.scale] * 3
                radius = objset.bounding_radius(model.mesh_path) * scale[0]
                hx = bcfg.inner_size[0] / 2 - ocfg.spawn_margin
                hy = bcfg.inner_size[1] / 2 - ocfg.spawn_margin
                x = bcfg.center_x + rng.uniform(-hx, hx)
                y = bcfg.center_y(b) + rng.uniform(-hy, hy)
                z = floor + radius + rng.uniform(*ocfg.drop_height)
                for px, py, pz, pr in placed:
                    if math.hypot(x - px, y - py) < radius + pr:
                        z = max(z, pz + pr + radius + 0.005)
                placed.append((x, y, z, radius))
                pos = [x, y, z]
                orn = c.getQuaternionFromEuler(rng.uniform(-math.pi, math.pi, size=3).tolist())
                self._create_object(model, b, pos, orn)

    def _create_object(self, model: objset.ObjectModel, bin_index: int, pos, orn) -> ObjectState:
        assert self.scene is not None and self.appearance is not None
        c = self.client
        ocfg = self.config.world.objects
        rgba, tex = self.appearance.object_look(model)
        col, vis = self._object_shapes(model, model.mesh_scale * ocfg.scale, textured=tex is not None)
        uid = c.createMultiBody(ocfg.mass, col, vis, basePosition=list(pos), baseOrientation=list(orn))
        texture = {"textureUniqueId": self.texture_id(tex)} if tex is not None else {}
        c.changeVisualShape(uid, -1, rgbaColor=list(rgba), **texture)
        c.changeDynamics(
            uid,
            -1,
            lateralFriction=ocfg.lateral_friction,
            rollingFriction=ocfg.rolling_friction,
            spinningFriction=ocfg.spinning_friction,
            angularDamping=ocfg.angular_damping,
        )
        obj = ObjectState(uid, model.object_id, bin_index, tuple(pos), tuple(orn))
        self.scene.objects.append(obj)
        return obj

    def preload_objects(self) -> None:
        """Prepare the mesh files of every object of the split now (its collision hull and, in textured
        domains, its UV-mapped copy; written once per process) rather than on first use; worth it for
        long runs."""
        textured = self.domain.spec.objects.texture is not None or self.domain.spec.objects.random_texture
        for oid in self.object_ids:
            model = objset.load_model(self._objects_root, oid)
            if self._single_hull:
                textures.single_hull_mesh_file(model.mesh_path, self.config.world.objects.hull_points)
            if textured:
                textures.uv_mesh_file(model.mesh_path)
            objset.bounding_radius(model.mesh_path)  # spawning needs it; cached per process

    def _object_shapes(self, model: objset.ObjectModel, scale: float, textured: bool) -> tuple[int, int]:
        """Collision and visual shape of an object model, created once per episode and shared."""
        key = (model.object_id, scale, textured)
        if key not in self._shape_cache:
            c = self.client
            hull_points = self.config.world.objects.hull_points
            col_mesh = (
                textures.single_hull_mesh_file(model.mesh_path, hull_points) if self._single_hull else model.mesh_path
            )
            col = c.createCollisionShape(pb.GEOM_MESH, fileName=str(col_mesh), meshScale=[scale] * 3)
            vis_mesh = textures.uv_mesh_file(model.mesh_path) if textured else model.mesh_path
            vis = c.createVisualShape(pb.GEOM_MESH, fileName=str(vis_mesh), meshScale=[scale] * 3)
            self._shape_cache[key] = (col, vis)
        return self._shape_cache[key]

    def _settle(self, max_steps: int, check_every: int = 10, still_speed: float = 0.01) -> None:
        """Step until every dynamic object is at rest (checked every few steps) or ``max_steps``.

        Objects coming to rest need neither the fine time step nor the many solver iterations of
        a grasp: settling runs with coarser steps and fewer iterations (config physics.settle_*).
        """
        c = self.client
        phys = self.config.world.physics
        c.setTimeStep(phys.time_step * phys.settle_step_factor)
        c.setPhysicsEngineParameter(numSolverIterations=phys.settle_solver_iterations)
        try:
            self._step_until_still(max_steps, check_every, still_speed)
        finally:
            c.setTimeStep(phys.time_step)
            c.setPhysicsEngineParameter(numSolverIterations=phys.solver_iterations)
        self._refresh_object_states()

    def _step_until_still(self, max_steps: int, check_every: int, still_speed: float) -> None:
        c = self.client
        scene = self.scene
        assert scene is not None
        for step in range(1, max_steps + 1):
            c.stepSimulation()
            if step % check_every == 0:
                for obj in scene.objects:
                    if obj.uid in self._frozen:
                        continue
                    lin, ang = c.getBaseVelocity(obj.uid)
                    if max(map(abs, lin)) > still_speed or max(map(abs, ang)) > 10 * still_speed:
                        break
                else:
                    break

    def _freeze(self, uid: int) -> None:
        self.client.changeDynamics(uid, -1, mass=0.0)
        self._frozen.add(uid)

    def _freeze_other_bins(self) -> None:
        """Objects in the bins the robot is not in front of become static once the scene has
        settled: the gripper cannot reach them, and simulating them would make every physics step
        several times dearer. (Freezing them one by one while others still move would be cheaper
        still, but makes an episode depend on the episodes simulated before it.)"""
        assert self.scene is not None
        for obj in self.scene.objects:
            if obj.bin_index != self.scene.bin_index and obj.uid not in self._frozen:
                self._freeze(obj.uid)

    def _refresh_object_states(self) -> None:
        assert self.scene is not None
        for obj in self.scene.objects:
            pos, orn = self.client.getBasePositionAndOrientation(obj.uid)
            obj.position, obj.orientation = tuple(pos), tuple(orn)

    def _drop_escaped_objects(self) -> None:
        """Objects that bounced out of their bin are removed: a bin's content is what lies inside it."""
        assert self.scene is not None
        b = self.config.world.bins
        keep = []
        for obj in self.scene.objects:
            dx = abs(obj.position[0] - b.center_x)
            dy = abs(obj.position[1] - b.center_y(obj.bin_index))
            inside = (
                dx < b.inner_size[0] / 2 and dy < b.inner_size[1] / 2 and 0.0 < obj.position[2] < b.wall_height + 0.05
            )
            if inside:
                keep.append(obj)
            else:
                self.client.removeBody(obj.uid)
        self.scene.objects = keep

    def texture_id(self, path: Path) -> int:
        """PyBullet texture id of an image file, loaded once per episode's simulation."""
        if path not in self._texture_ids:
            self._texture_ids[path] = self.client.loadTexture(str(path))
        return self._texture_ids[path]

    def _apply_appearance(self) -> None:
        assert self.appearance is not None
        self.appearance.apply(self)

    # ------------------------------------------------------------------ camera
    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position and rotation of the (jittered) optical frame."""
        state = self.client.getLinkState(self._robot, self._camera_link, computeForwardKinematics=True)
        pos = np.array(state[4])
        rot = matrix_from_quat(state[5])
        if self.appearance is not None:
            off_pos, off_rot = self.appearance.camera_offset
            pos = pos + rot @ off_pos
            rot = rot @ off_rot
        return pos, rot

    def render(self) -> np.ndarray:
        """The camera image (H x W x 3, uint8) as the current domain renders it."""
        assert self.appearance is not None, "call reset() first"
        cam = self.config.camera
        intr = self.intrinsics
        pos, rot = self.camera_pose()
        look = self.appearance.light
        _, _, rgba, _, _ = self.client.getCameraImage(
            intr.width,
            intr.height,
            viewMatrix=view_matrix(pos, rot),
            projectionMatrix=intr.projection_matrix(cam.near, cam.far),
            lightDirection=list(look.direction),
            lightColor=list(look.color),
            lightDistance=look.distance,
            lightAmbientCoeff=look.ambient,
            lightDiffuseCoeff=look.diffuse,
            lightSpecularCoeff=look.specular,
            shadow=int(look.shadows),
            renderer=pb.ER_TINY_RENDERER,
        )
        image = np.asarray(rgba, dtype=np.uint8).reshape(intr.height, intr.width, 4)[:, :, :3]
        return self.appearance.postprocess(np.ascontiguousarray(image))

    # ------------------------------------------------------------------ grasping
    def check_action(self, action: GraspAction) -> GraspAction:
        """Reject non-finite or out-of-bounds grasps with a message naming the offending value."""
        values = action.as_array()
        names = ("x", "y", "yaw", "z_offset")
        for name, v in zip(names, values):
            if not math.isfinite(v):
                raise InvalidActionError(f"grasp {name} is {v}: not a finite number; nothing was executed")
        ws = self.bounds
        for name, v, lo, hi in zip(names, values, ws.low, ws.high):
            if not lo - 1e-9 <= v <= hi + 1e-9:
                raise InvalidActionError(
                    f"grasp {name}={v:.4f} is outside the workspace [{lo:.4f}, {hi:.4f}]; nothing was executed"
                )
        return action

    def base_to_world(self, x: float, y: float, z: float) -> np.ndarray:
        assert self.scene is not None
        wx, wy = self.scene.base_pose.to_world(np.array([x, y]))
        return np.array([wx, wy, z])

    def _tcp_orientation(self, yaw_world: float) -> tuple[float, float, float, float]:
        # TCP z axis points down; fingers close along the TCP y axis, turned by the grasp yaw.
        return quat_from_matrix(rot_z(yaw_world) @ rpy_matrix(math.pi, 0.0, 0.0))

    def _ik(self, pos: np.ndarray, orn) -> list[float]:
        c = self.client
        rcfg = self.config.robot
        rest = [c.getJointState(self._robot, j)[0] for j in self._movable]
        for k, j in enumerate(self._movable):
            if j in self._arm:
                rest[k] = rcfg.ik_rest_joints[self._arm.index(j)]
        sol = c.calculateInverseKinematics(
            self._robot,
            self._tcp,
            pos.tolist(),
            orn,
            lowerLimits=self._lower,
            upperLimits=self._upper,
            jointRanges=self._ranges,
            restPoses=rest,
            maxNumIterations=rcfg.executor.ik_iterations,
            residualThreshold=1e-5,
        )
        return [sol[self._movable.index(j)] for j in self._arm]

    def tcp_position(self) -> np.ndarray:
        return np.array(self.client.getLinkState(self._robot, self._tcp, computeForwardKinematics=True)[4])

    def _fingers_blocked(self, bodies: set[int]) -> bool:
        """A finger presses down on one of ``bodies`` (a contact whose normal is mostly vertical);
        fingers sliding along an object's side do not count."""
        for j in self._fingers:
            for cp in self.client.getContactPoints(bodyA=self._robot, linkIndexA=j):
                if cp[2] in bodies and abs(cp[7][2]) > 0.7 and cp[9] > 1.0:
                    return True
        return False

    def _bodies_held(self) -> set[int]:
        """Objects in contact with both fingers."""
        sets = []
        for j in self._fingers:
            sets.append({cp[2] for cp in self.client.getContactPoints(bodyA=self._robot, linkIndexA=j)})
        return sets[0] & sets[1]

    def execute(self, action: GraspAction) -> GraspOutcome:
        """Approach above, descend, close, lift; success if an object is lifted and still held.

        The approach move happens in free space above the bins and is not simulated (the arm is
        placed at the pre-grasp configuration); descent, closing and lifting are simulated.
        """
        assert self.scene is not None, "call reset() first"
        self.check_action(action)
        c = self.client
        ex = self.config.robot.executor
        floor = self.config.world.bins.floor_z
        yaw_world = wrap_half_turn(action.yaw + self.scene.base_pose.yaw)
        orn = self._tcp_orientation(yaw_world)
        grasp = self.base_to_world(action.x, action.y, floor + ex.grasp_depth + action.z_offset)
        above = grasp + np.array([0.0, 0.0, ex.approach_height])

        # Pre-grasp: IK twice from the rest pose (the second pass refines from the first).
        self._set_arm(self.config.robot.ik_rest_joints)
        for _ in range(2):
            self._set_arm(self._ik(above, orn))
        self._set_fingers(self.config.robot.gripper.max_opening / 2)

        object_uids = {o.uid for o in self.scene.objects}
        stopped = False
        # Descend along a straight line; a guarded move stops when a finger touches an object.
        waypoints = ex.waypoints
        per = max(1, ex.descend_steps // waypoints)
        for w in range(1, waypoints + 1):
            target = above + (grasp - above) * (w / waypoints)
            self._command_arm(self._ik(target, orn))
            for _ in range(per):
                c.stepSimulation()
            if ex.contact_stop and self._fingers_blocked(object_uids):
                stopped = True
                break
        if not stopped:  # the position-controlled arm lags its target: let it arrive
            for _ in range(ex.descend_steps):
                if np.linalg.norm(self.tcp_position() - grasp) < 0.003:
                    break
                c.stepSimulation()
                if ex.contact_stop and self._fingers_blocked(object_uids):
                    stopped = True
                    break
        reached = self.tcp_position()
        self._command_arm([c.getJointState(self._robot, j)[0] for j in self._arm])

        self._command_fingers(0.0)
        for _ in range(ex.close_steps):
            c.stepSimulation()

        lift_to = reached + np.array([0.0, 0.0, ex.lift_height])
        per = max(1, ex.lift_steps // waypoints)
        for w in range(1, waypoints + 1):
            target = reached + (lift_to - reached) * (w / waypoints)
            self._command_arm(self._ik(target, orn))
            for _ in range(per):
                c.stepSimulation()
        for _ in range(ex.hold_steps):
            c.stepSimulation()

        self._refresh_object_states()
        held = self._bodies_held() & object_uids
        best_rise, grasped = 0.0, None
        for obj in self.scene.objects:
            rise = obj.position[2] - floor
            if obj.uid in held and rise > best_rise:
                best_rise, grasped = rise, obj
        lifted_height = max((o.position[2] - floor for o in self.scene.objects), default=0.0)
        success = grasped is not None and best_rise >= ex.success_height
        outcome = GraspOutcome(
            success=bool(success),
            lifted_height=float(lifted_height),
            grasped_object_id=grasped.object_id if success and grasped is not None else None,
            tcp_reached=tuple(float(v) for v in reached),
            stopped_on_contact=stopped,
        )
        self._finish_attempt(grasped if success else None)
        return outcome

    def _command_arm(self, joints) -> None:
        self.client.setJointMotorControlArray(
            self._robot,
            self._arm,
            pb.POSITION_CONTROL,
            targetPositions=list(joints),
            forces=[self.config.robot.executor.arm_force] * len(self._arm),
        )

    def _finish_attempt(self, grasped: ObjectState | None) -> None:
        """Put a grasped object away (out of the scene), return home, let the bin come to rest."""
        assert self.scene is not None
        if grasped is not None:
            self.client.removeBody(grasped.uid)
            self.scene.objects = [o for o in self.scene.objects if o.uid != grasped.uid]
        self._set_arm(self.config.robot.home_joints)
        self._set_fingers(self.config.robot.gripper.max_opening / 2)
        self._settle(30)
        self._drop_escaped_objects()

    # ------------------------------------------------------------------ hand-made scenes
    def remove_objects(self, bin_index: int | None = None) -> None:
        """Take every object (of one bin, or all) out of the scene."""
        assert self.scene is not None, "call reset() first"
        for obj in [o for o in self.scene.objects if bin_index is None or o.bin_index == bin_index]:
            self.client.removeBody(obj.uid)
            self.scene.objects.remove(obj)

    def place_object(self, object_id: int, x: float, y: float, yaw: float = 0.0, settle: bool = True) -> ObjectState:
        """Drop object ``object_id`` (of the object set) at (x, y) of the robot base frame into the bin
        in front, upright-ish with the given yaw, and let it come to rest."""
        assert self.scene is not None and self.appearance is not None, "call reset() first"
        c = self.client
        model = objset.load_model(self._objects_root, object_id)
        scale = model.mesh_scale * self.config.world.objects.scale
        wx, wy, _ = self.base_to_world(x, y, 0.0)
        z = self.config.world.bins.floor_z + objset.bounding_radius(model.mesh_path) * scale + 0.005
        orn = c.getQuaternionFromEuler([0.0, 0.0, yaw + self.scene.base_pose.yaw])
        obj = self._create_object(model, self.scene.bin_index, (wx, wy, z), orn)
        if settle:
            self._settle(self.config.world.objects.settle_steps)
        return obj

    # ------------------------------------------------------------------ ground truth
    def objects_in_front(self) -> list[ObjectState]:
        assert self.scene is not None
        return [o for o in self.scene.objects if o.bin_index == self.scene.bin_index]

    def object_points_base(self, obj: ObjectState) -> np.ndarray:
        """The object's collision-mesh vertices in the robot base frame (N x 3)."""
        assert self.scene is not None
        model = objset.load_model(self._objects_root, obj.object_id)
        verts = objset.mesh_vertices(model.mesh_path) * (model.mesh_scale * self.config.world.objects.scale)
        world = verts @ matrix_from_quat(obj.orientation).T + np.asarray(obj.position)
        xy = self.scene.base_pose.to_base(world[:, :2])
        return np.column_stack([xy, world[:, 2]])

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(pb.error):
                self.client.disconnect()
            self.client = None  # type: ignore[assignment]

    def __enter__(self) -> ThreeBinWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
