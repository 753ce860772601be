"""The ``--device`` options of every command: one spelling check when the command line is read
(so ``rlcg ... --help`` stays free of torch), and one check against this machine before any work
starts, so that ``--device cuda`` on a machine without CUDA is a clear error, not torch's
assertion halfway through a run.
"""

from __future__ import annotations

import argparse
import os
import re

from rlcg.errors import RlcgError

DEVICE_CHOICES = "auto (CUDA when available), cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::(\d+))?")


class DeviceError(RlcgError):
    """A device this machine cannot run torch on."""


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``text`` if it names a device rlcg supports."""
    if text in ("auto", "cpu") or _CUDA.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r}: choose {DEVICE_CHOICES}")


def resolve_device(name: str, flag: str = "--device") -> str:
    """The torch device ``name`` stands for on this machine ("auto" becomes "cuda" or "cpu"), or a
    DeviceError, naming the option ``flag``, where this machine has no such device."""
    if name == "cpu":
        return name  # no torch import: the scripted policies run without it
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    match = _CUDA.fullmatch(name)
    if match is None:
        raise DeviceError(f"unknown device {name!r}: choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{flag} {name}: torch {torch.__version__} sees no CUDA device on this machine (use cpu or auto)"
        )
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise DeviceError(f"{flag} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return name


def single_process_only(what: str) -> None:
    """Refuse to run ``what`` under torchrun (WORLD_SIZE > 1): Q training alone is not distributed,
    so every process would train the same copy and write the same checkpoint files."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise DeviceError(
            f"{what} trains in one process; torchrun started {world}. Run it without torchrun "
            "(the GAN methods of rlcg train run under torchrun)"
        )
