"""Where a result came from: command, seed, git commit, versions (written into checkpoints and reports)."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path


def git_commit(path: Path | None = None) -> str:
    """The commit of the checkout rlcg runs from ("+dirty" if it has uncommitted changes), or "unknown"."""
    cwd = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_command: list[str] | None = None  # the arguments rlcg.cli.main parsed, when it was called with its own


def record_command(argv: list[str]) -> None:
    """Remember the arguments the CLI was given: ``rlcg.cli.main(argv)`` called from Python or from
    `ros2 run rlcg_ros train` is not what sys.argv holds."""
    global _command
    _command = list(argv)


def provenance(argv: list[str] | None = None, seed: int | None = None) -> dict:
    import torch

    from rlcg import __version__

    return {
        "command": "rlcg " + " ".join(argv if argv is not None else _command if _command is not None else sys.argv[1:]),
        "seed": seed,
        "commit": git_commit(),
        "rlcg": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
