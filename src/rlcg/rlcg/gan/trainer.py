"""The RL-CycleGAN trainer and the GAN baselines of the paper's Table 1.

Which parameters each loss updates (docs/method.md explains why):

    loss term                       updates          sees gradients through, but does not update
    L_GAN(G, D_Y), L_GAN(F, D_X)    G, F             D_Y, D_X (frozen in the generator step)
      (discriminator side)          D_Y, D_X         -
    L_cyc(G, F)                     G, F             -
    L_identity(G, F) (option)       G, F             -
    L_RL-scene, generator step      G, F             Q_sim, Q_real (frozen there)
    L_RL-scene, Q step (option)     Q_sim, Q_real    - (translated images are detached)
    L_RL(Q)                         Q_sim, Q_real    - (translated images are detached)

Detaching the images in every Q update keeps the generators from bending images to make the TD
regression or the consistency easy; the generators learn about the task only through the generator
step's L_RL-scene. The paper writes the term L_RL-scene(G, F): it moves the generators. Training the
Q-networks on it too (``rl_scene_trains_q``, off by default) lets Q_real meet real images without
real RL data (Q_real(y) is pulled toward Q_sim(F(y))), but measured on 10,000 sim episodes it also
pulled Q_real's values together faster than its TD loss could separate them (docs/results.md).

Methods: ``gan`` trains G adversarially and Q_real on G(x); ``cyclegan`` adds F and L_cyc;
``rl-cyclegan`` adds Q_sim and L_RL-scene. (``sim-only`` and ``randomized-sim`` train Q alone:
rlcg.rl.qtopt.) With ``real_rl`` Q_real also learns from the real transitions.

Runs on CPU or CUDA, in one process or under ``torchrun`` (DistributedDataParallel: each phase's
networks are one wrapped module called once per step, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from rlcg.configio import from_dict, to_dict
from rlcg.errors import RlcgError
from rlcg.gan import losses
from rlcg.gan.methods import GAN_METHODS, METHODS_WITH_F
from rlcg.interrupts import Interrupted, ctrl_c_deferred
from rlcg.models.gan import DiscriminatorConfig, GeneratorConfig, PatchDiscriminator, ResnetGenerator, init_weights
from rlcg.models.qnet import QNetConfig, QNetwork
from rlcg.rl.augment import PhotometricAugment
from rlcg.rl.cem import CEMConfig
from rlcg.rl.checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from rlcg.rl.policy import save_policy
from rlcg.rl.qtopt import (
    QTrainConfig,
    WeightedSources,
    check_finite_stats,
    cosine_rate,
    flush_subnormals,
    polyak_update,
    td_loss,
    td_targets,
)

CHECKPOINT_KIND = "rl-cyclegan"
Q_REAL_AUGMENT = PhotometricAugment()
SCENE_IMAGES = ("G(x)", "F(G(x))", "F(y)", "G(F(y))")  # the translations L_RL-scene's six Q-values see


@dataclass(frozen=True)
class LossWeights:
    gan: float = 1.0  # CycleGAN
    cycle: float = 10.0  # CycleGAN's lambda = 10
    rl_scene: float = 1.0  # not published; 1 beat 10 in pseudo-real (docs/method.md, docs/results.md)
    rl: float = 1.0
    # CycleGAN's identity term, d(G(y), y) + d(F(x), x); not in the RL-CycleGAN paper, so off (0).
    # CycleGAN weighs it at half of lambda_cycle where colours must survive the translation.
    identity: float = 0.0


@dataclass(frozen=True)
class GanTrainConfig:
    method: Literal["gan", "cyclegan", "rl-cyclegan"] = "rl-cyclegan"
    steps: int = 2000
    batch_size: int = 8
    q_batch_size: int = 32  # transitions per Q update: the GAN batch plus sim samples translated without gradients
    lr_gan: float = 2e-4  # CycleGAN (Adam, betas 0.5, 0.999)
    lr_q: float = 5e-4
    # constant; CycleGAN's schedule for every optimizer (linear-decay): the rates held for the first
    # half of the steps, then decayed linearly to zero; or q-cosine: the GAN's rates constant and the
    # Q-networks' decayed by a cosine to 5% over the steps, as rlcg train-q's final round trains the
    # shipped policy. Constant by default: the linear decay lowered rl-cyclegan on the paper preset
    # (docs/results.md)
    lr_schedule: Literal["constant", "linear-decay", "q-cosine"] = "constant"
    # With linear-decay: the step from which the rates fall, reaching zero at the last step. None is
    # CycleGAN's half of the steps. A later start decays only a run's last stretch, and a constant-rate
    # run resumed at or before it keeps the rates of every step it has trained (objective_changes).
    lr_decay_from: int | None = None
    # Q_real updates per joint step: the first on the GAN batch as always, the others on fresh sim
    # transitions translated by the current G without gradients. More than 1 gives Q_real the
    # shipped policy's update budget while the GAN keeps its own; G still moves between them.
    q_updates_per_step: int = 1
    # After the joint steps, this many more steps of Q_real alone on G(x) of the frozen final G,
    # its rate decayed by a cosine to 5%, as the shipped sim-only Q was trained. 0, the default, is
    # the paper's joint training alone: on the paper preset a tail fitted G(x) better and real
    # images worse, and lost 4 points (docs/results.md).
    q_tail_steps: int = 0
    # Export Q_real as the uniform average of its weights after each step past this one
    # (stochastic weight averaging), instead of its last weights. With G moving, the average
    # spans Q_reals fitted to many translations. None, the default, exports the last weights.
    q_real_average_from: int | None = None
    # Redraw the colour, brightness, contrast, sharpness and noise of every image Q_real learns from
    # (rlcg.rl.augment), so that it cannot key on how G paints a scene. Off by default: not in the paper.
    q_real_augment: bool = False
    gan_objective: Literal["lsgan", "bce"] = "lsgan"
    cycle_distance: Literal["mse", "l1"] = "mse"  # the paper's d
    td_distance: Literal["mse", "bce"] = "bce"
    weights: LossWeights = field(default_factory=LossWeights)
    real_rl: bool = False
    # With real_rl: the share of Q_real's TD loss that comes from the real transitions, against G(x)
    # of sim ones: 2(1 - s) L_RL(G(x)) + 2s L_RL(y). 0.5, the default, weighs both alike, as before the
    # setting existed; a few hundred real episodes drawn at that share are memorised (docs/results.md).
    real_rl_share: float = 0.5
    # L_RL-scene(G, F) trains the generators only, as the paper writes it. True also trains Q_sim and
    # Q_real on it (detached images); off by default: it flattened Q_real's ranking (docs/results.md).
    rl_scene_trains_q: bool = False
    gamma: float = 0.9
    polyak: float = 0.995
    target_cem: CEMConfig = field(default_factory=CEMConfig)
    image_pool: int = 50  # CycleGAN's history of generated images for the discriminators
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    seed: int = 0
    bf16: bool = False
    # Hot-path options, off by default (`rlcg bench train --ablation`, docs/benchmarks.md): at 64x64
    # channels_last and fused Adam gained nothing beyond run-to-run noise on the 2-core CPU or on an H200,
    # whose step is launch-bound; bf16 was slower on both (0.74x on the H200 at batch 8, 17x slower on the
    # CPU). They may pay with larger images.
    channels_last: bool = False  # memory format of every network's weights and activations
    fused_adam: bool = False  # one fused kernel per optimizer step instead of PyTorch's default implementation
    log_every: int = 25
    grid_every: int = 250
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "linear-decay", "q-cosine"):
            raise ValueError(
                f"unknown learning-rate schedule {self.lr_schedule!r} (constant, linear-decay or q-cosine)"
            )
        if self.lr_decay_from is not None:
            if self.lr_schedule != "linear-decay":
                raise ValueError(f"lr_decay_from applies to the linear-decay schedule, not {self.lr_schedule!r}")
            if not 0 <= self.lr_decay_from < self.steps:
                raise ValueError(f"lr_decay_from must be a step in [0, {self.steps}), got {self.lr_decay_from}")
        if self.q_updates_per_step < 1:
            raise ValueError(f"q_updates_per_step must be >= 1, got {self.q_updates_per_step}")
        if self.q_tail_steps < 0:
            raise ValueError(f"q_tail_steps must be >= 0, got {self.q_tail_steps}")
        if not 0.0 < self.real_rl_share <= 1.0:
            raise ValueError(f"real_rl_share must be in (0, 1], got {self.real_rl_share}")
        total = self.steps + self.q_tail_steps
        if self.q_real_average_from is not None and not 0 <= self.q_real_average_from < total:
            raise ValueError(
                f"q_real_average_from must be a step in [0, {total}) (the run's steps), got {self.q_real_average_from}"
            )

    @property
    def td_weights(self) -> dict[str, float] | None:
        """Weights of the TD terms that are not 1: Q_real's two with real_rl (see real_rl_share)."""
        if not self.real_rl:
            return None
        return {"Q_real": 2.0 * (1.0 - self.real_rl_share), "Q_real:real": 2.0 * self.real_rl_share}

    @property
    def uses_f(self) -> bool:
        return self.method in METHODS_WITH_F

    @property
    def uses_q_sim(self) -> bool:
        return self.method == "rl-cyclegan"


