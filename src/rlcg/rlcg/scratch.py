"""Scratch files (textures, collision hulls, URDFs, bags decoded for training): one directory per
run, deleted at exit.

The process that first needs scratch space makes the root and passes it on in an environment
variable, so that worker processes it spawns (rollout pools, spawned with ``spawn``) write beneath
it too. Pool workers are terminated rather than shut down, so they cannot clean up after themselves;
the parent removes the whole tree when it exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

ENV_VAR = "RLCG_SCRATCH_DIR"


@cache
def scratch_root() -> Path:
    """This run's scratch root: the one inherited from a parent process, or a new one removed at exit."""
    inherited = os.environ.get(ENV_VAR)
    if inherited and Path(inherited).is_dir():
        return Path(inherited)
    root = Path(tempfile.mkdtemp(prefix="rlcg-scratch-"))
    os.environ[ENV_VAR] = str(root)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def scratch_dir(prefix: str) -> Path:
    """A new directory of this process under the run's scratch root."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root()))
