"""A training run's TensorBoard log (RUN/tb), kept to one record per step across kills and resumes."""

from __future__ import annotations

from pathlib import Path


def resumed_writer(logdir: Path, step: int):
    """A TensorBoard SummaryWriter for a run that starts at ``step``: what earlier attempts logged
    after ``step`` is hidden (purge_step), since the run trains those steps again. Both trainers log
    step s before saving their checkpoint at s, so step ``step`` keeps its record; a run starting at
    0 (none, or one killed before its first checkpoint) hides everything logged before."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(logdir), purge_step=step + 1 if step > 0 else 0)