def lr_factors(cfg: GanTrainConfig, step: int) -> tuple[float, float]:
    """The fractions of (lr_gan, lr_q) used by joint step ``step`` (0-based)."""
    if cfg.lr_schedule == "constant":
        return 1.0, 1.0
    if cfg.lr_schedule == "q-cosine":
        return 1.0, cosine_rate(1.0, step, cfg.steps, QTrainConfig.final_lr_fraction)
    start = cfg.steps / 2 if cfg.lr_decay_from is None else cfg.lr_decay_from
    factor = min(1.0, (cfg.steps - step) / (cfg.steps - start))
    return factor, factor


def q_tail_lr_factor(cfg: GanTrainConfig, step: int) -> float:
    """Q's fraction of lr_q at step ``step`` of the Q tail (steps cfg.steps .. cfg.steps + q_tail_steps - 1):
    rlcg train-q's cosine, to its final fraction."""
    return cosine_rate(1.0, step - cfg.steps, cfg.q_tail_steps, QTrainConfig.final_lr_fraction)


def to_gan_range(images: torch.Tensor) -> torch.Tensor:
    """Q-network input ([-0.5, 0.5], see QNetwork.preprocess) -> generator range [-1, 1]."""
    return images * 2.0


def to_q_range(images: torch.Tensor) -> torch.Tensor:
    return images * 0.5


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """Generator range [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3), as a camera image is stored."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class Generators(nn.Module):
    """G (and F): one module, called once per step, so DistributedDataParallel sees one forward."""

    def __init__(self, cfg: GanTrainConfig):
        super().__init__()
        self.G = ResnetGenerator(cfg.generator)
        self.F = ResnetGenerator(cfg.generator) if cfg.uses_f else None
        self.identity = cfg.weights.identity > 0

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"G(x)": self.G(x)}
        if self.F is not None:
            out["F(G(x))"] = self.F(out["G(x)"])
            out["F(y)"] = self.F(y)
            out["G(F(y))"] = self.G(out["F(y)"])
        if self.identity:
            out["G(y)"] = self.G(y)
            if self.F is not None:
                out["F(x)"] = self.F(x)
        return out


class Discriminators(nn.Module):
    def __init__(self, cfg: GanTrainConfig):
        super().__init__()
        self.kind = cfg.gan_objective
        self.D_Y = PatchDiscriminator(cfg.discriminator)
        self.D_X = PatchDiscriminator(cfg.discriminator) if cfg.uses_f else None

    def forward(self, real_y, fake_y, real_x=None, fake_x=None) -> dict[str, torch.Tensor]:
        """Each discriminator's side of L_GAN: D_Y's on real images against G(x), D_X's on sim images
        against F(y) (methods with F)."""
        parts = {"D_Y": self.d_loss(self.D_Y, real_y, fake_y)}
        if self.D_X is not None:
            parts["D_X"] = self.d_loss(self.D_X, real_x, fake_x)
        return parts

    def d_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return losses.gan_discriminator_loss(d(real), d(fake), self.kind)


class QFunctions(nn.Module):
    """Q_real (and Q_sim); ``forward`` computes their TD losses from prepared inputs in one call."""

    def __init__(self, qcfg: QNetConfig, with_sim: bool):
        super().__init__()
        self.Q_real = QNetwork(qcfg)
        self.Q_sim = QNetwork(qcfg) if with_sim else None

    def forward(
        self,
        terms: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
        kind: str,
        scene: tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor] | None = None,
        weights: dict[str, float] | None = None,
    ):
        """terms: (network name, images, actions, targets); returns the loss, summed with ``weights``
        (1 for a term not named), and each term unweighted.
        scene: L_RL-scene's images (named as in losses.SIX_Q_INPUTS), sim actions and real actions;
        given, the six Q-values are computed with live parameters and returned under ``parts["rl_scene"]``."""
        parts = {}
        for name, images, actions, targets in terms:
            parts[name] = td_loss(getattr(self, name.split(":")[0])(images, actions), targets, kind)
        weights = weights or {}
        loss = sum(weights[name] * part if name in weights else part for name, part in parts.items())
        if scene is not None:
            six = losses.six_q_values(lambda net, im, a: torch.sigmoid(getattr(self, net)(im, a)), *scene)
            parts["rl_scene"] = losses.rl_scene_loss(six)
        return loss, parts


class ImagePool:
    """CycleGAN's buffer: the discriminator sees a mix of current and earlier generated images."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng, self.images = size, rng, []

    def state(self) -> dict:
        images = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"images": images, "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict, device: torch.device | str = "cpu") -> None:
        from rlcg.rl.qtopt import _int_keys_state

        # checkpoints load to the CPU; query() mixes these images with the training device's
        self.images = [im.to(device) for im in state["images"]] if state["images"].numel() else []
        self.rng.bit_generator.state = _int_keys_state(state["rng"])

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() < 0.5:
                k = int(self.rng.integers(self.size))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)


