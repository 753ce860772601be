"""The sdist of src/rlcg carries the workspace files (config/, urdf/, rlcg_interfaces' definitions) that
its setup.py installs into share/rlcg, so the wheel pip builds from the sdist has them too; and building
the sdist writes nothing into the checkout."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "rlcg"


def workspace_files() -> set[str]:
    """share/rlcg/... paths the workspace's files install to."""
    out = set()
    for top, under in (("config", "config"), ("urdf", "urdf")):
        out |= {
            f"share/rlcg/{under}/{p.relative_to(ROOT / top).as_posix()}" for p in (ROOT / top).rglob("*") if p.is_file()
        }
    for kind in ("msg", "action"):
        out |= {f"share/rlcg/interfaces/{kind}/{p.name}" for p in (ROOT / "src" / "rlcg_interfaces" / kind).iterdir()}
    return out


def untracked() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout


@pytest.mark.slow
def test_wheel_built_from_the_sdist_installs_config_urdf_and_interfaces(tmp_path):
    pytest.importorskip("setuptools")
    before = untracked()
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=PKG, check=True)
    assert untracked() == before, "building the sdist wrote files into the checkout"
    (sdist,) = tmp_path.glob("rlcg-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("/workspace/config/world.yaml") for n in names), names
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(sdist),
        ],
        check=True,
    )
    (wheel,) = wheel_dir.glob("rlcg-*.whl")
    prefix = wheel.name.split("-py")[0] + ".data/data/"
    with zipfile.ZipFile(wheel) as zf:
        shared = {n.removeprefix(prefix) for n in zf.namelist() if n.startswith(prefix + "share/rlcg/")}
        top_level = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt"))).decode().split()
    expected = workspace_files() | {"share/rlcg/package.xml"}
    assert shared == expected, (sorted(expected - shared), sorted(shared - expected))
    assert top_level == ["rlcg"]


def test_an_installed_package_looks_for_its_files_where_installs_put_them(monkeypatch, tmp_path):
    """Installed (site-packages), rlcg does not look beside a checkout that is not there, so that the
    "cannot find" message names only places that could hold the files."""
    from rlcg import paths

    monkeypatch.delenv("RLCG_CONFIG_DIR", raising=False)
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "lib" / "python3.11" / "site-packages" / "rlcg")
    installed = paths._candidates("config")
    assert installed[0] == tmp_path / "share" / "rlcg" / "config"
    assert tmp_path / "lib" / "config" not in installed
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "repo" / "src" / "rlcg" / "rlcg")
    assert paths._candidates("config")[0] == tmp_path / "repo" / "config"  # pip install -e: the checkout first
