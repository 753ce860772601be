"""Grasp-offset calibration: the constant shift in the table plane that best explains recorded real
grasp outcomes under a policy's Q.

A Q-network that learned where objects are from translated images (Q_real of RL-CycleGAN learns
from G(x)) can place its grasps a few millimetres off on real images, the same way in every
scene (docs/results.md measures 5-7 mm in y and up to 8 mm in x). Recorded real grasps with
their outcomes tell how far: if the policy places a grasp at a_Q where the right grasp is
a_Q + d, then Q(y, a - d) predicts the outcome of a recorded grasp a best at that d. The fit
maximises the likelihood of the outcomes, sum_i log sigmoid(+-Q(y_i, a_i - d)), over
d = (dx, dy) in the robot base frame; the calibrated policy then executes its chosen grasp
shifted by d, clipped to the workspace.

Only the position is fitted: on the rounds run's seed-0 checkpoint, an affine map and a yaw
offset fitted the same way lowered the cross-entropy by under a tenth of what the shift did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rlcg.errors import RlcgError
from rlcg.eval.offline import final_grasps, roc_auc

MAX_GRASP_OFFSET = 0.05  # m: beyond this the camera is miscalibrated and needs fixing, not this


class CalibrationError(RlcgError):
    """The recorded grasps cannot calibrate the policy (too few, one outcome only, the fit at its bound)."""


@dataclass
class OffsetFit:
    offset: tuple[float, float]  # (dx, dy) in metres, robot base frame: added to the policy's grasp
    stderr: tuple[float, float]  # standard errors from the likelihood's curvature at the optimum
    grasps: int
    successes: int
    cross_entropy_before: float  # mean negative log-likelihood of the outcomes at d = 0
    cross_entropy_after: float  # at the fitted d
    auc_before: float
    auc_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def check_grasp_offset(offset, where: str = "grasp_offset") -> tuple[float, float]:
    """A finite (dx, dy) pair within MAX_GRASP_OFFSET, or a CalibrationError naming ``where``."""
    try:
        dx, dy = (float(v) for v in offset)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where} must be two numbers (dx, dy) in metres, got {offset!r}") from exc
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise CalibrationError(f"{where} must be finite, got ({dx}, {dy})")
    if max(abs(dx), abs(dy)) > MAX_GRASP_OFFSET:
        raise CalibrationError(
            f"{where} ({dx:.4f}, {dy:.4f}) m exceeds {MAX_GRASP_OFFSET} m: recalibrate the camera instead"
        )
    return dx, dy


def recorded_grasps(datasets, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, actions, rewards) of the final grasps of every dataset, concatenated."""
    images, actions, rewards = [], [], []
    for ds in datasets:
        rows, a, r = final_grasps(ds, image_size)
        images.append(np.asarray(ds.images[rows]))
        actions.append(a)
        rewards.append(r)
    return np.concatenate(images), np.concatenate(actions), np.concatenate(rewards)


def fit_grasp_offset(
    qnet,
    images: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    max_offset: float = 0.02,
    min_grasps: int = 100,
) -> OffsetFit:
    """Maximum-likelihood (dx, dy) within +-``max_offset`` of recorded grasps' 0/1 ``rewards`` under
    sigmoid Q(image, action - d). A coarse grid finds the basin, L-BFGS refines inside it."""
    if not 0 < max_offset <= MAX_GRASP_OFFSET:
        raise CalibrationError(f"max_offset must be in (0, {MAX_GRASP_OFFSET}] m, got {max_offset}")
    n, successes = len(rewards), int(np.sum(rewards))
    if n < min_grasps:
        raise CalibrationError(f"{n} recorded grasps are too few to calibrate on; record at least {min_grasps}")
    if successes in (0, n):
        raise CalibrationError(f"all {n} recorded grasps {'succeeded' if successes else 'failed'}: no information")
    was_training, grad_flags = qnet.training, [p.requires_grad for p in qnet.parameters()]
    qnet.eval().requires_grad_(False)  # only d is fitted; the caller's network is restored below
    try:
        return _fit(qnet, images, actions, rewards, max_offset)
    finally:
        qnet.train(was_training)
        for p, flag in zip(qnet.parameters(), grad_flags):
            p.requires_grad_(flag)