def _as_floats(stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """A step's loss terms as floats, copied from the device in one go: a float() per term would make
    the host wait for the GPU at every term, and queue no work meanwhile."""
    if not stats:
        return {}
    values = torch.stack([v.float().reshape(()) for v in stats.values()]).tolist()
    return dict(zip(stats.keys(), values))


def _frozen(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.named_parameters()}


def _frozen_q(q: QNetwork, images: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """sigmoid Q(images, actions) with Q's parameters detached: gradients reach the images only."""
    return torch.sigmoid(functional_call(q, _frozen(q), (images, actions)))


class DistributedContext:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or a single process."""

    def __init__(self, device: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.device(device).type == "cuda" and self.world_size > 1:
            device = self._rank_gpu(device)
        self.device = torch.device(device)
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)

    def _rank_gpu(self, device: str) -> str:
        """torchrun gives each process the GPU of its LOCAL_RANK; an index of the user's would put
        every process on one GPU, which NCCL refuses."""
        from rlcg.device import DeviceError

        if torch.device(device).index is not None:
            raise DeviceError(
                f"--device {device}: under torchrun each process takes the GPU of its LOCAL_RANK; pass "
                "--device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)"
            )
        if self.local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"process {self.local_rank} of this node has no GPU: {torch.cuda.device_count()} visible; "
                "start at most that many with torchrun --nproc_per_node"
            )
        torch.cuda.set_device(self.local_rank)  # NCCL's barrier and object collectives use the current GPU
        return f"cuda:{self.local_rank}"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    def average_gradients(self, module: nn.Module) -> None:
        if self.world_size == 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world_size

    def gather_to_main(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` on rank 0 (in rank order; ``[obj]`` in a single process), an empty
        list on the other ranks. Every rank must call it."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, gathered, dst=0)
        return gathered if self.is_main else []

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def _load_named(weights: dict[str, torch.Tensor], nets: dict[str, nn.Module]) -> None:
    """Load each network from the checkpoint weights stored under its name ("G.conv.weight", ...)."""
    for name, net in nets.items():
        net.load_state_dict({k[len(name) + 1 :]: v for k, v in weights.items() if k.startswith(name + ".")})


class RLCycleGANTrainer:
    """Trains one of the GAN methods from sim transitions and real images (and real transitions)."""

    def __init__(
        self,
        config: GanTrainConfig,
        qnet_config: QNetConfig,
        sim_data: WeightedSources,
        real_data: WeightedSources,
        out: str | Path,
        device: str = "cpu",
        resume: bool = False,
        init_q: str | Path | None = None,
        provenance: dict[str, Any] | None = None,
        fresh_q_real: bool = False,
        init_run: str | Path | None = None,
    ):
        if config.method not in GAN_METHODS:
            raise RlcgError(f"method {config.method!r} is not a GAN method ({', '.join(GAN_METHODS)})")
        self.cfg = config
        self.dist = DistributedContext(device)
        self.device = self.dist.device
        self.out = Path(out)
        self.sim_data, self.real_data = sim_data, real_data
        self.provenance = provenance or {}
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        flush_subnormals()
        config.discriminator.check_image_size(qnet_config.image_size)
        gens, discs = Generators(config), Discriminators(config)
        init_weights(gens)
        init_weights(discs)
        qs = QFunctions(qnet_config, config.uses_q_sim)
        if init_q is not None and init_run is not None:
            raise RlcgError("init_q and init_run both set where the Q-networks start: pass one")
        if fresh_q_real and not ((init_q is not None or init_run is not None) and config.uses_q_sim):
            raise RlcgError("fresh_q_real starts Q_real from scratch and Q_sim from init_q or init_run: it needs both")
        if init_q is not None:
            self._init_q(qs, init_q, q_real=not fresh_q_real)
        # Batches arrive channels_last (QNetwork.preprocess); with channels_last weights too, no
        # convolution converts layouts.
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.gens = self.dist.wrap(gens.to(self.device, memory_format=fmt))
        self.discs = self.dist.wrap(discs.to(self.device, memory_format=fmt))
        self.qs = self.dist.wrap(qs.to(self.device, memory_format=fmt))
        self.q_targets = copy.deepcopy(_unwrap(self.qs)).eval()
        # SWA of Q_real (q_real_average_from): the running mean of its weights
        self.q_real_average = (
            copy.deepcopy(_unwrap(self.qs).Q_real).eval() if config.q_real_average_from is not None else None
        )
        if init_run is not None:  # the Polyak targets too, so the run's TD targets carry on; the average starts anew
            fresh = ("Q_real", "Q_real_target") if fresh_q_real else ()
            nets = {k: v for k, v in self.nets.items() if k not in (*fresh, "Q_real_average")}
            self._init_from_run(init_run, qnet_config, nets)
        betas = (0.5, 0.999)
        fused = True if config.fused_adam else None  # None: PyTorch's default (for-loop on CPU, foreach on CUDA)
        self.opt_g = torch.optim.Adam(self.gens.parameters(), lr=config.lr_gan, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.discs.parameters(), lr=config.lr_gan, betas=betas, fused=fused)
        self.opt_q = torch.optim.Adam(self.qs.parameters(), lr=config.lr_q, fused=fused)
        rank_seed = [config.seed, self.dist.rank]
        self.rng = np.random.default_rng(rank_seed)  # each rank draws its own batches
        self.generator = torch.Generator().manual_seed(config.seed * 1000 + self.dist.rank)
        self.pools = {
            k: ImagePool(config.image_pool, np.random.default_rng([*rank_seed, i])) for i, k in enumerate(("x", "y"))
        }
        self.step = 0
        self.history: list[dict[str, float]] = []
        if resume and (self.out / "checkpoint" / "config.json").is_file():
            self._resume()

    # ------------------------------------------------------------------ set-up
    def _init_q(self, qs: QFunctions, path: str | Path, q_real: bool = True) -> None:
        """Start Q_sim and Q_real (unless not ``q_real``) from a trained policy checkpoint (e.g. the
        sim-only policy). A fresh Q_real keeps Q_sim's start, which L_RL-scene needs from the first step."""
        cfg, weights, _ = load_checkpoint(path, kind="q-policy")
        if cfg["qnet"] != to_dict(qs.Q_real.config):
            raise RlcgError(f"--init-q {path}: its Q-network differs from this run's ({cfg['qnet']})")
        if q_real:
            qs.Q_real.load_state_dict(weights)
        if qs.Q_sim is not None:
            qs.Q_sim.load_state_dict(weights)

    def _init_from_run(self, run: str | Path, qnet_config: QNetConfig, nets: dict[str, nn.Module]) -> None:
        """Start this run's networks from another GAN run's last checkpoint: a new run, with fresh
        optimizers and its own objective and schedule, from where that one stopped (for example a
        fresh Q_real on data collected by an earlier run's policy, with that run's G, F and
        discriminators carrying on)."""
        cfg, weights, _ = load_checkpoint(Path(run) / "checkpoint", kind=CHECKPOINT_KIND)
        if cfg["qnet"] != to_dict(qnet_config):
            raise RlcgError(f"--init-run {run}: its Q-network differs from this run's ({cfg['qnet']})")
        theirs = config_from_dict(cfg["train"])
        for part in ("generator", "discriminator"):
            if getattr(theirs, part) != getattr(self.cfg, part):
                raise RlcgError(
                    f"--init-run {run}: its {part} ({to_dict(getattr(theirs, part))}) differs from this run's "
                    f"({to_dict(getattr(self.cfg, part))}); pass the same --gen-width/--gen-blocks/--disc-width/"
                    "--disc-layers"
                )
        missing = sorted(k for k in nets if not any(w.startswith(k + ".") for w in weights))
        if missing:
            raise RlcgError(
                f"--init-run {run}: a {theirs.method} run holds no {', '.join(missing)}, which {self.cfg.method} needs"
            )
        _load_named(weights, nets)

    @property
    def nets(self) -> dict[str, nn.Module]:
        g, d, q = _unwrap(self.gens), _unwrap(self.discs), _unwrap(self.qs)
        nets = {"G": g.G, "D_Y": d.D_Y, "Q_real": q.Q_real, "Q_real_target": self.q_targets.Q_real}
        if g.F is not None:
            nets.update(F=g.F, D_X=d.D_X)
        if q.Q_sim is not None:
            nets.update(Q_sim=q.Q_sim, Q_sim_target=self.q_targets.Q_sim)
        if self.q_real_average is not None:
            nets["Q_real_average"] = self.q_real_average
        return nets

    @property
    def q_real_averaged(self) -> int:
        """How many of Q_real's weights the average holds: one per step past q_real_average_from."""
        start = self.cfg.q_real_average_from
        return 0 if start is None else max(0, self.step - start)

    @property
    def policy_q(self) -> QNetwork:
        """The Q-network exported as the policy: Q_real's weight average once it holds any, else Q_real."""
        if self.q_real_averaged > 0:
            return self.q_real_average
        return _unwrap(self.qs).Q_real

    @torch.no_grad()
    def _step_done(self) -> None:
        """Count the step; past q_real_average_from, fold Q_real's weights into their uniform average
        (every rank holds the same weights, so every rank holds the same average)."""
        self.step += 1
        if self.q_real_averaged == 0:
            return
        for avg, now in zip(self.q_real_average.parameters(), _unwrap(self.qs).Q_real.parameters()):
            avg.add_(now.detach() - avg, alpha=1.0 / self.q_real_averaged)

    def _weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, net in self.nets.items() for k, v in net.state_dict().items()}

    def _streams(self) -> dict[str, Any]:
        """This rank's random streams and image pools: what makes its batches its own."""
        return {
            "numpy_rng": self.rng.bit_generator.state,
            "torch_generator": self.generator.get_state(),
            "pools": {k: pool.state() for k, pool in self.pools.items()},
        }

    def _train_state(self, other_ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """Rank 0's state, and the streams of ranks 1..N-1 (``other_ranks``): a resumed rank must go on
        drawing its own batches, not rank 0's."""
        return {
            "step": self.step,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_q": self.opt_q.state_dict(),
            **self._streams(),
            "history": self.history,
            "world_size": self.dist.world_size,
            "other_ranks": other_ranks,
        }

    def _resume(self) -> None:
        from rlcg.rl.qtopt import _int_keys_state

        cfg, weights, state = load_checkpoint(self.out / "checkpoint", kind=CHECKPOINT_KIND, with_train_state=True)
        if cfg["train"]["method"] != self.cfg.method:
            raise RlcgError(f"{self.out}: holds a {cfg['train']['method']!r} run, not {self.cfg.method!r}")
        if cfg["qnet"] != to_dict(_unwrap(self.qs).Q_real.config):
            raise RlcgError(
                f"{self.out}: the run's Q-network ({cfg['qnet']}) differs from this one (image size, --channels?); "
                "cannot resume"
            )
        joint_done = min(int(state["step"]), int(cfg["train"]["steps"]))  # past its steps: in the Q tail
        if self.cfg.steps < joint_done:
            raise RlcgError(f"{self.out}: the run has trained {joint_done} joint steps; --steps cannot be fewer")
        changed = objective_changes(cfg["train"], self.cfg, done_steps=int(state["step"]))
        if changed:
            raise RlcgError(
                f"{self.out}: --resume would continue with a different objective than the run was started with ("
                + "; ".join(changed)
                + "); pass the run's own settings or choose another --out"
            )
        saved_steps, saved_tail = cfg["train"]["steps"], cfg["train"].get("q_tail_steps", 0)
        if int(state["step"]) > saved_steps and (saved_steps, saved_tail) != (self.cfg.steps, self.cfg.q_tail_steps):
            raise RlcgError(
                f"{self.out}: the run is {int(state['step']) - saved_steps} steps into its Q tail; resume it with "
                f"--steps {saved_steps} --q-tail-steps {saved_tail}"
            )
        _load_named(weights, self.nets)
        load_optimizer_state(self.opt_g, state["opt_g"])
        load_optimizer_state(self.opt_d, state["opt_d"])
        load_optimizer_state(self.opt_q, state["opt_q"])
        saved_world = state.get("world_size")  # None: saved before per-rank streams were kept
        if saved_world is not None and int(saved_world) != self.dist.world_size:
            raise RlcgError(
                f"{self.out}: the run was trained by {int(saved_world)} process(es) and is resumed by "
                f"{self.dist.world_size}; each process's batches are part of the run, so resume it with "
                + ("a single process" if int(saved_world) == 1 else f"torchrun --nproc_per_node {int(saved_world)}")
            )
        if self.dist.rank == 0:
            streams = state
        elif saved_world is not None:
            streams = state["other_ranks"][self.dist.rank - 1]
        else:  # an older checkpoint holds rank 0's streams only: the other ranks keep their seeds' streams
            streams = None
        if streams is not None:
            self.rng.bit_generator.state = _int_keys_state(streams["numpy_rng"])
            self.generator.set_state(streams["torch_generator"])
            for k, pool in self.pools.items():
                pool.load_state(streams["pools"][k], self.device)
        self.step = int(state["step"])
        self.history = list(state["history"])

    def save(self) -> None:
        """The full training checkpoint and the exported Q_real policy, written by rank 0; every rank
        calls it, to hand rank 0 its random streams."""
        other_ranks = self.dist.gather_to_main(self._streams())
        if not self.dist.is_main:
            return
        config = {
            "train": to_dict(self.cfg),
            "qnet": to_dict(_unwrap(self.qs).Q_real.config),
            "steps_done": self.step,
            **self.provenance,
        }
        save_checkpoint(
            self.out / "checkpoint", CHECKPOINT_KIND, config, self._weights(), self._train_state(other_ranks[1:])
        )
        training = {"method": self.cfg.method, "steps_done": self.step, **self.provenance}
        if self.policy_q is self.q_real_average:
            training["q_real_average"] = {"from_step": self.cfg.q_real_average_from, "weights": self.q_real_averaged}
        save_policy(self.out / "policy", self.policy_q, self.cfg.target_cem, extra={"training": training})

    # ------------------------------------------------------------------ one step
    def _batch(self, data: WeightedSources, size: int | None = None) -> dict[str, torch.Tensor]:
        from rlcg.rl.qtopt import batch_tensors

        return batch_tensors(data.sample(size or self.cfg.batch_size, self.rng), self.device)

    def generator_loss(self, sim, real) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """lambda_GAN L_GAN (generator side) + lambda_cycle L_cyc + lambda_RL-scene L_RL-scene; the
        discriminators and Q-networks are evaluated with detached parameters (they are not updated).
        Returns the loss, the translated images and the terms (detached tensors, see _as_floats)."""
        cfg, w, nets = self.cfg, self.cfg.weights, self.nets
        x, y = to_gan_range(sim["image"]), to_gan_range(real["image"])
        stats: dict[str, torch.Tensor] = {}
        out = self.gens(x, y)
        loss = w.gan * losses.gan_generator_loss(  # L_GAN(G, D_Y)
            functional_call(nets["D_Y"], _frozen(nets["D_Y"]), (out["G(x)"],)), cfg.gan_objective
        )
        stats["loss_gan_G"] = loss.detach() / max(w.gan, 1e-12)
        if cfg.uses_f:
            f_gan = losses.gan_generator_loss(  # L_GAN(F, D_X)
                functional_call(nets["D_X"], _frozen(nets["D_X"]), (out["F(y)"],)), cfg.gan_objective
            )
            cyc = losses.cycle_loss(x, out["F(G(x))"], y, out["G(F(y))"], cfg.cycle_distance)  # L_cyc(G, F)
            loss = loss + w.gan * f_gan + w.cycle * cyc
            stats.update(loss_gan_F=f_gan.detach(), loss_cycle=cyc.detach())
        if w.identity > 0:
            idt = losses.identity_loss(y, out["G(y)"], x, out.get("F(x)"), cfg.cycle_distance)  # L_identity(G, F)
            loss = loss + w.identity * idt
            stats["loss_identity"] = idt.detach()
        if cfg.uses_q_sim:
            images = {"x": sim["image"], "y": real["image"], **{k: to_q_range(out[k]) for k in SCENE_IMAGES}}
            six = losses.six_q_values(
                lambda net, im, a: _frozen_q(nets[net], im, a), images, sim["action"], real["action"]
            )
            scene = losses.rl_scene_loss(six)  # L_RL-scene(G, F)
            loss = loss + w.rl_scene * scene
            stats["loss_rl_scene"] = scene.detach()
            stats.update({k: v.detach().float().mean() for k, v in six.as_dict().items()})
        stats["loss_generators"] = loss.detach()
        return loss, out, stats

    def discriminator_loss(self, sim, real, out) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminators' side of L_GAN, on pooled generated images (generators detached): the
        sum, and each discriminator's part."""
        x, y = to_gan_range(sim["image"]), to_gan_range(real["image"])
        fake_y = self.pools["y"].query(out["G(x)"].detach().float())
        fake_x = self.pools["x"].query(out["F(y)"].detach().float()) if self.cfg.uses_f else None
        parts = self.discs(y, fake_y, x if self.cfg.uses_f else None, fake_x)
        return sum(parts.values()), parts

    def q_loss(self, sim, real, out) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """lambda_RL L_RL(Q) = E d(Q(x, a), r + gamma V(x')) on detached images, for every Q term.

        The Q-networks see ``q_batch_size`` transitions per step: the GAN batch plus more sim
        transitions translated by the current generators without gradients (cheap next to a
        generator update), so that Q learns at its own pace while the GAN trains with small batches."""
        translated = {k: v.detach().float() for k, v in out.items() if k in ("G(x)", "F(G(x))")}
        scene = None
        if self.cfg.uses_q_sim and self.cfg.rl_scene_trains_q:
            images = {k: to_q_range(out[k].detach().float()) for k in SCENE_IMAGES}
            scene = ({"x": sim["image"], "y": real["image"], **images}, sim["action"], real["action"])
        extra = self.cfg.q_batch_size - self.cfg.batch_size
        if extra > 0:
            more = self._batch(self.sim_data, extra)
            with torch.no_grad():
                gens = _unwrap(self.gens)
                more_out = {"G(x)": gens.G(to_gan_range(more["image"]))}
                if gens.F is not None:
                    more_out["F(G(x))"] = gens.F(more_out["G(x)"])
            sim = {k: torch.cat([sim[k], more[k]]) for k in sim}
            translated = {k: torch.cat([v, more_out[k].float()]) for k, v in translated.items()}
            if self.cfg.real_rl:
                more_real = self._batch(self.real_data, extra)
                real = {k: torch.cat([real[k], more_real[k]]) for k in real}
        loss, parts = self.qs(self._td_terms(sim, real, translated), self.cfg.td_distance, scene, self.cfg.td_weights)
        loss = self.cfg.weights.rl * loss  # lambda_RL L_RL(Q)
        if scene is not None:
            loss = loss + self.cfg.weights.rl_scene * parts["rl_scene"]  # lambda_RL-scene L_RL-scene(Q_sim, Q_real)
        return loss, parts

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        sim, real = self._batch(self.sim_data), self._batch(self.real_data)
        gan_factor, q_factor = lr_factors(cfg, self.step)
        for opt, lr in ((self.opt_g, cfg.lr_gan * gan_factor), (self.opt_d, cfg.lr_gan * gan_factor)):
            for group in opt.param_groups:
                group["lr"] = lr
        self._set_q_rate(q_factor)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)

        with autocast:
            g_loss, out, stats = self.generator_loss(sim, real)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()

        with autocast:
            d_loss, d_parts = self.discriminator_loss(sim, real, out)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        stats["loss_discriminators"] = d_loss.detach()
        stats.update({f"loss_discriminators/{k}": v.detach() for k, v in d_parts.items()})

        with autocast:
            q_loss, parts = self.q_loss(sim, real, out)
        self.opt_q.zero_grad(set_to_none=True)
        q_loss.backward()
        self.opt_q.step()
        polyak_update(self.q_targets, _unwrap(self.qs), cfg.polyak)
        stats["loss_rl"] = q_loss.detach()
        stats.update({f"loss_rl/{k}": v.detach() for k, v in parts.items()})
        floats = {**_as_floats(stats), "lr_factor": gan_factor, "lr_factor_q": q_factor}
        if cfg.q_updates_per_step > 1:
            extra = [self._q_real_update()[0] for _ in range(cfg.q_updates_per_step - 1)]
            floats["loss_rl/Q_real:extra"] = float(np.mean(extra))
        self._step_done()
        x, y = to_gan_range(sim["image"]), to_gan_range(real["image"])
        self._last = {"x": x, "y": y, **{k: v.detach() for k, v in out.items()}}
        return floats

    def q_tail_step(self) -> dict[str, float]:
        """One step of the Q tail (GanTrainConfig.q_tail_steps): one Q_real update on the final,
        frozen G, its rate on the tail's cosine. Q_sim and F do not shape the policy once the
        generators stop, so nothing else learns."""
        factor = q_tail_lr_factor(self.cfg, self.step)
        self._set_q_rate(factor)
        loss, parts = self._q_real_update()
        self._step_done()
        return {"loss_rl": loss, "lr_factor_q": factor, **{f"loss_rl/{k}": v for k, v in parts.items()}}

    def _set_q_rate(self, factor: float) -> None:
        for group in self.opt_q.param_groups:
            group["lr"] = self.cfg.lr_q * factor

    def _q_real_update(self) -> tuple[float, dict[str, float]]:
        """One update of Q_real alone: its TD loss on q_batch_size sim transitions translated by the
        current G without gradients (and on real transitions with real_rl). Nothing else moves: the
        Q tail and the further updates of q_updates_per_step use it."""
        cfg = self.cfg
        sim = self._batch(self.sim_data, cfg.q_batch_size)
        real = self._batch(self.real_data, cfg.q_batch_size) if cfg.real_rl else None
        qs = _unwrap(self.qs)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            with torch.no_grad():
                translated = {"G(x)": _unwrap(self.gens).G(to_gan_range(sim["image"])).float()}
            terms = self._td_terms(sim, real, translated, q_real_only=True)
            loss, parts = qs(terms, cfg.td_distance, weights=cfg.td_weights)
            loss = cfg.weights.rl * loss  # lambda_RL L_RL(Q_real)
        self.opt_q.zero_grad(set_to_none=True)
        loss.backward()
        self.dist.average_gradients(qs.Q_real)  # outside DDP's forward, so averaged by hand
        self.opt_q.step()
        polyak_update(self.q_targets.Q_real, qs.Q_real, cfg.polyak)  # Q_sim did not move: nor does its target
        return float(loss.detach()), {k: float(v.detach()) for k, v in parts.items()}

    def _td_terms(
        self, sim, real, translated, q_real_only: bool = False
    ) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
        cfg, targets = self.cfg, self.q_targets

        def y_of(net: QNetwork, batch, next_images) -> torch.Tensor:
            return td_targets(
                batch["reward"], batch["done"], next_images, net, cfg.gamma, cfg.target_cem, self.generator
            )

        live = ~sim["done"]
        # Q_real learns the sim transitions as they would look in reality: G(x), with G(x') for V.
        g_next = sim["next_image"]
        if live.any():
            with torch.no_grad():
                g_next = to_q_range(_unwrap(self.gens).G(to_gan_range(sim["next_image"])))
        gx = self._q_real_input(to_q_range(translated["G(x)"]))
        terms = [("Q_real", gx, sim["action"], y_of(targets.Q_real, sim, g_next))]
        if cfg.uses_q_sim and not q_real_only:
            y_sim = y_of(targets.Q_sim, sim, sim["next_image"])
            terms.append(("Q_sim", sim["image"], sim["action"], y_sim))
            # the paper's caption: Q_sim also learns on the cycled image F(G(x)) with the sim action
            terms.append(("Q_sim:cycled", to_q_range(translated["F(G(x))"]), sim["action"], y_sim))
        if cfg.real_rl:
            y_real = y_of(targets.Q_real, real, real["next_image"])
            terms.append(("Q_real:real", self._q_real_input(real["image"]), real["action"], y_real))
        return terms

    def _q_real_input(self, images: torch.Tensor) -> torch.Tensor:
        """What Q_real's TD loss sees of ``images``: augmented with q_real_augment. The TD targets'
        next images are left as they are: the target network values the scene, not a redrawn look."""
        return Q_REAL_AUGMENT(images, self.generator) if self.cfg.q_real_augment else images

    # ------------------------------------------------------------------ loop
    def image_grid(self, n: int = 4) -> np.ndarray:
        """x | G(x) | F(G(x)) and y | F(y) | G(F(y)) rows, as one uint8 image."""
        last = self._last
        cols_x = [last["x"], last["G(x)"]] + ([last["F(G(x))"]] if "F(G(x))" in last else [])
        cols_y = [last["y"]] + ([last["F(y)"], last["G(F(y))"]] if "F(y)" in last else [])

        def rows(cols):
            imgs = [to_uint8_images(c[:n]) for c in cols]
            return np.concatenate([np.concatenate([im[i] for im in imgs], axis=1) for i in range(len(imgs[0]))], 0)

        left, right = rows(cols_x), rows(cols_y)
        gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
        if right.shape[1] < left.shape[1]:
            right = np.concatenate(
                [right, np.full((right.shape[0], left.shape[1] - right.shape[1], 3), 255, np.uint8)], 1
            )
        return np.concatenate([left, gap, right], axis=1)

    def fit(self, progress: bool = True, writer: Any = None, monitor: Any = None) -> list[dict[str, float]]:
        """Train to ``cfg.steps``; ``monitor`` (rlcg.eval.offline.OutcomeMonitor) scores Q_real on recorded outcomes."""
        from PIL import Image
        from tqdm import tqdm

        cfg = self.cfg
        main = self.dist.is_main
        if main and monitor is not None and self.step == 0:  # the starting point, and bad data fails before training
            monitor(0, _unwrap(self.qs).Q_real, writer)
        total = cfg.steps + cfg.q_tail_steps
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=f"train {cfg.method}",
            unit="step",
            disable=not (progress and main),
            dynamic_ncols=True,
        )
        window: list[dict[str, float]] = []
        t0 = time.perf_counter()
        try:
            while self.step < total:
                joint = self.step < cfg.steps
                with ctrl_c_deferred():  # a step is taken whole, so the run saved on Ctrl-C resumes exactly
                    stats = self.train_step() if joint else self.q_tail_step()
                    check_finite_stats(  # before any save
                        stats, self.step, "Lower the learning rates (--lr, --lr-q) or the loss weights."
                    )
                window.append(stats)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step in (cfg.steps, total):
                    keys = set(window[0]).intersection(*window)  # a window may span the start of the Q tail
                    mean = {k: float(np.mean([s[k] for s in window])) for k in sorted(keys)}
                    mean["steps_per_s"] = len(window) / (time.perf_counter() - t0)
                    mean["step"] = self.step
                    self.history.append(mean)
                    bar.set_postfix(
                        {
                            k: f"{mean[v]:.3f}"
                            for k, v in (("G", "loss_generators"), ("D", "loss_discriminators"))
                            if v in mean
                        },
                        RL=f"{mean['loss_rl']:.3f}",
                    )
                    if writer is not None and main:
                        for k, v in mean.items():
                            if k != "step":
                                group = next((g for g in ("q", "loss", "lr") if k.startswith(g)), "speed")
                                writer.add_scalar(f"{group}/{k}", v, self.step)
                    window, t0 = [], time.perf_counter()
                if main and monitor is not None and monitor.due(self.step, total):
                    s = monitor(self.step, _unwrap(self.qs).Q_real, writer)
                    bar.write(
                        f"step {self.step}: Q_real on the monitor data: AUC {s['auc']:.3f}, mean Q {s['mean_q']:.3f}"
                    )
                if main and joint and (self.step % cfg.grid_every == 0 or self.step == cfg.steps):
                    grids = self.out / "images"
                    grids.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(self.image_grid()).save(grids / f"step-{self.step:07d}.png")
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            if self.dist.world_size > 1:  # the ranks stop at different points: no collective save
                raise
            bar.close()
            self.save()
            raise Interrupted(f"step {self.step} of {total} saved in {self.out}") from None
        finally:
            bar.close()
        self.save()
        self.dist.barrier()
        return self.history


