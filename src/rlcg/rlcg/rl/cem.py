"""The cross-entropy method over grasp poses, as QT-Opt uses it to pick actions and targets.

Iteration 1 samples the population uniformly over the workspace; each later iteration fits a
Gaussian to the elites and samples from it. Positions are clipped to the workspace; the yaw lives
on a half circle (a parallel gripper is symmetric under a turn by pi), so its mean and spread are
fitted on the circle of twice the angle and samples are wrapped back into the yaw bounds.
Everything is batched: B images, each with its own population, scored in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlcg.configio import ConfigError
from rlcg.sim.config import WorkspaceBounds

MAX_ITERATIONS = 100
MAX_POPULATION = 65_536  # one image's samples are scored in one batch: more would only exhaust memory


@dataclass(frozen=True)
class CEMConfig:
    iterations: int = 2  # QT-Opt: 2
    population: int = 64  # QT-Opt: 64
    elites: int = 6  # QT-Opt: 6
    min_std_fraction: float = 0.01  # floor on the spread, as a fraction of each range

    def validate(self) -> None:
        if not (1 <= self.iterations <= MAX_ITERATIONS and 1 <= self.population <= MAX_POPULATION):
            raise ConfigError(
                f"CEM needs 1..{MAX_ITERATIONS} iterations of 1..{MAX_POPULATION} samples, "
                f"got {self.iterations} x {self.population}"
            )
        if not 1 <= self.elites <= self.population:
            raise ConfigError(f"elites must be within 1..population ({self.population}), got {self.elites}")
        if not 0.0 < self.min_std_fraction <= 1.0:  # also refuses NaN
            raise ConfigError(f"min_std_fraction must be in (0, 1], got {self.min_std_fraction}")


def _wrap_yaw(yaw: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.remainder(yaw - lo, hi - lo) + lo


def cem_maximize(
    score: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
    bounds: WorkspaceBounds,
    config: CEMConfig,
    generator: torch.Generator,
    use_z: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best actions (B, 4) and their scores (B,) under ``score``: (B, N, 4) actions -> (B, N) scores."""
    config.validate()
    lo = torch.as_tensor(bounds.low, dtype=torch.float32)
    hi = torch.as_tensor(bounds.high, dtype=torch.float32)
    span = hi - lo
    yaw_full_circle = math.isclose(float(span[2]), math.pi, rel_tol=1e-6)
    n = config.population
    dims = 4 if use_z else 3

    best_actions = torch.zeros(batch, 4)
    best_scores = torch.full((batch,), -math.inf)
    mean = std = None
    for it in range(config.iterations):
        if it == 0:
            u = torch.rand(batch, n, dims, generator=generator)
            samples = lo[:dims] + u * span[:dims]
        else:
            eps = torch.randn(batch, n, dims, generator=generator)
            samples = mean[:, None, :] + eps * std[:, None, :]
            samples[..., :2] = torch.minimum(torch.maximum(samples[..., :2], lo[:2]), hi[:2])
            if use_z:
                samples[..., 3] = samples[..., 3].clamp(float(lo[3]), float(hi[3]))
            if yaw_full_circle:
                samples[..., 2] = _wrap_yaw(samples[..., 2], float(lo[2]), float(hi[2]))
            else:
                samples[..., 2] = samples[..., 2].clamp(float(lo[2]), float(hi[2]))
        actions = torch.zeros(batch, n, 4)
        actions[..., :dims] = samples
        scores = score(actions.to(device)).float().cpu()

        top_scores, top_idx = scores.topk(config.elites, dim=1)
        better = top_scores[:, 0] > best_scores
        best_scores = torch.where(better, top_scores[:, 0], best_scores)
        best_actions[better] = actions[better, top_idx[better, 0]]

        elites = torch.gather(actions, 1, top_idx[..., None].expand(-1, -1, 4))[..., :dims]
        mean = elites.mean(dim=1)
        std = elites.std(dim=1, unbiased=False) if config.elites > 1 else torch.zeros_like(mean)
        if yaw_full_circle:  # circular statistics on the doubled angle
            s, c = torch.sin(2 * elites[..., 2]).mean(1), torch.cos(2 * elites[..., 2]).mean(1)
            mean[:, 2] = torch.atan2(s, c) / 2
            resultant = torch.sqrt(s * s + c * c).clamp(1e-6, 1.0)
            std[:, 2] = torch.sqrt(-2 * torch.log(resultant)) / 2
        std = torch.maximum(std, span[:dims] * config.min_std_fraction)
    return best_actions, best_scores
