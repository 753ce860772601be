"""Ctrl-C: work in progress is kept whole, and the user is told what was kept."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was kept (``rlcg`` prints "interrupted: <message>" and exits 130)."""


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C during the block raises KeyboardInterrupt when the block has finished, not inside it,
    so that an episode is recorded, or a training step taken, whole or not at all. A second Ctrl-C
    does not wait: a block that hangs can still be left."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:  # a job that ignores Ctrl-C, or a handler of C code
        yield
        return
    received: list[int] = []

    def on_ctrl_c(signum, frame):
        if received:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        received.append(signum)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous) and previous is not signal.default_int_handler:
            previous(received[0], None)  # a handler of the caller's, called late
        else:
            raise KeyboardInterrupt