# What a resumed run may change: its length and bookkeeping, and how fast the same maths runs.
# A Q tail (q_tail_steps) may be added to or changed on a run that has not started one.
RESUMABLE_CHANGES = frozenset(
    {"steps", "q_tail_steps", "log_every", "grid_every", "checkpoint_every", "bf16", "channels_last", "fused_adam"}
)


def objective_changes(saved: dict, config: GanTrainConfig, done_steps: int | None = None) -> list[str]:
    """Settings of ``config`` that differ from a saved run's (``saved``: its config["train"]), as
    "name: saved -> now", leaving out RESUMABLE_CHANGES. A setting the saved run predates counts
    as that version's behaviour: runs from before ``rl_scene_trains_q`` kept the Q-networks out of
    L_RL-scene, and runs from before ``lr_schedule`` had constant rates.

    The schedule (``lr_schedule``, ``lr_decay_from``) and, under a decaying one, the step count set
    the rates. Given ``done_steps``, the steps the run has trained, they may change as long as every
    one of those steps keeps its rates: a constant-rate run can go on with a linear decay from where
    it stands, but a decay cannot be stretched once it has begun. Without ``done_steps`` a schedule
    is compared setting by setting."""
    saved = {
        "rl_scene_trains_q": False,
        "lr_schedule": "constant",
        "lr_decay_from": None,
        "real_rl_share": 0.5,
        "q_real_average_from": None,
        "q_updates_per_step": 1,
        "q_real_augment": False,
        **saved,
    }
    saved["weights"] = {"identity": 0.0, **saved.get("weights", {})}
    now = to_dict(config)

    def flat(d: dict, prefix: str = "") -> dict:
        items: dict = {}
        for k, v in d.items():
            items.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return items

    unused = set()  # settings of terms this method does not have
    if not config.uses_q_sim:
        unused |= {"rl_scene_trains_q", "weights.rl_scene"}
    if not config.uses_f:
        unused |= {"weights.cycle", "cycle_distance"}
    if not config.real_rl:
        unused.add("real_rl_share")
    resumable = set(RESUMABLE_CHANGES)
    if done_steps is None:
        if config.lr_schedule != "constant":
            resumable.discard("steps")  # a decay spans the run's steps
    elif _same_rates(saved, config, done_steps):
        resumable |= {"lr_schedule", "lr_decay_from"}
    else:
        resumable.discard("steps")  # it is one of the settings that changed the trained steps' rates
    before, after = flat(saved), flat(now)
    return [
        f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
        for k in sorted(set(before) | set(after))
        if k.split(".")[0] not in resumable and k not in unused and before.get(k) != after.get(k)
    ]


