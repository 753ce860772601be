"""How well a policy's Q-function predicts recorded grasp outcomes, without running a robot.

On the final transitions of recorded episodes (done, reward 1 for a successful grasp, else 0), the
Q-value of the recorded grasp is a predicted success probability. Reported:

- ``auc``: probability that a successful grasp gets a higher Q than a failed one (ROC AUC; 0.5 is a
  blind guess). CEM picks the grasp with the highest Q, so ranking is what the policy lives on.
- ``cross_entropy``: the TD loss of those transitions (binary cross-entropy of Q against the outcome).
- ``mean_q`` against ``success_rate``: calibration, whether Q is optimistic or pessimistic on average.

This is how a Q-function can be checked on bags from the real robot, where the episodes are
recorded but cannot be replayed, and how the transfer benchmark's Q_real is compared on the
pseudo-real data (docs/results.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from rlcg.errors import RlcgError


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D and of one length, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"AUC needs successes and failures, got {positives} and {negatives}")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average rank (1-based) within each group of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def final_grasps(dataset, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, actions, 0/1 rewards) of the recorded final grasp of every finished episode in a
    TransitionDataset; its images are ``dataset.images[rows]``, to be read batch by batch. Raises
    RlcgError when the data cannot say anything about a Q-function taking ``image_size`` images (no
    finished episodes, only successes or only failures, wrong image size, rewards other than 0 and 1)."""
    dones = np.asarray(dataset.dones).astype(bool)
    rows = np.flatnonzero(dones)
    if len(rows) == 0:
        raise RlcgError(f"{dataset.path}: no finished episode (no transition with done) to score")
    rewards = np.asarray(dataset.rewards)[rows].astype(np.float64)
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise RlcgError(f"{dataset.path}: final rewards must be 0 or 1 (grasp outcomes), got {np.unique(rewards)[:5]}")
    successes = int(rewards.sum())
    if successes in (0, len(rows)):
        raise RlcgError(
            f"{dataset.path}: all {len(rows)} recorded grasps {'succeeded' if successes else 'failed'}; "
            "ranking needs both outcomes"
        )
    size = tuple(dataset.image_size)
    if size != (image_size, image_size):
        raise RlcgError(
            f"{dataset.path}: images are {size[1]}x{size[0]} but the Q-network takes {image_size}x{image_size}"
        )
    return rows, np.asarray(dataset.actions[rows], dtype=np.float32), rewards


def check_finite(q: np.ndarray, what: str = "the Q-network") -> None:
    if not np.isfinite(q).all():
        raise RlcgError(f"{what} gives NaN or infinity on {int((~np.isfinite(q)).sum())} grasps (diverged?)")


@torch.no_grad()
def score_outcomes(qnet, dataset, batch_size: int = 256) -> dict:
    """Q of each recorded final grasp against its outcome; ``qnet`` a QNetwork (a policy's ``.qnet``),
    ``dataset`` a TransitionDataset. Raises RlcgError when the data cannot say anything (final_grasps)."""
    from rlcg.models.qnet import QNetwork

    rows, actions, rewards = final_grasps(dataset, qnet.config.image_size)
    device = next(qnet.parameters()).device
    q = np.empty(len(rewards))
    for i in range(0, len(rewards), batch_size):
        batch = QNetwork.preprocess(torch.as_tensor(np.asarray(dataset.images[rows[i : i + batch_size]])).to(device))
        a = torch.as_tensor(actions[i : i + batch_size], device=device)
        q[i : i + batch_size] = torch.sigmoid(qnet(batch, a)).double().cpu().numpy()
    check_finite(q)
    return outcome_scores(q, rewards)


def outcome_scores(q: np.ndarray, rewards: np.ndarray) -> dict:
    """Grasps, success rate, mean Q, ROC AUC and cross-entropy of success probabilities ``q`` against 0/1 outcomes."""
    successes = int(rewards.sum())
    p = np.clip(q, 1e-7, 1 - 1e-7)
    cross_entropy = float(-(rewards * np.log(p) + (1 - rewards) * np.log(1 - p)).mean())
    return {
        "grasps": len(rewards),
        "successes": successes,
        "success_rate": successes / len(rewards),
        "mean_q": float(q.mean()),
        "auc": roc_auc(q, rewards),
        "cross_entropy": cross_entropy if math.isfinite(cross_entropy) else None,
    }


class OutcomeMonitor:
    """Scores a Q-network on recorded outcomes every ``every`` training steps: TensorBoard scalars
    ``monitor/auc``, ``monitor/cross_entropy``, ``monitor/mean_q`` and one JSON line per check in
    ``path`` (appended, so a resumed run continues the file)."""

    def __init__(self, dataset, every: int, path: Path):
        if every <= 0:
            raise ValueError(f"monitor interval must be positive, got {every}")
        self.dataset, self.every, self.path = dataset, every, Path(path)

    def resume_at(self, step: int) -> None:
        """Drop the lines of checks after ``step``: a run resumed from its checkpoint at ``step``
        checks those steps again, and each step keeps one line. At step 0 (a new run where one was
        killed before its first checkpoint) every line goes, the start's check included."""
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _monitor_step(line) <= step] if step > 0 else []
        if len(kept) != len(lines):
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, self.path)

    def due(self, step: int, last_step: int) -> bool:
        return step % self.every == 0 or step == last_step

    def __call__(self, step: int, qnet, writer=None) -> dict:
        scores = {"step": step, **score_outcomes(qnet, self.dataset)}
        if writer is not None:
            for k in ("auc", "cross_entropy", "mean_q"):
                writer.add_scalar(f"monitor/{k}", scores[k], step)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(scores) + "\n")
        return scores


def _monitor_step(line: str) -> float:
    """The step of one monitor.jsonl line; a damaged line (a kill mid-write) counts as after every step."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
