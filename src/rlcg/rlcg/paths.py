"""Where rlcg finds the workspace's top-level config/ and urdf/ directories.

Order: $RLCG_CONFIG_DIR / $RLCG_URDF_DIR; the source checkout this module lives in, unless it is
installed into site-packages (``pip install -e src/rlcg``); the installed share directory (``colcon build`` or a wheel
install put them in ``<prefix>/share/rlcg``), where <prefix> is the one this package is installed
under (``<prefix>/lib/pythonX.Y/site-packages/rlcg``: colcon's install/rlcg) or the interpreter's.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    found = []
    env = os.environ.get(f"RLCG_{name.upper()}_DIR")
    if env:
        found.append(Path(env))
    if not _installed():  # src/rlcg/rlcg/paths.py -> repository root is three levels above the package dir.
        found.append(PACKAGE_DIR.parents[2] / name)
    found += [prefix / "share" / "rlcg" / name for prefix in _install_prefixes()]
    return found


def _installed() -> bool:
    """Installed into site-packages (a wheel, colcon), not imported from a checkout (``pip install -e``)."""
    return PACKAGE_DIR.parent.name in SITE_DIRS


def _install_prefixes() -> list[Path]:
    """The prefix this package is installed under (colcon installs each package under its own),
    then the interpreter's."""
    own = [PACKAGE_DIR.parents[3]] if len(PACKAGE_DIR.parents) > 3 and _installed() else []
    return list(dict.fromkeys([*own, Path(sys.prefix)]))


SITE_DIRS = ("site-packages", "dist-packages")


@cache
def _find(name: str, marker: str) -> Path:
    for cand in _candidates(name):
        if (cand / marker).exists():
            return cand
    tried = ", ".join(str(c) for c in _candidates(name))
    raise FileNotFoundError(
        f"rlcg cannot find its {name}/ directory (looked for {marker} in: {tried}); set RLCG_{name.upper()}_DIR"
    )


def config_dir() -> Path:
    return _find("config", "world.yaml")


def urdf_dir() -> Path:
    return _find("urdf", "rlcg_iiwa.urdf.xacro")


def domains_dir() -> Path:
    return config_dir() / "domains"


def assets_dir() -> Path:
    return PACKAGE_DIR / "assets"


def interfaces_dir() -> Path:
    """The rlcg_interfaces package's msg/ and action/ files: $RLCG_INTERFACES_DIR, the source checkout's
    src/rlcg_interfaces, or the share directory colcon installs them to (<prefix>/share/rlcg_interfaces)."""
    env = os.environ.get("RLCG_INTERFACES_DIR")
    cands = [Path(env)] if env else []
    if not _installed():
        cands.append(PACKAGE_DIR.parents[1] / "rlcg_interfaces")
    cands += [prefix / "share" / "rlcg" / "interfaces" for prefix in _install_prefixes()]
    ament = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    cands += [prefix / "share" / "rlcg_interfaces" for prefix in [*_install_prefixes(), *ament]]
    for cand in cands:
        if (cand / "msg" / "GraspOutcome.msg").exists():
            return cand
    tried = ", ".join(str(c) for c in cands)
    raise FileNotFoundError(
        f"rlcg cannot find the rlcg_interfaces messages (looked in: {tried}); set RLCG_INTERFACES_DIR"
    )
