"""QT-Opt-style offline Q-learning of the grasp Q-function.

The TD loss of the paper, L_RL(Q) = E d(Q(x, a), r + gamma V(x')), with V(x') = max_a' Q_target(x', a')
found by CEM on a Polyak-averaged target network (optionally the minimum with a lagged second target:
clipped double Q, as in QT-Opt). Q is a sigmoid probability of success; an episode ends at a success,
so targets stay within [0, 1]; for one-grasp episodes (done everywhere) the target is just r.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from rlcg.configio import to_dict
from rlcg.errors import RlcgError
from rlcg.interrupts import Interrupted, ctrl_c_deferred
from rlcg.models.qnet import QNetConfig, QNetwork, count_parameters
from rlcg.rl.cem import CEMConfig, cem_maximize
from rlcg.rl.checkpoint import load_checkpoint, load_optimizer_state
from rlcg.rl.policy import POLICY_KIND, LearnedPolicy, save_policy


class Batch(Protocol):
    image: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_image: np.ndarray
    done: np.ndarray


class TransitionSource(Protocol):
    def __len__(self) -> int: ...

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch: ...


@dataclass(frozen=True)
class QTrainConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to final_lr_fraction * lr
    final_lr_fraction: float = 0.05
    weight_decay: float = 1e-5
    gamma: float = 0.9  # QT-Opt
    loss: Literal["mse", "bce"] = "bce"
    polyak: float = 0.995  # target <- polyak * target + (1 - polyak) * online, every step
    clipped_double_q: bool = False
    lagged_period: int = 1000  # steps between copies of the lagged target (clipped double Q)
    target_cem: CEMConfig = field(default_factory=CEMConfig)
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    eval_every: int = 0  # steps between success-rate evaluations in sim (0: never)
    eval_episodes: int = 0
    eval_domain: str = "sim"

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {self.lr_schedule!r} (constant or cosine)")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction must be within [0, 1], got {self.final_lr_fraction}")


def flush_subnormals() -> None:
    """Treat subnormal floats as zero on CPU. The attention softmax of the Q-network puts
    near-zero weight on far cells, and as training sharpens it the gradients flowing back into
    the convolutions become subnormal, which made CPU training steps about 10x slower after the
    first thousand steps. Their contribution is below float32 precision anyway."""
    torch.set_flush_denormal(True)


def learning_rate(config: QTrainConfig, step: int) -> float:
    """The learning rate of gradient step ``step`` (0-based). A cosine decay lets the late steps
    average out the minibatch noise that keeps a constant-rate run's accuracy wandering."""
    if config.lr_schedule == "constant":
        return config.lr
    return cosine_rate(config.lr, step, config.steps, config.final_lr_fraction)


def cosine_rate(lr: float, step: int, steps: int, final_fraction: float) -> float:
    """``lr`` decayed by a half cosine over ``steps`` steps to ``final_fraction * lr`` (held after)."""
    progress = min(max(step, 0) / max(steps, 1), 1.0)
    floor = final_fraction * lr
    return floor + 0.5 * (lr - floor) * (1.0 + math.cos(math.pi * progress))


def td_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """d(Q(x, a), y): mean squared error on the probability, or cross-entropy (QT-Opt's log loss)."""
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), targets)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    raise ValueError(f"unknown TD loss {kind!r} (mse or bce)")


@torch.no_grad()
def td_targets(
    reward: torch.Tensor,
    done: torch.Tensor,
    next_images: torch.Tensor,
    target: QNetwork,
    gamma: float,
    cem: CEMConfig,
    generator: torch.Generator,
    lagged: QNetwork | None = None,
) -> torch.Tensor:
    """y = r + gamma * (1 - done) * V(x'), V by CEM on the target network; only non-terminal
    transitions pay for the CEM search. With ``lagged``, V = min of both targets at CEM's argmax."""
    y = reward.clone().float()
    live = ~done.bool()
    if live.any():
        feats = target.encode(next_images[live])
        best, best_logit = cem_maximize(
            lambda a: target.head(feats, a),
            int(live.sum()),
            target.config.bounds,
            cem,
            generator,
            use_z=target.config.use_z,
            device=next_images.device,
        )
        v = torch.sigmoid(best_logit.to(y.device))
        if lagged is not None:
            v_lag = torch.sigmoid(lagged(next_images[live], best.to(next_images.device))).to(y.device)
            v = torch.minimum(v, v_lag)
        y[live] = y[live] + gamma * v
    return y.clamp(0.0, 1.0)


