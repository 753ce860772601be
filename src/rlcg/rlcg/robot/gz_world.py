"""The three-bin world as an SDF file for Gazebo (gz sim Harmonic), generated from the same config
as the PyBullet world, so the two cannot drift apart.

What is mirrored from config/world.yaml and config/camera.yaml: the table (size, position, colour),
the bins (count, spacing, inner size, walls, floor, colour), the camera (mount pose relative to the
robot base facing the centre bin, field of view, image size, clip planes) and the physics step and
gravity. Objects: PyBullet's procedural meshes are not shipped with Gazebo, so the SDF drops
primitive shapes (boxes, cylinders, spheres) of the same size range, mass and friction into every
bin, placed by a seeded generator with the config's per-bin count and spawn margin.

Regenerate the committed file after changing the config:

    python -m rlcg.robot.gz_world --out urdf/three_bin_world.sdf
"""

from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from rlcg.sim.commands import nonnegative_int
from rlcg.sim.config import SimConfig

SDF_VERSION = "1.9"  # read by libsdformat 12 (Fortress) and 14 (Harmonic) alike
WORLD_NAME = "rlcg_three_bins"
CAMERA_MODEL = "rlcg_camera"
CAMERA_SENSOR = "rgb_camera"
CAMERA_GZ_TOPIC = "/rlcg/gz/camera/image"
CAMERA_INFO_GZ_TOPIC = "/rlcg/gz/camera/camera_info"
CAMERA_RATE_HZ = 10.0
OBJECT_SIZE_RANGE = (0.03, 0.06)  # m, extent of the primitive objects (the scaled mesh objects span about this)


def _fmt(*values: float) -> str:
    return " ".join(f"{v:.9g}" if abs(v) > 1e-12 else "0" for v in values)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _material(parent: ET.Element, rgb) -> None:
    mat = _sub(parent, "material")
    _sub(mat, "ambient", _fmt(*rgb, 1.0))
    _sub(mat, "diffuse", _fmt(*rgb, 1.0))
    _sub(mat, "specular", _fmt(0.1, 0.1, 0.1, 1.0))


def _box_link_part(link: ET.Element, name: str, size, xyz, rgb, mu: float | None = None) -> None:
    for kind in ("collision", "visual"):
        part = _sub(link, kind, name=f"{name}_{kind}")
        _sub(part, "pose", _fmt(*xyz, 0, 0, 0))
        geom = _sub(part, "geometry")
        _sub(_sub(geom, "box"), "size", _fmt(*size))
        if kind == "visual":
            _material(part, rgb)
        elif mu is not None:
            ode = _sub(_sub(_sub(part, "surface"), "friction"), "ode")
            _sub(ode, "mu", _fmt(mu))
            _sub(ode, "mu2", _fmt(mu))


def camera_hfov(config: SimConfig) -> float:
    """Horizontal field of view of the config's pinhole camera (square pixels, fx = fy)."""
    cam = config.camera
    half_v = math.radians(cam.vertical_fov_deg) / 2
    return 2 * math.atan(math.tan(half_v) * cam.width / cam.height)


def camera_world_pose(config: SimConfig) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """camera_link pose (x forward, z up, as a gz camera looks along +x) in the world frame, for the
    robot base at its nominal place in front of the centre bin (no jitter)."""
    bins = config.world.bins
    base_y = bins.center_y(bins.centre_index)
    x, y, z = config.camera.mount_xyz
    return (x, y + base_y, z), config.camera.mount_rpy()


