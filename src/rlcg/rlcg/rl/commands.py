"""`rlcg train-q`, `rlcg eval`, `rlcg calibrate`, `rlcg viz q`, `rlcg bench policy`, `rlcg bench train-q`."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from rlcg.device import DEVICE_CHOICES, device_name, resolve_device, single_process_only
from rlcg.errors import CommandError
from rlcg.sim.commands import (
    add_cem_arg,
    add_world_args,
    cem_from_args,
    image_size,
    int_within,
    nonnegative_int,
    png_path,
    positive_float,
    positive_int,
    unit_fraction,
)

EVAL_SEED = 1000  # fixed evaluation seeds: every policy is compared on the same scenes


def parse_data_arg(text: str) -> tuple[str, float]:
    """DIR or DIR:WEIGHT (the weight is a positive number)."""
    path, sep, weight = text.rpartition(":")
    if sep and path and not Path(text).exists():
        try:
            w = float(weight)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: weight {weight!r} is not a number") from exc
        if not (math.isfinite(w) and w > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: weight must be a finite number above 0")
        return path, w
    return text, 1.0


def register(sub) -> None:
    p = sub.add_parser(
        "train-q",
        help="train the grasp Q-function (QT-Opt-style TD learning) from datasets or bags",
        description="Offline TD training of Q(s, a) with CEM targets on a Polyak target network. Writes a "
        "policy checkpoint (config.json + safetensors) that rlcg sim/eval and the ROS policy node load.",
    )
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        type=parse_data_arg,
        metavar="DIR[:WEIGHT]",
        help="ingested datasets or bag directories; sources are mixed by weight (default 1)",
    )
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint directory to write")
    p.add_argument("--steps", type=positive_int, default=3000, help="gradient steps (default: 3000)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --out (with the same --lr, --lr-schedule, --batch-size, --seed, --gamma, "
        "--loss, --cem and --clipped-double-q, and the same --steps for cosine); where --out holds no run yet, a new "
        "one starts, and a note says so",
    )
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=1000, help="save the run every N steps (default: 1000)"
    )
    p.add_argument(
        "--init",
        metavar="CKPT",
        default=None,
        help="start from this policy checkpoint's weights (same network); ignored when --resume continues a run",
    )
    p.add_argument("--batch-size", type=int_within(1, 65_536), default=64, help="transitions per step (default: 64)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="constant, or a cosine decay over --steps down to 5%% of --lr (default: constant)",
    )
    p.add_argument("--loss", choices=["mse", "bce"], default="bce", help="TD distance d (default: bce, QT-Opt)")
    p.add_argument("--gamma", type=unit_fraction, default=0.9, help="discount (default: 0.9, QT-Opt)")
    p.add_argument("--clipped-double-q", action="store_true", help="min of Polyak and lagged target networks")
    p.add_argument("--use-z", action="store_true", help="the action's z offset is a network input")
    p.add_argument(
        "--channels", type=int_within(1, 1024), nargs="+", default=[32, 64, 64], help="conv widths (default: 32 64 64)"
    )
    p.add_argument(
        "--cem",
        type=int,
        nargs=3,
        default=[2, 64, 6],
        metavar=("ITERS", "POP", "ELITES"),
        help="CEM of the saved policy and of the TD targets (default: 2 64 6, QT-Opt)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the batches and the network (default: 0)")
    p.add_argument("--eval-every", type=nonnegative_int, default=0, help="evaluate in sim every N steps (0: never)")
    p.add_argument("--eval-episodes", type=nonnegative_int, default=50, help="episodes per evaluation (default: 50)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", type=device_name, default="cpu", help=f"torch device: {DEVICE_CHOICES} (default: cpu)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_train_q)

    p = sub.add_parser(
        "eval",
        help="success rate of a policy in a domain (fixed evaluation seeds, held-out objects)",
        description="Evaluate a policy: success rate with its 95% Wilson interval, overall and per bin. Uses "
        f"the held-out test objects and evaluation seed {EVAL_SEED} unless told otherwise, so policies are "
        "compared on the same scenes.",
    )
    add_world_args(p, default_policy="default", default_objects="test", default_seed=EVAL_SEED)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--record", metavar="DIR", default=None, help="also record the episodes as rosbag2 into DIR")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser(
        "eval-data",
        help="how well a policy's Q predicts the outcomes of recorded grasps (AUC, cross-entropy), offline",
        description="Score the recorded final grasp of every episode in DATA (bags or an ingested dataset) with "
        "the policy's Q-function and compare with the outcome: ROC AUC (0.5 = blind), cross-entropy (the TD "
        "loss) and mean Q against the success rate. For data from a robot that cannot be replayed, e.g. real "
        "bags; nothing is simulated.",
    )
    p.add_argument("--policy", default="default", help="policy checkpoint or 'default'")
    p.add_argument("--data", required=True, nargs="+", metavar="DIR", help="bag directories or ingested datasets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_eval_data)

    p = sub.add_parser(
        "calibrate",
        help="fit a policy's grasp offset (dx, dy) to recorded real grasp outcomes; writes a calibrated copy",
        description="Find the shift d = (dx, dy) in the table plane under which the policy's Q best explains the "
        "outcomes of the recorded final grasps in DATA (maximum likelihood of sigmoid Q(y, a - d)), and write a "
        "copy of the policy that executes every chosen grasp shifted by d, clipped to the workspace. For a Q "
        "trained on translated or simulated images whose grasps land a few millimetres off on the real robot "
        "(docs/results.md). The policy itself is not changed; rlcg eval/sim and the ROS policy node apply the "
        "offset of the checkpoint they load.",
    )
    p.add_argument("--policy", default="default", help="policy checkpoint or 'default'")
    p.add_argument(
        "--data", required=True, nargs="+", metavar="DIR", help="bag directories or ingested datasets of real grasps"
    )
    p.add_argument("--out", required=True, metavar="CKPT", help="where to write the calibrated policy checkpoint")
    p.add_argument(
        "--max-offset",
        type=float,
        default=0.02,
        metavar="M",
        help="largest |dx| and |dy| searched, in metres, at most 0.05 (default: 0.02)",
    )
    p.add_argument(
        "--min-grasps",
        type=positive_int,
        default=100,
        metavar="N",
        help="refuse to calibrate on fewer recorded grasps (default: 100; fewer widen the reported standard error)",
    )
    p.add_argument("--device", type=device_name, default="cpu", help=f"torch device: {DEVICE_CHOICES} (default: cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("viz", help="visualisations (viz q: Q heatmap over the camera image)")
    viz = p.add_subparsers(dest="viz", metavar="WHAT", required=True)
    q = viz.add_parser(
        "q",
        help="Q over (x, y) at the best yaw, overlaid on the camera image, the chosen grasp marked",
        description="Render one scene, score grasps over the workspace with the policy's Q-function and write "
        "the heatmap over the camera image as a PNG, with the grasp CEM chose drawn as the finger line.",
    )
    q.add_argument("--policy", default="default", help="policy checkpoint or 'default'")
    q.add_argument("--domain", default="sim")
    q.add_argument("--seed", type=nonnegative_int, default=0, help="scene seed")
    q.add_argument("--bins", choices=["single", "multi"], default="single")
    q.add_argument("--objects", choices=["train", "test", "all"], default="test")
    q.add_argument("--scale", type=int_within(1, 32), default=6, help="upscaling of the image (default: 6)")
    q.add_argument("--out", required=True, type=png_path, metavar="PNG")
    q.set_defaults(handler=cmd_viz_q)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser(
        "policy",
        help="decision latency of the learned policy (CEM), and its speed-up over full forward passes",
        description="Latency of one grasp decision (64x64, the checkpoint's CEM, 2x64 for QT-Opt's, one CPU "
        "thread): the image is encoded once and all candidates scored by the head; compared in the same run with "
        "scoring every candidate by a full forward pass.",
    )
    p.add_argument("--policy", default="default", help="policy checkpoint or 'default' (default: default)")
    add_cem_arg(p)
    p.add_argument("--decisions", type=positive_int, default=200, help="timed decisions (default: 200)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_policy)

    p = bench_sub.add_parser(
        "train-q",
        help="training samples per second of train-q (synthetic batches)",
        description="TD training samples per second of rlcg train-q's step (QT-Opt-style Q-network, Adam, "
        "Polyak targets) on synthetic terminal transitions, after 3 warm-up steps, so that the figure "
        "measures compute, not data loading.",
    )
    p.add_argument("--steps", type=positive_int, default=30, help="timed steps (default: 30)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="transitions per step (default: 64)")
    p.add_argument("--image-size", type=image_size, default=64, help="square image size (default: 64)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_train_q)


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def refuse_data_as_output(out: Path, flag: str = "--out") -> None:
    """A run writes checkpoints and logs into ``out``: never into a dataset or a bag directory."""
    from rlcg.data.bags import STORAGE_SUFFIXES
    from rlcg.data.store import is_dataset

    if out.exists() and not out.is_dir():
        raise CommandError(f"{flag} {out} is a file; a run needs a directory")
    if is_dataset(out) or (
        out.is_dir() and any(p.suffix in STORAGE_SUFFIXES or p.name == "metadata.yaml" for p in out.iterdir())
    ):
        raise CommandError(f"{flag} {out} holds a dataset or bags; a run needs a directory of its own")


def open_sources(specs: list[tuple[str, float]]):
    from rlcg.data.dataset import TransitionDataset
    from rlcg.rl.qtopt import WeightedSources

    sources = []
    for path, weight in specs:
        if not Path(path).exists():
            raise CommandError(f"--data {path}: no such dataset or bag directory")
        ds = TransitionDataset.open(path)
        if len(ds) == 0:
            raise CommandError(f"--data {path}: holds no transitions")
        sources.append((ds, weight))
    sizes = {tuple(ds.image_size) for ds, _ in sources}
    if len(sizes) != 1:
        raise CommandError(f"the datasets have different image sizes: {sorted(sizes)}")
    return WeightedSources(sources), sizes.pop()


def cmd_train_q(args) -> int:
    from rlcg.interrupts import Interrupted
    from rlcg.models.qnet import QNetConfig
    from rlcg.provenance import provenance
    from rlcg.rl.qtopt import QTOptTrainer, QTrainConfig, describe
    from rlcg.sim.config import SimConfig

    _set_threads(args.threads)
    single_process_only("rlcg train-q")
    device = resolve_device(args.device)  # a missing GPU is an error before any data is read
    data, (h, w) = open_sources(args.data)
    if h != w:
        raise CommandError(f"images must be square, got {w}x{h}")
    sim = SimConfig.load(image_size=h)
    cem = cem_from_args(args.cem)
    qcfg = QNetConfig.for_world(sim, channels=tuple(args.channels), use_z=args.use_z)
    tcfg = QTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        loss=args.loss,
        gamma=args.gamma,
        clipped_double_q=args.clipped_double_q,
        target_cem=cem,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes if args.eval_every else 0,
        checkpoint_every=args.checkpoint_every,
    )
    out = Path(args.out)
    refuse_data_as_output(out)
    if (out / "config.json").exists() and not args.resume:
        raise CommandError(f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out")
    if args.resume and not (out / "config.json").exists():
        print(f"note: --resume: {out} holds no checkpoint yet; starting a new run", file=sys.stderr)
    prov = provenance(seed=args.seed)  # the command line as given
    trainer = QTOptTrainer(
        tcfg,
        qcfg,
        data,
        out,
        cem=cem,
        device=device,
        resume=args.resume,
        provenance={"provenance": prov},
        init=args.init,
    )
    print(f"{describe(trainer.qnet)}; {len(data):,} transitions; from step {trainer.step} to {tcfg.steps}")
    from rlcg.runlog import resumed_writer

    writer = resumed_writer(out / "tb", trainer.step)
    try:
        trainer.fit(progress=not args.no_progress, writer=writer)
    except Interrupted as exc:
        raise Interrupted(f"{exc}; the same command with --resume continues it") from None
    finally:
        writer.close()
    last = next((h for h in reversed(trainer.history) if "loss" in h), {})
    print(
        f"saved {out} (step {trainer.step}, loss {last.get('loss', float('nan')):.4f}, "
        f"accuracy {last.get('accuracy', float('nan')):.3f})"
    )
    return 0


def cmd_eval(args) -> int:
    from rlcg.sim.commands import cmd_sim

    return cmd_sim(args)


def cmd_eval_data(args) -> int:
    from rlcg.data.dataset import TransitionDataset
    from rlcg.eval.offline import score_outcomes
    from rlcg.rl.policy import load_policy

    policy = load_policy(args.policy)
    results = {}
    for path in args.data:
        if not Path(path).exists():
            raise CommandError(f"--data {path}: no such dataset or bag directory")
        results[path] = score_outcomes(policy.qnet, TransitionDataset.open(path))
    if args.json:
        print(json.dumps({"policy": str(args.policy), "data": results}, indent=2))
    else:
        for path, r in results.items():
            print(
                f"{path}: {r['grasps']} grasps, {r['success_rate']:.1%} successful; "
                f"AUC {r['auc']:.3f}, cross-entropy {r['cross_entropy']:.3f}, mean Q {r['mean_q']:.3f}"
            )
    return 0


def cmd_calibrate(args) -> int:
    from rlcg.data.dataset import TransitionDataset
    from rlcg.rl.calibrate import calibrate_policy, check_out_path, fit_grasp_offset, recorded_grasps
    from rlcg.rl.policy import load_policy

    for path in args.data:
        if not Path(path).exists():
            raise CommandError(f"--data {path}: no such dataset or bag directory")
    check_out_path(args.policy, args.out)  # before the fit, not after it
    policy = load_policy(args.policy, device=resolve_device(args.device))
    images, actions, rewards = recorded_grasps([TransitionDataset.open(p) for p in args.data], policy.image_size)
    fit = fit_grasp_offset(
        policy.qnet, images, actions, rewards, max_offset=args.max_offset, min_grasps=args.min_grasps
    )
    out = calibrate_policy(args.policy, args.out, fit, [str(p) for p in args.data])
    if args.json:
        print(json.dumps({"policy": str(args.policy), "out": str(out), **fit.to_dict()}, indent=2))
        return 0
    (dx, dy), (sx, sy) = fit.offset, fit.stderr
    print(
        f"calibrate: {fit.grasps} recorded grasps ({fit.successes} successful); grasp offset "
        f"dx = {1000 * dx:+.1f} +- {1000 * sx:.1f} mm, dy = {1000 * dy:+.1f} +- {1000 * sy:.1f} mm; "
        f"cross-entropy {fit.cross_entropy_before:.4f} -> {fit.cross_entropy_after:.4f}, "
        f"AUC {fit.auc_before:.3f} -> {fit.auc_after:.3f}; written to {out}"
    )
    return 0


def cmd_viz_q(args) -> int:
    import numpy as np

    from rlcg.policies import Observation
    from rlcg.rl.policy import load_policy
    from rlcg.rl.viz import q_overlay
    from rlcg.sim.world import ThreeBinWorld

    policy = load_policy(args.policy)
    with ThreeBinWorld(domain=args.domain, bins=args.bins, split=args.objects, image_size=policy.image_size) as world:
        image = world.reset(args.seed)
        decision = policy.act(Observation(image, world.bounds, np.random.default_rng([args.seed, 1]), world))
        png = q_overlay(policy, image, decision, scale=args.scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png.save(out)
    x, y, yaw, _ = decision.action
    print(f"wrote {out}: chosen grasp x={x:.3f} y={y:.3f} yaw={yaw:.2f} rad, Q={decision.q_value:.3f}")
    return 0


def cmd_bench_policy(args) -> int:
    import numpy as np
    import torch

    from rlcg.models.qnet import as_image_tensor
    from rlcg.policies import Observation
    from rlcg.rl.policy import load_policy
    from rlcg.sim.world import ThreeBinWorld

    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy, cem=cem_from_args(args.cem))
    with ThreeBinWorld(split="test", image_size=policy.image_size) as world:
        images = [world.reset(s) for s in range(8)]
        bounds = world.bounds
    rng = np.random.default_rng(0)
    cem = policy.cem

    def decide(i: int) -> None:
        policy.act(Observation(images[i % len(images)], bounds, rng))

    @torch.no_grad()
    def full_forward(i: int) -> None:
        # The same CEM, but every candidate scored by a full forward pass of its own image copy.
        from rlcg.rl.cem import cem_maximize

        img = as_image_tensor(images[i % len(images)])
        gen = torch.Generator().manual_seed(i)
        cem_maximize(
            lambda a: policy.qnet(img.expand(a.shape[1], -1, -1, -1), a[0]).view(1, -1),
            1,
            bounds,
            cem,
            gen,
            use_z=policy.qnet.config.use_z,
        )

    def timeit(fn, n: int) -> list[float]:
        for i in range(5):
            fn(i)  # warm-up
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    fast = timeit(decide, args.decisions)
    slow = timeit(full_forward, max(20, args.decisions // 4))
    report = {
        "p50_ms": float(np.percentile(fast, 50)),
        "p99_ms": float(np.percentile(fast, 99)),
        "full_forward_p50_ms": float(np.percentile(slow, 50)),
        "speedup_vs_full_forward": float(np.percentile(slow, 50) / np.percentile(fast, 50)),
        "cem": {"iterations": cem.iterations, "population": cem.population, "elites": cem.elites},
        "image_size": policy.image_size,
        "threads": args.threads,
        "decisions": args.decisions,
        "policy": args.policy,
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0


def cmd_bench_train_q(args) -> int:
    import numpy as np

    from rlcg.models.qnet import QNetConfig
    from rlcg.rl.qtopt import QTOptTrainer, QTrainConfig, WeightedSources
    from rlcg.sim.config import SimConfig

    _set_threads(args.threads)

    class Synthetic:
        """Random transitions of the right shapes: the benchmark measures compute, not data."""

        def __init__(self, n: int, size: int):
            rng = np.random.default_rng(0)
            self.images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            self.n = n

        def __len__(self) -> int:
            return self.n

        def sample(self, b: int, rng: np.random.Generator):
            idx = rng.integers(0, self.n, b)
            return argparse.Namespace(
                image=self.images[idx],
                next_image=self.images[idx[::-1]],
                action=rng.uniform(-0.1, 0.6, (b, 4)).astype(np.float32),
                reward=rng.integers(0, 2, b).astype(np.float32),
                done=np.ones(b, bool),
            )

    import tempfile

    sim = SimConfig.load(image_size=args.image_size)
    qcfg = QNetConfig.for_world(sim)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = QTOptTrainer(
            QTrainConfig(steps=args.steps, batch_size=args.batch_size),
            qcfg,
            WeightedSources([(Synthetic(512, args.image_size), 1.0)]),
            tmp,
        )
        for _ in range(3):
            trainer.train_step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        rate = args.steps * args.batch_size / (time.perf_counter() - t0)
    report = {
        "samples_per_s": rate,
        "steps_per_s": rate / args.batch_size,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "threads": __import__("torch").get_num_threads(),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0
