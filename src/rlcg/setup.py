"""setuptools shim: metadata lives in pyproject.toml; this adds the ament index marker and
installs the workspace's top-level config/ and urdf/, and rlcg_interfaces' message definitions
(which the bag I/O reads), into share/rlcg (a colcon build, a pip install from the checkout, or a
pip install of the sdist, which carries copies of them under workspace/)."""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
# The directory in an sdist that holds its copies of the workspace files below (never in the checkout).
BUNDLE = "workspace"
# In the checkout the workspace is two levels up; in an unpacked sdist it is the sdist's own copy.
ROOT = HERE / BUNDLE if (HERE / BUNDLE).is_dir() else HERE.parents[1]
# (workspace directory, where under share/rlcg it is installed: default the same path)
SHARED = [
    ("config", None),
    ("urdf", None),
    ("src/rlcg_interfaces/msg", "interfaces/msg"),
    ("src/rlcg_interfaces/action", "interfaces/action"),
]


def share_tree(top: str, under: str | None = None) -> list[tuple[str, list[str]]]:
    """(install dir, files) pairs for every directory under the workspace's ``top``, installed as
    share/rlcg/``under`` (default: ``top``)."""
    entries = []
    base = ROOT / top
    if not base.is_dir():
        return entries
    for folder in sorted(p for p in [base, *base.rglob("*")] if p.is_dir()):
        files = sorted(os.path.relpath(f, HERE) for f in folder.iterdir() if f.is_file())
        if files:
            entries.append((f"share/rlcg/{Path(under or top) / folder.relative_to(base)}", files))
    return entries


class SdistWithWorkspace(sdist):
    """An sdist that carries the workspace files the data_files above install, under workspace/, so that
    the wheel pip builds from it installs them too. setuptools would copy the data_files that lie outside
    this directory (../../config/...) to the same relative path outside the release tree, i.e. into the
    checkout, and leave them out of the archive."""

    def make_release_tree(self, base_dir, files):
        inside = [f for f in files if not os.path.normpath(f).startswith(os.pardir)]
        super().make_release_tree(base_dir, inside)
        if ROOT == HERE / BUNDLE:  # an sdist built from an sdist: its data_files already copied them
            return
        for top, _ in SHARED:
            if (ROOT / top).is_dir():
                shutil.copytree(ROOT / top, Path(base_dir) / BUNDLE / top, dirs_exist_ok=True)


setup(
    cmdclass={"sdist": SdistWithWorkspace},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/rlcg"]),
        ("share/rlcg", ["package.xml"]),
        *(entry for top, under in SHARED for entry in share_tree(top, under)),
    ],
)
