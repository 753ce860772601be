"""Procedural textures (numpy), written once per process to PNG files that PyBullet can load."""

from __future__ import annotations

import hashlib
import math
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from rlcg.scratch import scratch_dir

PATTERNS = ("noise", "checker", "stripes", "wood", "speckle", "granite", "grid")


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random lattice, bilinearly upsampled, tiled seamlessly."""
    lattice = rng.random((cells + 1, cells + 1))
    lattice[-1, :] = lattice[0, :]
    lattice[:, -1] = lattice[:, 0]
    t = np.linspace(0, cells, size, endpoint=False)
    i = t.astype(int)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def pattern(kind: str, size: int, scale: float, seed: int) -> np.ndarray:
    """A grey-level pattern in [0, 1], shape (size, size)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    cells = max(2, int(round(scale)))
    if kind == "noise":
        p = 0.6 * _value_noise(rng, size, cells) + 0.4 * _value_noise(rng, size, cells * 4)
    elif kind == "checker":
        p = ((np.floor(x * cells) + np.floor(y * cells)) % 2).astype(float)
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        p = 0.5 + 0.5 * np.sin(2 * math.pi * cells * (x * math.cos(angle) + y * math.sin(angle)))
    elif kind == "wood":
        warp = _value_noise(rng, size, 4) * 2.0
        p = 0.5 + 0.5 * np.sin(2 * math.pi * (cells * y + warp))
        p = 0.7 * p + 0.3 * _value_noise(rng, size, cells * 8)
    elif kind == "speckle":
        p = 0.5 + 0.5 * (rng.random((size, size)) - 0.5) + 0.3 * (_value_noise(rng, size, cells) - 0.5)
    elif kind == "granite":
        base = _value_noise(rng, size, cells * 2)
        dots = (rng.random((size, size)) > 0.92).astype(float)
        p = 0.7 * base + 0.3 * dots
    elif kind == "grid":
        lines = (np.abs((x * cells) % 1 - 0.5) > 0.45) | (np.abs((y * cells) % 1 - 0.5) > 0.45)
        p = np.where(lines, 0.0, 1.0)
    else:
        raise ValueError(f"unknown texture pattern {kind!r}; choose one of {', '.join(PATTERNS)}")
    p = p - p.min()
    return p / max(p.max(), 1e-9)


def grey_texture(grey: np.ndarray, contrast: float) -> np.ndarray:
    """Grey uint8 image in [1 - contrast, 1] x 255; PyBullet multiplies it by the surface colour."""
    level = 1.0 - contrast * (1.0 - grey)
    return np.repeat((level * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


@cache
def _cache_dir() -> Path:
    return scratch_dir("textures-")


def texture_file(kind: str, contrast: float, scale: float, seed: int, size: int = 64) -> Path:
    """Path of a grey PNG texture with these parameters, generated on first use in this process."""
    key = f"{kind}-{contrast:.4f}-{scale:.3f}-{seed}-{size}"
    name = hashlib.sha1(key.encode()).hexdigest()[:16] + ".png"
    path = _cache_dir() / name
    if not path.exists():
        img = grey_texture(pattern(kind, size, scale, seed), contrast)
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(img).save(tmp)
        tmp.replace(path)
    return path


def uv_mesh_file(mesh_path: Path, uv_scale: float = 8.0) -> Path:
    """A copy of an OBJ mesh with texture coordinates (the object set ships none), made once."""
    out = _cache_dir() / f"uv-{hashlib.sha1(str(mesh_path).encode()).hexdigest()[:16]}.obj"
    if out.exists():
        return out
    lines_out = []
    nverts = 0
    with open(mesh_path) as fh:
        lines = fh.readlines()
    for line in lines:
        if line.startswith("v "):
            _, x, y, z = line.split()[:4]
            fx, fy, fz = float(x), float(y), float(z)
            lines_out.append(line if line.endswith("\n") else line + "\n")
            # A skewed planar projection: every face gets a non-degenerate texture patch.
            lines_out.append(f"vt {(fx + 0.5 * fz) * uv_scale:.5f} {(fy + 0.5 * fz) * uv_scale:.5f}\n")
            nverts += 1
        elif line.startswith("f "):
            idx = [tok.split("/")[0] for tok in line.split()[1:]]
            lines_out.append("f " + " ".join(f"{i}/{i}" for i in idx) + "\n")
        elif line.startswith(("o ", "g ")):
            lines_out.append(line)
    # vt lines were interleaved after each v; OBJ indexes v and vt separately, so order is preserved.
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(lines_out))
    tmp.replace(out)
    return out


def single_hull_mesh_file(mesh_path: Path, max_points: int = 0) -> Path:
    """A copy of an OBJ mesh as one object, so PyBullet collides with its single convex hull
    instead of a compound of the convex parts the file lists.

    With ``max_points`` > 0 the hull is spanned by at most that many of the mesh's vertices,
    chosen by farthest-point sampling: contact generation between convex hulls costs with the
    number of their faces, and a few dozen points keep the object's extent (tests: within 10%).
    """
    import os

    key = f"{mesh_path}|{max_points}"
    out = _cache_dir() / f"hull-{hashlib.sha1(key.encode()).hexdigest()[:16]}.obj"
    if not out.exists():
        with open(mesh_path) as fh:
            lines = fh.readlines()
        if max_points > 0:
            from rlcg.sim.objects import mesh_vertices

            verts = mesh_vertices(mesh_path)
            pts = verts[farthest_points(verts, max_points)]
            # PyBullet builds the hull from the points of the faces; any triangles through them do.
            faces = [f"f 1 {i} {i + 1}\n" for i in range(2, len(pts))]
            kept = [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in pts] + faces
        else:
            kept = [line for line in lines if line.startswith(("v ", "f "))]
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(kept))
        tmp.replace(out)
    return out


def farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` points spread over ``points`` (greedy farthest-point sampling, starting
    from the point farthest from the centroid; deterministic)."""
    if len(points) <= count:
        return np.arange(len(points))
    chosen = [int(np.argmax(np.linalg.norm(points - points.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return np.array(sorted(chosen))