def object_layout(config: SimConfig, seed: int = 0) -> list[dict]:
    """Primitive objects per bin: kind, size, position (world frame), yaw."""
    rng = np.random.default_rng(seed)
    bins = config.world.bins
    ocfg = config.world.objects
    out = []
    for b in range(bins.count):
        n = int(rng.integers(ocfg.per_bin[0], ocfg.per_bin[1] + 1))
        hx = bins.inner_size[0] / 2 - ocfg.spawn_margin
        hy = bins.inner_size[1] / 2 - ocfg.spawn_margin
        stack_z = 0.0
        for i in range(n):
            kind = ("box", "cylinder", "sphere")[int(rng.integers(3))]
            size = rng.uniform(*OBJECT_SIZE_RANGE, size=3)
            if kind == "sphere":
                size[:] = size[0]
            elif kind == "cylinder":
                size[1] = size[0]  # diameter in x and y
            x = bins.center_x + rng.uniform(-hx, hx)
            y = bins.center_y(b) + rng.uniform(-hy, hy)
            # Objects start above each other so that none overlaps at spawn; they drop into the bin.
            z = bins.floor_z + ocfg.drop_height[1] + stack_z + size[2] / 2
            stack_z += size[2] + 0.01
            out.append(
                {
                    "name": f"object_{b}_{i}",
                    "bin": b,
                    "kind": kind,
                    "size": tuple(float(v) for v in size),
                    "position": (float(x), float(y), float(z)),
                    "yaw": float(rng.uniform(-math.pi, math.pi)),
                }
            )
    return out


def _inertia(kind: str, size, mass: float) -> tuple[float, float, float]:
    sx, sy, sz = size
    if kind == "box":
        return (mass * (sy**2 + sz**2) / 12, mass * (sx**2 + sz**2) / 12, mass * (sx**2 + sy**2) / 12)
    if kind == "cylinder":
        r = sx / 2
        i_xy = mass * (3 * r**2 + sz**2) / 12
        return (i_xy, i_xy, mass * r**2 / 2)
    r = sx / 2
    return (2 * mass * r**2 / 5,) * 3


def _geometry(parent: ET.Element, kind: str, size) -> None:
    geom = _sub(parent, "geometry")
    if kind == "box":
        _sub(_sub(geom, "box"), "size", _fmt(*size))
    elif kind == "cylinder":
        cyl = _sub(geom, "cylinder")
        _sub(cyl, "radius", _fmt(size[0] / 2))
        _sub(cyl, "length", _fmt(size[2]))
    else:
        _sub(_sub(geom, "sphere"), "radius", _fmt(size[0] / 2))


