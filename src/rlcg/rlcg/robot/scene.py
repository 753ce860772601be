"""The fixed obstacles around the robot, as boxes for MoveIt's planning scene.

The executor checks its three grasp waypoints against the workspace box, but the free-space moves
between them and home (approach, return) are planned by OMPL, which avoids only what the planning
scene holds. Without these boxes it would route the arm through the table, a bin wall or the camera.
They come from the same file as the simulated worlds (config/world.yaml), in the robot base frame,
with the base in front of the centre bin as in the executor's workspace box. The camera is not
among them: it is a link of the robot description (rlcg_tool.xacro, with a collision box), so MoveIt
keeps the arm off it wherever it is calibrated to be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlcg.sim.config import SimConfig

TABLE_CLEARANCE = 0.005  # the table's box stops this far under the base, which stands on the table top


@dataclass(frozen=True)
class CollisionBox:
    """An axis-aligned box in the robot base frame: its name, full size and centre (m)."""

    name: str
    size: tuple[float, float, float]
    center: tuple[float, float, float]

    def contains(self, point) -> bool:
        return all(abs(float(p) - c) <= s / 2 for p, c, s in zip(point, self.center, self.size))


def collision_boxes(config: SimConfig) -> list[CollisionBox]:
    """The table and every bin's floor and walls."""
    w = config.world
    b = w.bins
    base_y = b.center_y(b.centre_index)  # the base frame's origin, in the world frame
    t = w.table
    top = -TABLE_CLEARANCE
    boxes = [
        CollisionBox(
            "table", (t.size[0], t.size[1], t.size[2]), (t.center_xy[0], t.center_xy[1] - base_y, top - t.size[2] / 2)
        )
    ]
    for i in range(b.count):
        cx, cy = b.center_x, b.center_y(i) - base_y
        for name, size, (dx, dy, z) in b.tray_parts():  # as PyBullet's trays and Gazebo's
            boxes.append(CollisionBox(f"bin_{i}_{name}", size, (cx + dx, cy + dy, z)))
    return boxes


# The open gripper around its TCP, from urdf/rlcg_tool.xacro (tests/test_robot_scene.py checks them):
# gripper frame x across the fingers' width, y along their travel, z out of the gripper (down at a grasp).
FINGER_HALF = (0.0125, 0.006)  # half the finger box in x and y
FINGER_Z = (-0.015, 0.055)  # the fingers span these heights above the TCP (tips 15 mm below it)
PALM_HALF = (0.025, 0.075)
PALM_Z = (0.055, 0.115)


def _overlap(center, axes, half, box: CollisionBox) -> bool:
    """Whether a rectangle in the table plane (centre, unit axes, half sizes) overlaps ``box``'s
    footprint (separating axes: the box's two and the rectangle's two)."""
    d = np.asarray(box.center[:2]) - center
    box_half = np.asarray(box.size[:2]) / 2
    for n in (np.array([1.0, 0.0]), np.array([0.0, 1.0]), *axes):
        reach = half[0] * abs(axes[0] @ n) + half[1] * abs(axes[1] @ n) + box_half @ np.abs(n)
        if abs(d @ n) >= reach:
            return False
    return True


def gripper_obstacle(tcp: np.ndarray, rotation: np.ndarray, opening: float, boxes: list[CollisionBox]) -> str | None:
    """The first box that the open gripper at the TCP pose (``tcp``, top-down ``rotation``) would
    touch, or None. MoveIt would refuse the straight descent into such a pose after the arm had
    already moved to the pre-grasp; the executor refuses the goal before anything moves."""
    ux, uy = np.asarray(rotation)[:2, 0], np.asarray(rotation)[:2, 1]
    axes = (ux / np.linalg.norm(ux), uy / np.linalg.norm(uy))
    xy, z = np.asarray(tcp[:2], dtype=float), float(tcp[2])
    parts = [  # (name, centre, half sizes, height range): the fingers open to ``opening`` between their pads
        *(
            (f"finger {side}", xy + side * (opening / 2 + FINGER_HALF[1]) * axes[1], FINGER_HALF, FINGER_Z)
            for side in (1, -1)
        ),
        ("palm", xy, PALM_HALF, PALM_Z),
    ]
    for box in boxes:
        low, high = box.center[2] - box.size[2] / 2, box.center[2] + box.size[2] / 2
        for name, center, half, (z0, z1) in parts:
            if z + z0 < high and z + z1 > low and _overlap(center, axes, half, box):
                return f"the open gripper's {name} would hit {box.name}"
    return None