def _same_rates(saved: dict, config: GanTrainConfig, done_steps: int) -> bool:
    """Whether ``config`` gives each of a saved run's first ``done_steps`` joint steps the rates it trained with."""
    trained = GanTrainConfig(
        steps=saved["steps"], lr_schedule=saved["lr_schedule"], lr_decay_from=saved["lr_decay_from"]
    )
    return all(lr_factors(trained, s) == lr_factors(config, s) for s in range(min(done_steps, trained.steps)))


def config_from_dict(data: dict) -> GanTrainConfig:
    return from_dict(GanTrainConfig, data, "train config")


def with_method(cfg: GanTrainConfig, method: str) -> GanTrainConfig:
    return replace(cfg, method=method)


@dataclass
class TrainedRun:
    """A GAN run's trained networks, for analysis (eval mode, on the CPU); F and Q_sim are None
    where the method has none. Q_real is the network the run exports as its policy: the weight
    average once a run with q_real_average_from has taken one."""

    config: GanTrainConfig
    G: ResnetGenerator
    F: ResnetGenerator | None
    Q_real: QNetwork
    Q_sim: QNetwork | None
    init_q: str | None  # the policy checkpoint its Q-networks started from, if any


def load_run(run: str | Path) -> TrainedRun:
    """The networks of a GAN run directory's last checkpoint."""
    cfg, weights, _ = load_checkpoint(Path(run) / "checkpoint", kind=CHECKPOINT_KIND)
    train = config_from_dict(cfg["train"])
    qcfg = from_dict(QNetConfig, cfg["qnet"], "qnet config")
    averaged = train.q_real_average_from is not None and int(cfg.get("steps_done", 0)) > train.q_real_average_from

    def net(name: str, module: nn.Module) -> nn.Module:
        module.load_state_dict({k[len(name) + 1 :]: v for k, v in weights.items() if k.startswith(name + ".")})
        return module.eval()

    return TrainedRun(
        config=train,
        G=net("G", ResnetGenerator(train.generator)),
        F=net("F", ResnetGenerator(train.generator)) if train.uses_f else None,
        Q_real=net("Q_real_average" if averaged else "Q_real", QNetwork(qcfg)),
        Q_sim=net("Q_sim", QNetwork(qcfg)) if train.uses_q_sim else None,
        init_q=cfg.get("init_q"),
    )