def _fit(qnet, images, actions, rewards, max_offset: float) -> OffsetFit:
    from rlcg.models.qnet import QNetwork

    n, successes = len(rewards), int(np.sum(rewards))
    device = next(qnet.parameters()).device
    with torch.no_grad():
        features = torch.cat(
            [
                qnet.encode(QNetwork.preprocess(torch.as_tensor(images[i : i + 256]).to(device)))
                for i in range(0, n, 256)
            ]
        )
    a = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=device)
    y = torch.as_tensor(np.asarray(rewards, dtype=np.float32), device=device)

    def logits(d: torch.Tensor) -> torch.Tensor:
        shifted = torch.cat([a[:, :2] - d, a[:, 2:]], dim=1)
        return qnet.head(features, shifted[:, None, :])[:, 0]

    def nll(d: torch.Tensor) -> torch.Tensor:  # the TD loss of a final grasp: cross-entropy against its outcome
        return torch.nn.functional.binary_cross_entropy_with_logits(logits(d), y)

    with torch.no_grad():
        grid = torch.linspace(-max_offset, max_offset, 9, device=device)
        scores = torch.stack([torch.stack([nll(torch.stack([dx, dy])) for dy in grid]) for dx in grid])
        if not torch.isfinite(scores).all():
            raise CalibrationError("the Q-network gives NaN or infinity on the recorded grasps (diverged?)")
        i, j = divmod(int(scores.argmin()), len(grid))
    d = torch.stack([grid[i], grid[j]]).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([d], lr=1, max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll(d)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        d.clamp_(-max_offset, max_offset)
    d = d.detach()
    if (d.abs() >= max_offset * 0.999).any():
        raise CalibrationError(
            f"the best offset ({d[0]:.4f}, {d[1]:.4f}) m lies on the +-{max_offset} m bound: the policy's "
            "geometry is further off than that; check the camera calibration"
            + (f", or raise --max-offset (at most {MAX_GRASP_OFFSET} m)" if max_offset < MAX_GRASP_OFFSET else "")
        )
    # standard errors: the inverse of the summed log-likelihood's Hessian (observed Fisher information)
    hessian = torch.autograd.functional.hessian(lambda v: nll(v) * n, d)
    try:
        cov = torch.linalg.inv(hessian)
        stderr = tuple(float(v) for v in torch.sqrt(torch.clamp(torch.diagonal(cov), min=0)))
    except RuntimeError:  # a flat likelihood: the data does not pin the offset down
        stderr = (math.inf, math.inf)
    with torch.no_grad():
        before, after = torch.sigmoid(logits(torch.zeros(2, device=device))), torch.sigmoid(logits(d))
        ce_before, ce_after = float(nll(torch.zeros(2, device=device))), float(nll(d))
    return OffsetFit(
        offset=(float(d[0]), float(d[1])),
        stderr=stderr,
        grasps=n,
        successes=successes,
        cross_entropy_before=ce_before,
        cross_entropy_after=ce_after,
        auc_before=roc_auc(before.double().cpu().numpy(), rewards),
        auc_after=roc_auc(after.double().cpu().numpy(), rewards),
    )


def check_out_path(src: str | Path, dst: str | Path) -> None:
    """Refuse to write the calibrated copy over the policy it is calibrated from, or over anything
    but an earlier calibrated copy (a training run's checkpoint, a user's files)."""
    from rlcg.rl.checkpoint import CheckpointError, read_checkpoint_meta
    from rlcg.rl.policy import resolve_policy_path

    dst = Path(dst)
    if dst.resolve() == resolve_policy_path(src).resolve():
        raise CalibrationError(f"--out {dst} is the policy itself: write the calibrated policy elsewhere")
    if not dst.exists() or (dst.is_dir() and all(p.name.startswith(".") for p in dst.iterdir())):
        return  # nothing there, or only the temporary files of a save that was killed
    try:
        calibrated = "calibration" in read_checkpoint_meta(dst)[1]["config"]
    except CheckpointError:
        calibrated = False
    if not calibrated:
        raise CalibrationError(
            f"--out {dst} already holds something other than a calibrated policy; write it elsewhere"
        )


def calibrate_policy(src: str | Path, dst: str | Path, fit: OffsetFit, data: list[str]) -> Path:
    """Copy the policy checkpoint ``src`` to ``dst`` with the fitted grasp offset in its config
    (``grasp_offset``) and a record of the fit (``calibration``); ``src`` is never changed."""
    from rlcg.rl.checkpoint import load_checkpoint, save_checkpoint
    from rlcg.rl.policy import POLICY_KIND, resolve_policy_path

    check_out_path(src, dst)
    config, weights, _ = load_checkpoint(resolve_policy_path(src), kind=POLICY_KIND)
    config = {**config, "grasp_offset": list(fit.offset), "calibration": {**fit.to_dict(), "data": data}}
    return save_checkpoint(dst, POLICY_KIND, config, weights)