@torch.no_grad()
def polyak_update(target: torch.nn.Module, online: torch.nn.Module, polyak: float) -> None:
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(polyak).add_(o, alpha=1.0 - polyak)


class TrainingDiverged(RlcgError):
    """A loss or the data became NaN or infinite: training stops, and nothing of it is saved."""


def check_finite_stats(stats: dict[str, float], step: int, hint: str) -> None:
    """TrainingDiverged if a logged loss of ``step`` is NaN or infinite (the last checkpoint stays)."""
    bad = sorted(k for k, v in stats.items() if k.startswith("loss") and not math.isfinite(v))
    if bad:
        raise TrainingDiverged(
            f"training diverged at step {step}: {', '.join(f'{k} = {stats[k]}' for k in bad)}; nothing past the "
            f"last checkpoint is saved. {hint}"
        )


class WeightedSources:
    """Mixes several transition sources: each sample comes from source i with probability w_i."""

    def __init__(self, sources: list[tuple[TransitionSource, float]]):
        if not sources:
            raise ValueError("no training data")
        self.sources = [s for s, _ in sources]
        w = np.array([float(wt) for _, wt in sources])
        if np.any(w <= 0) or not np.all(np.isfinite(w)):
            raise ValueError(f"data weights must be positive numbers, got {w.tolist()}")
        self.weights = w / w.sum()
        for source in self.sources:  # one NaN reward or action turns every weight into NaN within steps
            for column in ("rewards", "actions"):
                values = getattr(source, column, None)
                if values is not None and not np.all(np.isfinite(np.asarray(values))):
                    where = getattr(source, "path", None) or "the training data"
                    raise TrainingDiverged(f"{where}: {column} hold NaN or infinite values; rebuild it from its bags")

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        counts = rng.multinomial(batch_size, self.weights)
        parts = [src.sample(int(n), rng) for src, n in zip(self.sources, counts) if n > 0]
        return {
            k: np.concatenate([getattr(p, k) for p in parts])
            for k in ("image", "action", "reward", "next_image", "done")
        }


def batch_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "image": QNetwork.preprocess(torch.as_tensor(batch["image"]).to(device)),
        "next_image": QNetwork.preprocess(torch.as_tensor(batch["next_image"]).to(device)),
        "action": torch.as_tensor(batch["action"], dtype=torch.float32, device=device),
        "reward": torch.as_tensor(batch["reward"], dtype=torch.float32, device=device),
        "done": torch.as_tensor(batch["done"], dtype=torch.bool, device=device),
    }


