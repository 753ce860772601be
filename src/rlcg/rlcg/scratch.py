"""Scratch files (textures, collision hulls, URDFs, bags decoded for training): one directory per
run, deleted when the process that made it exits.

Rollout pools hand the root to their worker processes (``adopt_scratch_root``), so that workers
write beneath it too: pool workers are terminated rather than shut down and cannot clean up after
themselves, and the parent removes the whole tree. Nothing is published in the environment, so an
unrelated program started from this one keeps a scratch root of its own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_root: Path | None = None


def _remove(root: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked child that exits must not take its parent's files
        shutil.rmtree(root, ignore_errors=True)


def scratch_root() -> Path:
    """This process's scratch root: the one adopted from a parent process, or a new one removed at exit."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="rlcg-scratch-"))
        atexit.register(_remove, _root, os.getpid())
    return _root


def adopt_scratch_root(root: str | Path) -> None:
    """Use a parent process's scratch root (a pool worker's initializer calls this)."""
    global _root
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"scratch root {path} does not exist")
    _root = path


def scratch_dir(prefix: str) -> Path:
    """A new directory of this process under its scratch root."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root()))