def load_generator(run: str | Path, name: str = "G") -> ResnetGenerator:
    """A trained generator (G: sim -> real, or F) from a run directory's checkpoint."""
    trained = load_run(run)
    generator = getattr(trained, name)
    if generator is None:
        raise RlcgError(f"{run}: a {trained.config.method} run has no {name}")
    return generator


# The Q-networks a run's checkpoint may hold, in the names it stores them under.
RUN_Q_NETWORKS = ("Q_real", "Q_real_target", "Q_real_average", "Q_sim", "Q_sim_target")


def export_q(run: str | Path, name: str, out: str | Path) -> Path:
    """Write one Q-network of a GAN run's last checkpoint as a policy checkpoint at ``out``: for
    example Q_real_target (the Polyak average the TD targets use) or Q_sim, to evaluate it like the
    exported Q_real. ``out`` must not hold anything yet."""
    if name not in RUN_Q_NETWORKS:
        raise RlcgError(f"unknown Q-network {name!r} (one of {', '.join(RUN_Q_NETWORKS)})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RlcgError(f"{out}: already exists and is not empty; choose another output directory")
    cfg, weights, _ = load_checkpoint(Path(run) / "checkpoint", kind=CHECKPOINT_KIND)
    own = {k[len(name) + 1 :]: v for k, v in weights.items() if k.startswith(name + ".")}
    if not own:
        held = sorted({k.split(".")[0] for k in weights} & set(RUN_Q_NETWORKS))
        raise RlcgError(f"{run}: this {cfg['train']['method']} run holds no {name} (it holds {', '.join(held)})")
    train = config_from_dict(cfg["train"])
    steps_done = int(cfg.get("steps_done", 0))
    if name == "Q_real_average" and steps_done <= train.q_real_average_from:
        raise RlcgError(
            f"{run}: its Q_real average starts after step {train.q_real_average_from}; the checkpoint is at "
            f"step {steps_done} and holds none yet"
        )
    qnet = QNetwork(from_dict(QNetConfig, cfg["qnet"], "qnet config"))
    qnet.load_state_dict(own)
    training = {"method": train.method, "steps_done": cfg.get("steps_done"), "exported": name, "run": str(run)}
    return save_policy(out, qnet, train.target_cem, extra={"training": training})