class QTOptTrainer:
    """Offline TD training of Q(s, a) from transition sources; checkpoints are policy checkpoints."""

    def __init__(
        self,
        config: QTrainConfig,
        qnet_config: QNetConfig,
        data: WeightedSources,
        out: str | Path,
        cem: CEMConfig | None = None,
        device: str = "cpu",
        resume: bool = False,
        provenance: dict[str, Any] | None = None,
        init: str | Path | None = None,
    ):
        self.config = config
        self.data = data
        self.out = Path(out)
        self.device = torch.device(device)
        self.cem = cem or CEMConfig()
        self.provenance = provenance or {}
        torch.manual_seed(config.seed)
        flush_subnormals()
        self.qnet = QNetwork(qnet_config).to(self.device).to(memory_format=torch.channels_last)
        self.target = copy.deepcopy(self.qnet).eval()
        self.lagged = copy.deepcopy(self.qnet).eval() if config.clipped_double_q else None
        self.opt = torch.optim.Adam(self.qnet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: list[dict[str, float]] = []
        if resume and (self.out / "config.json").is_file():
            self._resume()
        elif init is not None:
            self._init_from(Path(init))

    # ------------------------------------------------------------------ state
    def _train_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "target": self.target.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_generator": self.generator.get_state(),
            "history": self.history,
        }
        if self.lagged is not None:
            state["lagged"] = self.lagged.state_dict()
        return state

    def _resume(self) -> None:
        from rlcg.errors import RlcgError

        cfg, weights, state = load_checkpoint(self.out, kind=POLICY_KIND, with_train_state=True)
        if state is None:  # an exported policy: resuming would start from scratch and overwrite it
            raise RlcgError(
                f"{self.out}: this checkpoint has no training state to resume (an exported policy?); "
                "start a new run from its weights instead (rlcg train-q --init, rlcg train --init-q)"
            )

        if to_dict(self.qnet.config) != cfg["qnet"]:
            raise RlcgError(f"{self.out}: the checkpoint's network differs from this run's; cannot resume")
        self._check_same_settings(cfg.get("training", {}))
        if self.config.steps < int(state["step"]):  # it would train nothing and record the smaller count
            raise RlcgError(f"{self.out}: the run has trained {int(state['step'])} steps; --steps cannot be fewer")
        self.qnet.load_state_dict(weights)
        self.target.load_state_dict(state["target"])
        if self.lagged is not None and "lagged" in state:
            self.lagged.load_state_dict(state["lagged"])
        load_optimizer_state(self.opt, state["optimizer"])
        self.rng.bit_generator.state = _int_keys_state(state["numpy_rng"])
        self.generator.set_state(state["torch_generator"])
        self.step = int(state["step"])
        self.history = list(state["history"])

    def _check_same_settings(self, saved: dict[str, Any]) -> None:
        """A resumed run keeps its learning-rate schedule and its objective: different ones would
        silently change the rest of the run (and the checkpoint's record of how it was trained)."""
        from rlcg.errors import RlcgError

        keys = ["lr", "lr_schedule", "final_lr_fraction"] + (["steps"] if self.config.lr_schedule == "cosine" else [])
        keys += [
            *("gamma", "loss", "polyak", "clipped_double_q", "lagged_period", "target_cem"),
            *("weight_decay", "batch_size", "seed"),
        ]
        defaults = {"lr_schedule": "constant", "final_lr_fraction": 0.05}  # checkpoints from before the schedules
        mine = to_dict(self.config)
        # a setting an older checkpoint did not record is taken as this run's
        differ = [k for k in keys if saved.get(k, defaults.get(k, mine[k])) != mine[k]]
        if differ:
            was = ", ".join(f"{k}={saved.get(k, defaults.get(k))}" for k in differ)
            raise RlcgError(f"{self.out}: this run was trained with {was}; resume it with the same settings")

    def _init_from(self, path: Path) -> None:
        """Start a fresh run from another policy's weights (warm start across data-collection rounds)."""
        from rlcg.errors import RlcgError
        from rlcg.rl.policy import resolve_policy_path

        cfg, weights, _ = load_checkpoint(resolve_policy_path(path), kind=POLICY_KIND)
        if to_dict(self.qnet.config) != cfg["qnet"]:
            raise RlcgError(
                f"{path}: its network differs from this run's (--channels, --use-z, image size); cannot init"
            )
        self.qnet.load_state_dict(weights)
        self.target.load_state_dict(weights)
        if self.lagged is not None:
            self.lagged.load_state_dict(weights)

    def save(self) -> Path:
        extra = {
            "training": {**to_dict(self.config), "steps_done": self.step, **self.provenance},
            "history": self.history[-200:],
        }
        return save_policy(self.out, self.qnet, self.cem, extra=extra, train_state=self._train_state())

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict[str, float]:
        cfg = self.config
        b = batch_tensors(self.data.sample(cfg.batch_size, self.rng), self.device)
        y = td_targets(
            b["reward"], b["done"], b["next_image"], self.target, cfg.gamma, cfg.target_cem, self.generator, self.lagged
        )
        logits = self.qnet(b["image"], b["action"])
        loss = td_loss(logits, y, cfg.loss)  # L_RL(Q) = E d(Q(x, a), r + gamma V(x'))
        lr = learning_rate(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        polyak_update(self.target, self.qnet, cfg.polyak)
        self.step += 1
        if self.lagged is not None and self.step % cfg.lagged_period == 0:
            self.lagged.load_state_dict(self.qnet.state_dict())
        with torch.no_grad():
            q = torch.sigmoid(logits)
            acc = ((q > 0.5).float() == (y > 0.5).float()).float().mean()
        return {
            "loss": float(loss.detach()),
            "q_mean": float(q.mean()),
            "q_std": float(q.std()),
            "target_mean": float(y.mean()),
            "accuracy": float(acc),
            "lr": lr,
        }

    def policy(self) -> LearnedPolicy:
        return LearnedPolicy(copy.deepcopy(self.qnet).eval(), self.cem, device=self.device)

    def evaluate(self, episodes: int, domain: str, seed: int = 1000) -> float:
        from rlcg.rollout import episode_seed, run_episode
        from rlcg.sim.world import ThreeBinWorld

        policy = self.policy()
        wins = 0
        with ThreeBinWorld(domain=domain, split="test", image_size=self.qnet.config.image_size) as world:
            for i in range(episodes):
                wins += run_episode(world, policy, episode_seed(seed, i)).success
        return wins / max(episodes, 1)

    def fit(self, progress: bool = True, writer: Any = None, monitor: Any = None) -> list[dict[str, float]]:
        """Train to ``config.steps``; ``monitor`` (rlcg.eval.offline.OutcomeMonitor) scores Q on recorded outcomes."""
        from tqdm import tqdm

        cfg = self.config
        if monitor is not None and self.step == 0:  # the starting point, and bad data fails before training
            monitor(0, self.qnet, writer)
        bar = tqdm(
            total=cfg.steps, initial=self.step, desc="train-q", unit="step", disable=not progress, dynamic_ncols=True
        )
        window: list[dict[str, float]] = []
        t0 = time.perf_counter()
        try:
            while self.step < cfg.steps:
                with ctrl_c_deferred():  # a step is taken whole, so the run saved on Ctrl-C resumes exactly
                    stats = self.train_step()
                    check_finite_stats(stats, self.step, "Lower --lr, or check the data.")  # before any save
                window.append(stats)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                    mean["samples_per_s"] = len(window) * cfg.batch_size / (time.perf_counter() - t0)
                    mean["step"] = self.step
                    self.history.append(mean)
                    bar.set_postfix(loss=f"{mean['loss']:.4f}", acc=f"{mean['accuracy']:.3f}")
                    if writer is not None:
                        for k, v in mean.items():
                            if k != "step":
                                writer.add_scalar(f"train/{k}", v, self.step)
                    window, t0 = [], time.perf_counter()
                if cfg.eval_every and cfg.eval_episodes and self.step % cfg.eval_every == 0:
                    rate = self.evaluate(cfg.eval_episodes, cfg.eval_domain)
                    self.history.append({"step": self.step, "eval_success": rate})
                    if writer is not None:
                        writer.add_scalar(f"eval/success_{cfg.eval_domain}", rate, self.step)
                    bar.write(f"step {self.step}: success on {cfg.eval_domain} = {rate:.1%} ({cfg.eval_episodes} ep)")
                if monitor is not None and monitor.due(self.step, cfg.steps):
                    s = monitor(self.step, self.qnet, writer)
                    bar.write(f"step {self.step}: Q on the monitor data: AUC {s['auc']:.3f}, mean Q {s['mean_q']:.3f}")
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            raise Interrupted(f"step {self.step} of {cfg.steps} saved in {self.out}") from None
        finally:
            bar.close()
        self.save()
        return self.history


def _int_keys_state(state: Any) -> Any:
    """numpy bit-generator state round-tripped through JSON (ints may come back as floats)."""
    if isinstance(state, dict):
        return {k: _int_keys_state(v) for k, v in state.items()}
    if isinstance(state, float) and math.isfinite(state) and state.is_integer():
        return int(state)
    return state


def describe(qnet: QNetwork) -> str:
    return f"Q-network: {count_parameters(qnet):,} parameters, {qnet.config.image_size}px input"
