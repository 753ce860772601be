"""The loss terms of RL-CycleGAN (Rao et al., CVPR 2020), one function per term of the paper.

    L_RL-CycleGAN = lambda_GAN L_GAN(G, D_Y) + lambda_GAN L_GAN(F, D_X) + lambda_cycle L_cyc(G, F)
                  + lambda_RL-scene L_RL-scene(G, F) + lambda_RL L_RL(Q)

X is the simulator's image domain, Y the real one; G: X -> Y, F: Y -> X.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def gan_discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """The discriminator's side of L_GAN(G, D_Y) = E_y[log D_Y(y)] + E_x[log(1 - D_Y(G(x)))], maximised by D_Y.
    LSGAN (CycleGAN's choice) replaces the log terms by squares: (D(y) - 1)^2 + D(G(x))^2."""
    if kind == "lsgan":
        return 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
    if kind == "bce":
        return 0.5 * (
            F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        )
    raise ValueError(f"unknown GAN objective {kind!r} (lsgan or bce)")


def gan_generator_loss(d_fake: torch.Tensor, kind: str = "lsgan") -> torch.Tensor:
    """The generator's side of L_GAN: make the discriminator call its images real
    (non-saturating form: -log D(G(x)); LSGAN: (D(G(x)) - 1)^2)."""
    if kind == "lsgan":
        return F.mse_loss(d_fake, torch.ones_like(d_fake))
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    raise ValueError(f"unknown GAN objective {kind!r} (lsgan or bce)")


def image_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(a, b)
    if kind == "l1":
        return F.l1_loss(a, b)
    raise ValueError(f"unknown distance {kind!r} (mse or l1)")


def cycle_loss(
    x: torch.Tensor, x_cycled: torch.Tensor, y: torch.Tensor, y_cycled: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """L_cyc(G, F) = E_x d(F(G(x)), x) + E_y d(G(F(y)), y), d = mean squared error in the paper."""
    return image_distance(x_cycled, x, kind) + image_distance(y_cycled, y, kind)


def identity_loss(
    y: torch.Tensor,
    g_of_y: torch.Tensor,
    x: torch.Tensor | None = None,
    f_of_x: torch.Tensor | None = None,
    kind: str = "mse",
) -> torch.Tensor:
    """CycleGAN's L_identity(G, F) = E_y d(G(y), y) + E_x d(F(x), x): a generator fed an image of its
    own output domain should leave it alone. Without F (the gan method) only the G term."""
    loss = image_distance(g_of_y, y, kind)
    if f_of_x is not None:
        loss = loss + image_distance(f_of_x, x, kind)
    return loss


@dataclass
class SixQ:
    """The six Q-values of the RL-scene consistency loss, for sim (x) and real (y) samples."""

    q_x: torch.Tensor  # Q_sim(x, a)
    q_x1: torch.Tensor  # Q_real(G(x), a)          (q'_x)
    q_x2: torch.Tensor  # Q_sim(F(G(x)), a)        (q''_x)
    q_y: torch.Tensor  # Q_real(y, a)
    q_y1: torch.Tensor  # Q_sim(F(y), a)           (q'_y)
    q_y2: torch.Tensor  # Q_real(G(F(y)), a)       (q''_y)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {
            "q_x": self.q_x,
            "q'_x": self.q_x1,
            "q''_x": self.q_x2,
            "q_y": self.q_y,
            "q'_y": self.q_y1,
            "q''_y": self.q_y2,
        }


# The network and the image behind each of the six Q-values; the x-side values take the sim action,
# the y-side values the real one.
SIX_Q_INPUTS: dict[str, tuple[str, str]] = {
    "q_x": ("Q_sim", "x"),
    "q_x1": ("Q_real", "G(x)"),
    "q_x2": ("Q_sim", "F(G(x))"),
    "q_y": ("Q_real", "y"),
    "q_y1": ("Q_sim", "F(y)"),
    "q_y2": ("Q_real", "G(F(y))"),
}


def six_q_values(
    q_value: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
    images: Mapping[str, torch.Tensor],
    sim_actions: torch.Tensor,
    real_actions: torch.Tensor,
) -> SixQ:
    """The six Q-values of L_RL-scene. ``q_value(network name, images, actions)`` gives sigmoid Q (with
    live or detached parameters, as the caller needs); ``images`` holds x, y and the four translations
    under the names of SIX_Q_INPUTS, in the Q-network's input range."""
    return SixQ(
        **{
            key: q_value(net, images[image], sim_actions if key.startswith("q_x") else real_actions)
            for key, (net, image) in SIX_Q_INPUTS.items()
        }
    )


def rl_scene_loss(q: SixQ) -> torch.Tensor:
    """L_RL-scene(G, F) = d(q_x, q'_x) + d(q_x, q''_x) + d(q'_x, q''_x)
                       + d(q_y, q'_y) + d(q_y, q''_y) + d(q'_y, q''_y),   d = mean squared error.
    Each triple shows one scene, so a task-aware translation keeps its Q-values equal."""
    d = F.mse_loss
    return (
        d(q.q_x, q.q_x1)
        + d(q.q_x, q.q_x2)
        + d(q.q_x1, q.q_x2)
        + d(q.q_y, q.q_y1)
        + d(q.q_y, q.q_y2)
        + d(q.q_y1, q.q_y2)
    )
