"""The graspable object set: pybullet_data's 1000 procedural objects with a fixed train/test split."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pybullet_data

from rlcg.sim.config import ObjectsConfig

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class ObjectModel:
    object_id: int
    mesh_path: Path
    mesh_scale: float  # URDF's own mesh scale; the world multiplies ObjectsConfig.scale on top
    rgba: tuple[float, float, float, float]


def objects_root(cfg: ObjectsConfig) -> Path:
    prefix = "pybullet_data/"
    if cfg.source.startswith(prefix):
        return Path(pybullet_data.getDataPath()) / cfg.source[len(prefix) :]
    return Path(cfg.source)


@cache
def _available_ids(root: Path) -> tuple[int, ...]:
    if not root.is_dir():
        raise FileNotFoundError(f"object set directory {root} does not exist")
    ids = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / f"{p.name}.urdf").is_file())
    if not ids:
        raise FileNotFoundError(f"no <id>/<id>.urdf objects found under {root}")
    return tuple(ids)


def object_ids(cfg: ObjectsConfig, split: str) -> tuple[int, ...]:
    """Object ids of a split: ids ending in 0 are the held-out test set (10%), the rest train."""
    if split not in SPLITS:
        raise ValueError(f"unknown object split {split!r}; choose one of {', '.join(SPLITS)}")
    ids = _available_ids(objects_root(cfg))
    if split == "all":
        return ids
    want_test = split == "test"
    return tuple(i for i in ids if (i % 10 == 0) == want_test)


@cache
def load_model(root: Path, object_id: int) -> ObjectModel:
    folder = root / f"{object_id:03d}"
    urdf = folder / f"{object_id:03d}.urdf"
    tree = ET.parse(urdf)
    mesh = tree.find(".//collision/geometry/mesh")
    if mesh is None:
        raise ValueError(f"{urdf}: no collision mesh")
    scale = float(mesh.get("scale", "1 1 1").split()[0])
    color = tree.find(".//visual/material/color")
    rgba = tuple(float(v) for v in color.get("rgba").split()) if color is not None else (0.7, 0.7, 0.7, 1.0)
    return ObjectModel(object_id, folder / mesh.get("filename"), scale, rgba)  # type: ignore[arg-type]


@cache
def mesh_vertices(path: Path) -> np.ndarray:
    """Vertex positions of a Wavefront OBJ file, unscaled (N x 3)."""
    verts = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                parts = line.split()
                verts.append((float(parts[1]), float(parts[2]), float(parts[3])))
    return np.asarray(verts, dtype=np.float64)


@cache
def bounding_radius(path: Path) -> float:
    """Radius of the unscaled mesh's bounding sphere about its origin."""
    return float(np.linalg.norm(mesh_vertices(path), axis=1).max())