def world_sdf(config: SimConfig | None = None, seed: int = 0) -> str:
    """The SDF text of the three-bin world."""
    config = config or SimConfig.load()
    w = config.world
    root = ET.Element("sdf", version=SDF_VERSION)
    world = _sub(root, "world", name=WORLD_NAME)
    # gz sim picks the physics engine through the Physics system below; the type attribute is unused.
    physics = _sub(world, "physics", name="rlcg_step", type="ignored")
    _sub(physics, "max_step_size", _fmt(w.physics.time_step))
    _sub(physics, "real_time_factor", "1")
    _sub(world, "gravity", _fmt(0, 0, w.physics.gravity))
    for filename, name in (
        ("gz-sim-physics-system", "gz::sim::systems::Physics"),
        ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands"),
        ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster"),
        ("gz-sim-sensors-system", "gz::sim::systems::Sensors"),
    ):
        plugin = _sub(world, "plugin", filename=filename, name=name)
        if name.endswith("Sensors"):
            _sub(plugin, "render_engine", "ogre2")
    sun = _sub(world, "light", type="directional", name="sun")
    _sub(sun, "cast_shadows", "true")
    _sub(sun, "pose", _fmt(0, 0, 10, 0, 0, 0))
    _sub(sun, "diffuse", _fmt(0.9, 0.9, 0.9, 1))
    _sub(sun, "specular", _fmt(0.2, 0.2, 0.2, 1))
    _sub(sun, "direction", _fmt(-0.3, 0.2, -0.9))

    # Ground far below the table: catches whatever falls off.
    ground = _sub(world, "model", name="ground_plane")
    _sub(ground, "static", "true")
    _sub(ground, "pose", _fmt(0, 0, -0.75, 0, 0, 0))
    glink = _sub(ground, "link", name="link")
    for kind in ("collision", "visual"):
        part = _sub(glink, kind, name=kind)
        plane = _sub(_sub(part, "geometry"), "plane")
        _sub(plane, "normal", "0 0 1")
        _sub(plane, "size", "10 10")
        if kind == "visual":
            _material(part, (0.8, 0.8, 0.8))

    # Table: top face at z = 0.
    t = w.table
    table = _sub(world, "model", name="table")
    _sub(table, "static", "true")
    _sub(table, "pose", _fmt(t.center_xy[0], t.center_xy[1], -t.size[2] / 2, 0, 0, 0))
    _box_link_part(_sub(table, "link", name="link"), "top", t.size, (0, 0, 0), t.color)

    # Bins: a floor and four walls, as the PyBullet trays.
    b = w.bins
    parts = b.tray_parts()
    for i in range(b.count):
        tray = _sub(world, "model", name=f"bin_{i}")
        _sub(tray, "static", "true")
        _sub(tray, "pose", _fmt(b.center_x, b.center_y(i), 0, 0, 0, 0))
        link = _sub(tray, "link", name="link")
        for name, size, xyz in parts:
            _box_link_part(link, name, size, xyz, b.color)

    # Camera: fixed relative to the robot base in front of the centre bin.
    cam = config.camera
    (cx, cy, cz), (roll, pitch, yaw) = camera_world_pose(config)
    camera = _sub(world, "model", name=CAMERA_MODEL)
    _sub(camera, "static", "true")
    _sub(camera, "pose", _fmt(cx, cy, cz, roll, pitch, yaw))
    clink = _sub(camera, "link", name="link")
    sensor = _sub(clink, "sensor", name=CAMERA_SENSOR, type="camera")
    _sub(sensor, "always_on", "true")
    _sub(sensor, "update_rate", _fmt(CAMERA_RATE_HZ))
    _sub(sensor, "topic", CAMERA_GZ_TOPIC)
    camel = _sub(sensor, "camera", name="camera")
    _sub(camel, "horizontal_fov", _fmt(camera_hfov(config)))
    image = _sub(camel, "image")
    _sub(image, "width", str(cam.width))
    _sub(image, "height", str(cam.height))
    _sub(image, "format", "R8G8B8")
    clip = _sub(camel, "clip")
    _sub(clip, "near", _fmt(cam.near))
    _sub(clip, "far", _fmt(cam.far))

    # Objects.
    o = w.objects
    for obj in object_layout(config, seed):
        model = _sub(world, "model", name=obj["name"])
        _sub(model, "pose", _fmt(*obj["position"], 0, 0, obj["yaw"]))
        link = _sub(model, "link", name="link")
        inertial = _sub(link, "inertial")
        _sub(inertial, "mass", _fmt(o.mass))
        ixx, iyy, izz = _inertia(obj["kind"], obj["size"], o.mass)
        inertia = _sub(inertial, "inertia")
        for tag, value in (("ixx", ixx), ("ixy", 0), ("ixz", 0), ("iyy", iyy), ("iyz", 0), ("izz", izz)):
            _sub(inertia, tag, _fmt(value))
        col = _sub(link, "collision", name="collision")
        _geometry(col, obj["kind"], obj["size"])
        ode = _sub(_sub(_sub(col, "surface"), "friction"), "ode")
        _sub(ode, "mu", _fmt(o.lateral_friction))
        _sub(ode, "mu2", _fmt(o.lateral_friction))
        vis = _sub(link, "visual", name="visual")
        _geometry(vis, obj["kind"], obj["size"])
        hue = (obj["bin"] * 0.31 + int(obj["name"].rsplit("_", 1)[1]) * 0.17) % 1.0
        _material(vis, _hue_rgb(hue))

    ET.indent(root, space="  ")
    header = (
        '<?xml version="1.0"?>\n'
        "<!-- Generated by `python -m rlcg.robot.gz_world` from config/world.yaml and config/camera.yaml;\n"
        "     do not edit by hand (tests/test_ros_world_sdf.py checks that it matches the config). -->\n"
    )
    return header + ET.tostring(root, encoding="unicode") + "\n"


def _hue_rgb(hue: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(hue, 0.65, 0.85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlcg.robot.gz_world", description="Write the Gazebo three-bin world SDF from the rlcg config."
    )
    parser.add_argument("--out", type=Path, help="output file (default: print to stdout)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the object layout (default 0)")
    parser.add_argument("--config-dir", type=Path, help="config directory (default: the workspace's config/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    args = parser.parse_args(argv)
    text = world_sdf(SimConfig.load(args.config_dir), args.seed)
    if args.check:
        if args.out is None:
            parser.error("--check needs --out")
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs from the config; regenerate it'}")
        return 0 if same else 1
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
