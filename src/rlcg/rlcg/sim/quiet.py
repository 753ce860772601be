"""PyBullet's C code writes banners straight to the process's file descriptors: its build time on
import (fd 2) and "argv[0]=" on connect (fd 1). Neither is a message for the user, and fd 1 must
carry nothing but the JSON of ``--json`` commands, so both are discarded at the descriptor level,
where ``sys.stdout`` redirection cannot reach."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def c_output_discarded() -> Iterator[None]:
    """Send what C code writes to fd 1 and fd 2 to /dev/null for the duration of the block (where
    they cannot be redirected, e.g. closed, the block runs as it is)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
