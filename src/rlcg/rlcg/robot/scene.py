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
    ix, iy = b.inner_size[0] / 2, b.inner_size[1] / 2
    th, h = b.wall_thickness, b.wall_height
    parts = [  # as the PyBullet trays and the Gazebo world (rlcg.robot.gz_world) build them
        ("floor", (2 * (ix + th), 2 * (iy + th), b.floor_thickness), (0.0, 0.0, b.floor_thickness / 2)),
        ("wall_front", (th, 2 * (iy + th), h), (ix + th / 2, 0.0, h / 2)),
        ("wall_back", (th, 2 * (iy + th), h), (-ix - th / 2, 0.0, h / 2)),
        ("wall_left", (2 * ix, th, h), (0.0, iy + th / 2, h / 2)),
        ("wall_right", (2 * ix, th, h), (0.0, -iy - th / 2, h / 2)),
    ]
    for i in range(b.count):
        cx, cy = b.center_x, b.center_y(i) - base_y
        for name, size, (dx, dy, z) in parts:
            boxes.append(CollisionBox(f"bin_{i}_{name}", size, (cx + dx, cy + dy, z)))
    return boxes
