"""setuptools shim: metadata lives in pyproject.toml; this adds the ament index marker and
installs the workspace's top-level config/ and urdf/, and rlcg_interfaces' message definitions
(which the bag I/O reads), into share/rlcg (a colcon build or a pip install from the checkout)."""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def share_tree(top: str, under: str | None = None) -> list[tuple[str, list[str]]]:
    """(install dir, files) pairs for every directory under the workspace's ``top``, installed as
    share/rlcg/``under`` (default: ``top``)."""
    entries = []
    base = ROOT / top
    if not base.is_dir():  # an sdist built outside the workspace carries no share files
        return entries
    for folder in sorted(p for p in [base, *base.rglob("*")] if p.is_dir()):
        files = sorted(os.path.relpath(f, HERE) for f in folder.iterdir() if f.is_file())
        if files:
            entries.append((f"share/rlcg/{Path(under or top) / folder.relative_to(base)}", files))
    return entries


setup(
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/rlcg"]),
        ("share/rlcg", ["package.xml"]),
        *share_tree("config"),
        *share_tree("urdf"),
        *share_tree("src/rlcg_interfaces/msg", "interfaces/msg"),
        *share_tree("src/rlcg_interfaces/action", "interfaces/action"),
    ],
)
