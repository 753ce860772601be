"""rlcg_bringup: installs the workspace's top-level launch/ and config/ into share/rlcg_bringup."""

import os
from pathlib import Path

from setuptools import setup

PACKAGE = "rlcg_bringup"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the workspace root: src/rlcg_bringup -> ..


def share_tree(top: str) -> list[tuple[str, list[str]]]:
    """(install dir, files) for every folder of the workspace's top-level ``top`` directory."""
    base = ROOT / top
    if not base.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in [base, *base.rglob("*")] if p.is_dir() and "__pycache__" not in p.parts):
        files = sorted(os.path.relpath(f, HERE) for f in folder.iterdir() if f.is_file() and f.suffix != ".pyc")
        if files:
            entries.append((f"share/{PACKAGE}/{folder.relative_to(ROOT)}", files))
    return entries


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="rlcg developers",
    maintainer_email="maintainers@users.noreply.r-seed-25078846.example",
    description="rlcg launch files and node parameters",
    license="Apache-2.0",
)
