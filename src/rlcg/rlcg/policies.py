"""Grasping policies: the interface every policy implements, and the three scripted ones.

A policy maps an ``Observation`` (the camera image, plus the workspace bounds and a random
stream) to a ``Decision`` (a grasp pose in the robot base frame and, for learned policies,
its Q value). ``oracle`` and ``scripted`` also read the ground truth of the simulated scene,
which a learned policy never sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rlcg.sim.config import WorkspaceBounds
from rlcg.sim.geometry import wrap_half_turn

if TYPE_CHECKING:
    from rlcg.sim.world import ThreeBinWorld


@dataclass
class Observation:
    image: np.ndarray  # H x W x 3 uint8
    bounds: WorkspaceBounds
    rng: np.random.Generator
    world: ThreeBinWorld | None = None  # ground truth; only scripted policies may look


@dataclass
class Decision:
    action: np.ndarray  # x, y, yaw, z_offset in the robot base frame
    q_value: float = float("nan")


class Policy(Protocol):
    name: str

    def act(self, obs: Observation) -> Decision: ...


def clip_to_bounds(action: np.ndarray, bounds: WorkspaceBounds) -> np.ndarray:
    """The action inside the workspace. A parallel gripper is the same turned by pi, so the yaw is
    first turned into the half-turn that starts at the lower yaw bound (with the default bounds,
    [-pi/2, pi/2)); a yaw the bounds allow stays the same grasp, whatever half-turn they cover."""
    a = np.asarray(action, dtype=np.float64).copy()
    a[2] = bounds.yaw[0] + (a[2] - bounds.yaw[0]) % math.pi
    return np.clip(a, bounds.low, bounds.high)


class RandomPolicy:
    """Uniform over the workspace (position and yaw; default height)."""

    name = "random"

    def act(self, obs: Observation) -> Decision:
        b = obs.bounds
        a = np.array([obs.rng.uniform(*b.x), obs.rng.uniform(*b.y), obs.rng.uniform(*b.yaw), 0.0], dtype=np.float64)
        return Decision(a)


@dataclass(frozen=True)
class GraspCandidate:
    object_uid: int
    action: np.ndarray
    width: float  # object extent across the fingers (m)
    top: float  # highest point above the bin floor (m)
    blocked: bool  # another object lies where a finger would land


class OraclePolicy:
    """The best grasp the ground truth allows.

    For each object in the bin in front, its mesh vertices (in the base frame) give its footprint.
    A grasp closes the fingers across one of the footprint's principal axes (the narrow one first)
    at the centre of the extent, shifted if needed so that both open fingers land inside the bin.
    Grasps whose finger footprints are free of other objects win; among those, the object whose
    top is highest (nothing lies on it), then the narrowest.
    """

    name = "oracle"

    def __init__(
        self, opening_margin: float = 0.85, finger_half_width: float = 0.0125, finger_thickness: float = 0.012
    ):
        self.opening_margin = opening_margin
        self.finger_half_width = finger_half_width
        self.finger_thickness = finger_thickness

    def candidates(self, world: ThreeBinWorld) -> list[GraspCandidate]:
        floor = world.config.world.bins.floor_z
        opening = world.config.robot.gripper.max_opening
        bins = world.config.world.bins
        scene = world.scene
        assert scene is not None
        # The bin interior, in the base frame, as the centre and half sizes of a rectangle.
        centre_w = np.array([bins.center_x, bins.center_y(scene.bin_index)])
        bin_centre = scene.base_pose.to_base(centre_w)
        bin_half = np.array(bins.inner_size) / 2
        bin_yaw = -scene.base_pose.yaw
        objs = world.objects_in_front()
        points = {o.uid: world.object_points_base(o) for o in objs}
        out = []
        for obj in objs:
            pts = points[obj.uid]
            xy = pts[:, :2]
            centre = xy.mean(axis=0)
            _, evecs = np.linalg.eigh(np.cov((xy - centre).T))
            for axis_along, axis_across in ((evecs[:, 1], evecs[:, 0]), (evecs[:, 0], evecs[:, 1])):
                along = (xy - centre) @ axis_along
                across = (xy - centre) @ axis_across
                width = float(across.max() - across.min())
                if width > opening * self.opening_margin:
                    continue
                mid = (
                    centre
                    + axis_along * (along.max() + along.min()) / 2
                    + axis_across * (across.max() + across.min()) / 2
                )
                slack = max(0.0, (opening - width) / 2 - 0.008)
                shift = self._inside_shift(mid, axis_across, opening, slack, bin_centre, bin_half, bin_yaw)
                if shift is None:
                    continue
                grasp_xy = mid + shift * axis_across
                # The TCP yaw that closes the fingers along ``axis_across`` is the angle of ``axis_along``.
                yaw = wrap_half_turn(math.atan2(axis_along[1], axis_along[0]))
                action = clip_to_bounds(np.array([grasp_xy[0], grasp_xy[1], yaw, 0.0]), world.bounds)
                blocked = any(
                    self._under_fingers(points[o.uid], action, opening, floor) for o in objs if o.uid != obj.uid
                )
                out.append(GraspCandidate(obj.uid, action, width, float(pts[:, 2].max() - floor), blocked))
        return out

    def _finger_centres(self, xy: np.ndarray, across: np.ndarray, opening: float) -> tuple[np.ndarray, ...]:
        d = opening / 2 + self.finger_thickness / 2
        return xy + d * across, xy - d * across

    def _inside_shift(self, mid, across, opening, slack, bin_centre, bin_half, bin_yaw) -> float | None:
        """Smallest shift along ``across`` (within +-slack) that puts both fingers inside the bin."""
        c, s = math.cos(bin_yaw), math.sin(bin_yaw)
        rot = np.array([[c, -s], [s, c]])
        margin = self.finger_thickness / 2 + 0.004
        for shift in sorted(np.linspace(-slack, slack, 9), key=abs):
            ok = True
            for f in self._finger_centres(mid + shift * across, across, opening):
                local = rot.T @ (f - bin_centre)
                if np.any(np.abs(local) > bin_half - margin):
                    ok = False
                    break
            if ok:
                return float(shift)
        return None

    def _under_fingers(self, pts: np.ndarray, action: np.ndarray, opening: float, floor: float) -> bool:
        yaw = action[2]
        across = np.array([-math.sin(yaw), math.cos(yaw)])
        along = np.array([math.cos(yaw), math.sin(yaw)])
        high = pts[pts[:, 2] > floor + 0.012, :2]
        for f in self._finger_centres(action[:2], across, opening):
            rel = high - f
            inside = (np.abs(rel @ across) < self.finger_thickness / 2 + 0.006) & (
                np.abs(rel @ along) < self.finger_half_width + 0.006
            )
            if inside.any():
                return True
        return False

    def act(self, obs: Observation) -> Decision:
        if obs.world is None:
            raise ValueError("the oracle policy needs the simulated world's ground truth")
        cands = self.candidates(obs.world)
        if not cands:
            return RandomPolicy().act(obs)
        best = max(cands, key=lambda c: (not c.blocked, round(c.top, 2), -c.width))
        return Decision(best.action.copy(), q_value=1.0)


class ScriptedPolicy:
    """The oracle's grasp with Gaussian noise: data with both outcomes for training."""

    name = "scripted"

    def __init__(self, position_noise: float = 0.025, yaw_noise: float = 0.6):
        self.position_noise = position_noise
        self.yaw_noise = yaw_noise
        self._oracle = OraclePolicy()

    def act(self, obs: Observation) -> Decision:
        base = self._oracle.act(obs).action
        noise = np.array(
            [
                obs.rng.normal(0, self.position_noise),
                obs.rng.normal(0, self.position_noise),
                obs.rng.normal(0, self.yaw_noise),
                0.0,
            ]
        )
        return Decision(clip_to_bounds(base + noise, obs.bounds))


class ExploringPolicy:
    """Epsilon-greedy exploration for on-policy data: with probability ``epsilon`` a decision is
    random (uniform over the workspace), otherwise it is the wrapped policy's."""

    def __init__(self, policy: Policy, epsilon: float):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"exploration epsilon must be within [0, 1], got {epsilon}")
        self.policy, self.epsilon = policy, epsilon
        self.name = policy.name

    def act(self, obs: Observation) -> Decision:
        if obs.rng.random() < self.epsilon:
            return RandomPolicy().act(obs)
        return self.policy.act(obs)


SCRIPTED_POLICIES = {"random": RandomPolicy, "oracle": OraclePolicy, "scripted": ScriptedPolicy}
