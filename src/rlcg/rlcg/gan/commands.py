"""`rlcg train` (every method of the paper's Table 1), `rlcg bench train`, `rlcg bench transfer`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rlcg.device import DEVICE_CHOICES, device_name, resolve_device, single_process_only
from rlcg.errors import CommandError
from rlcg.gan.methods import GAN_METHODS, METHODS, METHODS_WITH_F
from rlcg.interrupts import Interrupted
from rlcg.sim.commands import int_within, nonnegative_float, nonnegative_int, positive_float, positive_int

METHOD_HELP = (
    "sim-only / randomized-sim: Q alone on --sim-data (sim or randomized-domain episodes); gan: G adversarially, "
    "Q_real on G(x); cyclegan: + F and the cycle loss; rl-cyclegan: + Q_sim and the RL-scene consistency loss"
)


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=None, help="training steps (default: 3000 Q-only, 2000 GAN)")
    p.add_argument("--batch-size", type=int_within(1, 65_536), default=None, help="batch (default: 64 Q-only, 8 GAN)")
    p.add_argument("--real-rl", action="store_true", help="Q_real also learns from the real transitions (Table 2)")
    p.add_argument(
        "--real-rl-share",
        type=float,
        default=0.5,
        metavar="S",
        help="with --real-rl: the share of Q_real's TD loss on real transitions, against G(x) of sim ones, in (0, 1] "
        "(default: 0.5, both alike)",
    )
    p.add_argument(
        "--monitor-data",
        metavar="DIR",
        default=None,
        help="recorded grasps with outcomes (e.g. real bags) on which to score the trained Q (Q_real) during "
        "training: ROC AUC, cross-entropy, mean Q to TensorBoard (monitor/) and RUN/monitor.jsonl; never trained on",
    )
    p.add_argument(
        "--monitor-every", type=positive_int, default=250, help="steps between monitor scores (default: 250)"
    )
    p.add_argument(
        "--q-batch-size",
        type=int_within(1, 65_536),
        default=None,
        help="transitions per Q update of the GAN methods, at least --batch-size (default: 32, or --batch-size "
        "if that is larger)",
    )
    p.add_argument(
        "--init-q",
        metavar="CKPT",
        default=None,
        help="start the Q-network(s) from a policy checkpoint ('default': the shipped sim-only policy); "
        "GAN methods start both Q_real and Q_sim from it",
    )
    p.add_argument(
        "--init-run",
        metavar="RUN",
        default=None,
        help="GAN methods: start every network (G, F, the discriminators, the Q-networks and their targets) "
        "from RUN's last checkpoint, as a new run with fresh optimizers and its own objective and schedule",
    )
    p.add_argument(
        "--fresh-q-real",
        action="store_true",
        help="rl-cyclegan with --init-q or --init-run: Q_real starts from scratch, Q_sim (and the rest) from "
        "the checkpoint",
    )
    p.add_argument(
        "--q-updates-per-step",
        type=positive_int,
        default=1,
        metavar="K",
        help="GAN methods: Q_real updates per joint step; the K-1 further ones on fresh sim transitions "
        "translated by the current G (default: 1)",
    )
    p.add_argument(
        "--lr-q",
        type=positive_float,
        default=None,
        help="GAN methods: the Q-networks' Adam rate (default: 5e-4)",
    )
    p.add_argument("--gen-width", type=int_within(1, 512), default=16, help="generator base width (default: 16)")
    p.add_argument("--gen-blocks", type=int_within(1, 64), default=4, help="generator residual blocks (default: 4)")
    p.add_argument("--disc-width", type=int_within(1, 1024), default=64, help="discriminator base width (default: 64)")
    p.add_argument(
        "--disc-layers",
        type=int_within(1, 5),
        default=3,
        help="discriminator stride-2 layers: 2 sees 34x34 patches, 3 sees 70x70 (default: 3, CycleGAN's)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "linear-decay", "q-cosine"],
        default="constant",
        help="GAN methods: constant rates; linear-decay: CycleGAN's schedule for every rate, held for the first "
        "half of --steps, then decayed linearly to zero; q-cosine: the GAN's rates constant, the Q-networks' "
        "decayed by a cosine to 5%% over --steps (default: constant)",
    )
    p.add_argument(
        "--lr-decay-from",
        type=int,
        default=None,
        metavar="STEP",
        help="with --lr-schedule linear-decay: the step from which the rates fall to zero at --steps (default: "
        "half of --steps); with --resume of a constant-rate run at or before this step, only the steps to come decay",
    )
    p.add_argument(
        "--q-tail-steps",
        type=int,
        default=0,
        metavar="N",
        help="GAN methods: after --steps, N more Q updates with the generators frozen, Q's rate decayed by a "
        "cosine to 5%% (default: 0, the paper's joint training alone); --resume adds one to a finished run",
    )
    p.add_argument(
        "--q-real-average-from",
        type=int,
        default=None,
        metavar="STEP",
        help="GAN methods: export Q_real as the mean of its weights after each step past STEP (stochastic "
        "weight averaging) instead of its last weights (default: off)",
    )
    p.add_argument(
        "--q-real-augment",
        action="store_true",
        help="GAN methods: redraw the colour, brightness, contrast, blur and noise of every image Q_real learns "
        "from, geometry untouched (default: off)",
    )
    p.add_argument("--gan-loss", choices=["lsgan", "bce"], default="lsgan")
    p.add_argument("--cycle-loss", choices=["mse", "l1"], default="mse", help="d of L_cyc (default: mse, the paper)")
    p.add_argument("--lambda-gan", type=nonnegative_float, default=1.0)
    p.add_argument("--lambda-cycle", type=nonnegative_float, default=10.0)
    p.add_argument("--lambda-rl-scene", type=nonnegative_float, default=1.0)
    p.add_argument("--lambda-rl", type=nonnegative_float, default=1.0)
    p.add_argument(
        "--lambda-identity",
        type=nonnegative_float,
        default=0.0,
        help="GAN methods: weight of CycleGAN's identity term d(G(y), y) + d(F(x), x), with --cycle-loss's d "
        "(default: 0, off, as in the RL-CycleGAN paper; CycleGAN uses half of --lambda-cycle)",
    )
    p.add_argument(
        "--rl-scene-trains-q",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="rl-cyclegan: L_RL-scene also updates Q_sim and Q_real, not only G and F (default: off; docs/method.md)",
    )
    # docs/benchmarks.md: at 64x64 none of the three gains beyond run-to-run noise on a 2-core CPU or on an
    # H200 (whose step is launch-bound), and bf16 is slower on both; they are there for larger images
    p.add_argument(
        "--bf16",
        action="store_true",
        help="GAN methods: bfloat16 autocast (for GPUs; at 64x64 measured slower: 0.74x on an H200 at batch 8, "
        "17x slower on a CPU without bf16 units)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="GAN methods: networks in channels_last memory format (no gain beyond run-to-run noise measured at "
        "64x64, CPU or GPU)",
    )
    p.add_argument(
        "--fused-adam",
        action="store_true",
        help="GAN methods: fused Adam kernels (no gain beyond run-to-run noise measured at 64x64, CPU or GPU)",
    )
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=None, help="save every N steps (default: 1000 Q-only, 500 GAN)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", type=device_name, default="auto", help=f"torch device: {DEVICE_CHOICES} (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a sim-to-real method (sim-only, randomized-sim, gan, cyclegan, rl-cyclegan)",
        description="The offline trainer: trains one method of the paper's Table 1 from sim and real episodes "
        "(rosbag2 directories or ingested datasets) and exports the final Q_real as a policy checkpoint "
        "RUN/policy that rlcg eval, rlcg sim and the ROS policy node load. The GAN methods run under torchrun too.",
    )
    p.add_argument(
        "--method",
        required=True,
        choices=METHODS,
        help=METHOD_HELP,
    )
    p.add_argument("--sim-data", nargs="+", required=True, metavar="DIR[:WEIGHT]", help="sim episodes")
    p.add_argument(
        "--real-data",
        nargs="+",
        default=None,
        metavar="DIR[:WEIGHT]",
        help="real episodes (required by the GAN methods)",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN (GAN methods: with the loss settings it was started with; a change is refused); "
        "where RUN holds no run yet, a new one starts, and a note says so",
    )
    p.add_argument("--no-progress", action="store_true")
    add_train_args(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "eval-consistency",
        help="where a cyclegan/rl-cyclegan run loses the task: its six Q-values scored on recorded outcomes",
        description="Score each of the six Q-values of L_RL-scene against the outcomes of recorded grasps: "
        "Q_sim(x), Q_real(G(x)), Q_sim(F(G(x))) on sim data and Q_real(y), Q_sim(F(y)), Q_real(G(F(y))) on real "
        "data (ROC AUC, cross-entropy, mean Q), and how far the three values of one scene disagree (the terms of "
        "L_RL-scene). A Q_sim(F(y)) far below Q_sim(x) says F loses what decides a grasp; a Q_real(y) below "
        "Q_real(G(x)) says Q_real's skill on translated images does not carry over to real ones; compare them on "
        "the same scenes: scenes both datasets share (collected with the same --seed by a policy that does not look "
        "at the image, e.g. scripted) are paired, and for those G(x) is compared with y pixel by pixel and "
        "Q_real(G(x)) with Q_real(y) grasp by grasp. Offline, nothing is simulated.",
    )
    p.add_argument("run", metavar="RUN", help="a cyclegan or rl-cyclegan run directory")
    p.add_argument("--sim-data", required=True, metavar="DIR", help="sim episodes with outcomes (bags or dataset)")
    p.add_argument("--real-data", required=True, metavar="DIR", help="real episodes with outcomes (bags or dataset)")
    p.add_argument(
        "--q-sim",
        metavar="CKPT",
        default=None,
        help="policy checkpoint to use as Q_sim (default: the run's Q_sim; for cyclegan, the policy it started from)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_eval_consistency)

    p = sub.add_parser(
        "translate",
        help="write a dataset's images translated by a GAN run's G (sim -> real) or F (real -> sim)",
        description="Translate every image of a dataset (or bags) with the generator of a gan, cyclegan or "
        "rl-cyclegan run's last checkpoint and write a new dataset with the same actions, rewards and episodes. "
        "rlcg train-q then trains a Q-network on G(x) with G frozen, with its own data scale, steps and schedule "
        "(for example the recipe of the shipped sim policy), instead of the joint training's Q_real. The source is "
        "not modified; OUT appears only once complete.",
    )
    p.add_argument("run", metavar="RUN", help="a gan, cyclegan or rl-cyclegan run directory")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset or bags to translate")
    p.add_argument("--out", required=True, metavar="DIR", help="new dataset directory (must not exist, or be empty)")
    p.add_argument(
        "--generator",
        choices=["G", "F"],
        default="G",
        help="G: sim -> real, for sim data (default); F: real -> sim, for real data (cyclegan, rl-cyclegan)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per generator call (default: 256)")
    p.add_argument(
        "--device", type=device_name, default="auto", help=f"where G or F runs: {DEVICE_CHOICES} (default: auto)"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_translate)

    p = sub.add_parser(
        "export-q",
        help="write one Q-network of a GAN run (Q_real, its Polyak target, Q_sim, ...) as a policy checkpoint",
        description="Write one Q-network of a gan, cyclegan or rl-cyclegan run's last checkpoint as a policy "
        "checkpoint that rlcg eval, rlcg sim and the ROS policy node load. RUN/policy is always the run's exported "
        "Q_real (its weight average with --q-real-average-from); this reads the others: Q_real_target, the Polyak "
        "average (rate 0.995) that the TD targets use; Q_sim and Q_sim_target (rl-cyclegan); Q_real itself.",
    )
    p.add_argument("run", metavar="RUN", help="a gan, cyclegan or rl-cyclegan run directory")
    p.add_argument(
        "--net",
        required=True,
        metavar="NAME",
        help="the Q-network to export: Q_real, Q_real_target, Q_real_average, Q_sim or Q_sim_target",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="policy directory (must not exist, or be empty)")
    p.set_defaults(handler=cmd_export_q)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser(
        "train",
        help="training steps per second of every method (64x64, batch 8), CPU and GPU when present",
        description="Steps per second of each method's training step on synthetic batches at 64x64, after two "
        "warm-up steps: the GAN methods at GAN batch --batch-size, their Q-networks on 32 transitions a step "
        "(rlcg train's --q-batch-size default); sim-only, the Q-network alone, on the same 32, so that its "
        "column is the Q work inside every GAN step.",
    )
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per method (default: 10)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="GAN batch (default: 8)")
    p.add_argument(
        "--devices",
        nargs="+",
        type=device_name,
        default=None,
        help="devices to measure (default: cpu, and cuda if any)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also time rl-cyclegan with channels_last and fused Adam switched on, each alone and both together, "
        "and on a GPU with bf16 autocast alone and with both (the hot-path ablation; reported under hot_path: "
        "medians over --repeats rounds, speedups against neither)",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="with --ablation: rounds, the variants taking turns in each; medians are reported (default: 3)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_train)

    from rlcg.eval.transfer import register_transfer

    register_transfer(bench_sub)


def _open(specs: list[str] | None, what: str):
    from rlcg.rl.commands import open_sources, parse_data_arg

    if not specs:
        raise CommandError(f"{what} is required for this method")
    try:
        parsed = [parse_data_arg(s) for s in specs]
    except argparse.ArgumentTypeError as exc:
        raise CommandError(str(exc)) from None
    return open_sources(parsed)


def build_gan_config(args, method: str, steps: int, batch: int):
    from rlcg.gan.trainer import GanTrainConfig, LossWeights
    from rlcg.models.gan import DiscriminatorConfig, GeneratorConfig

    lr_q = {} if args.lr_q is None else {"lr_q": args.lr_q}
    return GanTrainConfig(
        method=method,
        steps=steps,
        batch_size=batch,
        q_batch_size=args.q_batch_size or max(32, batch),
        lr_schedule=args.lr_schedule,
        lr_decay_from=args.lr_decay_from,
        q_updates_per_step=args.q_updates_per_step,
        q_tail_steps=args.q_tail_steps,
        q_real_average_from=args.q_real_average_from,
        q_real_augment=args.q_real_augment,
        gan_objective=args.gan_loss,
        cycle_distance=args.cycle_loss,
        weights=LossWeights(
            gan=args.lambda_gan,
            cycle=args.lambda_cycle,
            rl_scene=args.lambda_rl_scene,
            rl=args.lambda_rl,
            identity=args.lambda_identity,
        ),
        real_rl=args.real_rl,
        real_rl_share=args.real_rl_share,
        rl_scene_trains_q=args.rl_scene_trains_q,
        generator=GeneratorConfig(width=args.gen_width, blocks=args.gen_blocks),
        discriminator=DiscriminatorConfig(width=args.disc_width, layers=args.disc_layers),
        seed=args.seed,
        bf16=args.bf16,
        channels_last=args.channels_last,
        fused_adam=args.fused_adam,
        checkpoint_every=args.checkpoint_every or 500,
        **lr_q,
    )


def train_method(args, method: str, sim_specs, real_specs, out: Path, progress: bool = True) -> Path:
    """Train ``method`` and return the exported policy checkpoint (RUN/policy)."""
    import torch

    from rlcg.models.qnet import QNetConfig
    from rlcg.provenance import provenance
    from rlcg.rl.policy import resolve_policy_path
    from rlcg.rl.qtopt import QTOptTrainer, QTrainConfig
    from rlcg.sim.config import SimConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    from rlcg.rl.commands import refuse_data_as_output

    refuse_data_as_output(out)
    device = resolve_device(args.device)  # a missing GPU is an error before any data is read
    if getattr(args, "bf16", False) and device == "cpu" and method in GAN_METHODS:
        print(
            "note: --bf16 on the CPU: bfloat16 autocast made the rl-cyclegan step 17x slower than float32 on a "
            "CPU without bf16 units (docs/benchmarks.md); it is meant for GPUs",
            file=sys.stderr,
        )
    sim_data, (h, _) = _open(sim_specs, "--sim-data")
    sim = SimConfig.load(image_size=h)
    qcfg = QNetConfig.for_world(sim)
    prov: dict = {"provenance": provenance(seed=args.seed)}
    if args.init_q:
        prov["init_q"] = str(resolve_policy_path(args.init_q))
    if args.init_run:
        prov["init_run"] = str(Path(args.init_run).resolve())
    if args.fresh_q_real:
        prov["fresh_q_real"] = True
    monitor = None
    if args.monitor_data:
        from rlcg.data.dataset import TransitionDataset
        from rlcg.eval.offline import OutcomeMonitor

        if not Path(args.monitor_data).exists():
            raise CommandError(f"--monitor-data {args.monitor_data}: no such dataset or bag directory")
        monitor = OutcomeMonitor(TransitionDataset.open(args.monitor_data), args.monitor_every, out / "monitor.jsonl")
    saved = out / ("checkpoint" if method in GAN_METHODS else "policy") / "config.json"
    if args.resume and not saved.exists():
        print(f"note: --resume: {out} holds no {method} run yet; starting a new one", file=sys.stderr)
    if method not in GAN_METHODS:
        tcfg = QTrainConfig(
            steps=args.steps or 3000,
            batch_size=args.batch_size or 64,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every or 1000,
        )
        if (out / "policy" / "config.json").exists() and not args.resume:
            raise CommandError(f"{out} already holds a trained policy; pass --resume or choose another --out")
        trainer = QTOptTrainer(
            tcfg,
            qcfg,
            sim_data,
            out / "policy",
            device=device,
            resume=args.resume,
            provenance=prov,
            init=resolve_policy_path(args.init_q) if args.init_q else None,
        )
        with _run_writer(out, trainer.step, monitor) as writer:
            trainer.fit(progress=progress, writer=writer, monitor=monitor)
        return out / "policy"

    from rlcg.gan.trainer import RLCycleGANTrainer

    real_data, (rh, _) = _open(real_specs, "--real-data")
    if rh != h:
        raise CommandError(f"sim images are {h}px but real images {rh}px")
    if (out / "checkpoint" / "config.json").exists() and not args.resume:
        raise CommandError(f"{out} already holds a {method} run; pass --resume or choose another --out")
    if (out / "policy" / "config.json").exists() and not (out / "checkpoint" / "config.json").exists():
        raise CommandError(f"{out} already holds a trained policy (a sim-only run?); choose another --out")
    cfg = build_gan_config(args, method, args.steps or 2000, args.batch_size or 8)
    trainer = RLCycleGANTrainer(
        cfg,
        qcfg,
        sim_data,
        real_data,
        out,
        device=device,
        resume=args.resume,
        init_q=resolve_policy_path(args.init_q) if args.init_q else None,
        provenance=prov,
        fresh_q_real=args.fresh_q_real,
        init_run=args.init_run,
    )
    try:
        with _run_writer(out, trainer.step, monitor, main=trainer.dist.is_main) as writer:
            trainer.fit(progress=progress, writer=writer, monitor=monitor)
    finally:
        trainer.dist.close()
    return out / "policy"


@contextlib.contextmanager
def _run_writer(out: Path, step: int, monitor=None, main: bool = True):
    """RUN/tb's TensorBoard writer, made once the trainer has accepted its settings (a refused start
    leaves no event file) and on the main process only (None elsewhere). See resumed_writer."""
    from rlcg.runlog import resumed_writer

    if not main:
        yield None
        return
    if monitor is not None:
        monitor.resume_at(step)
    writer = resumed_writer(out / "tb", step)
    try:
        yield writer
    finally:
        writer.close()


# Options that only some methods read: given to another method with a value other than its default, the
# run would silently ignore them, so cmd_train refuses them, with the way to the same end where one exists.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "real_data": GAN_METHODS,
    "real_rl": GAN_METHODS,
    "init_run": GAN_METHODS,
    "lr_schedule": GAN_METHODS,
    "lr_q": GAN_METHODS,
    "q_updates_per_step": GAN_METHODS,
    "q_tail_steps": GAN_METHODS,
    "q_real_average_from": GAN_METHODS,
    "q_real_augment": GAN_METHODS,
    "lambda_identity": GAN_METHODS,
    "q_batch_size": GAN_METHODS,
    "gen_width": GAN_METHODS,
    "gen_blocks": GAN_METHODS,
    "disc_width": GAN_METHODS,
    "disc_layers": GAN_METHODS,
    "gan_loss": GAN_METHODS,
    "lambda_gan": GAN_METHODS,
    "lambda_rl": GAN_METHODS,
    "bf16": GAN_METHODS,
    "channels_last": GAN_METHODS,
    "fused_adam": GAN_METHODS,
    "lambda_cycle": METHODS_WITH_F,
    "lambda_rl_scene": ("rl-cyclegan",),
    "rl_scene_trains_q": ("rl-cyclegan",),
}
Q_ALONE_INSTEAD = {  # what a Q-only run uses instead of a GAN method's option
    "real_rl": "to train Q on real data alone, pass it as --sim-data",
    "init_run": "to start Q alone from a policy, use --init-q",
    "lr_schedule": "for Q alone use rlcg train-q --lr-schedule",
    "lr_q": "for Q alone use rlcg train-q --lr",
    "q_updates_per_step": "Q alone takes one update per step: give it more --steps",
    "q_tail_steps": "for Q alone use rlcg train-q --lr-schedule cosine",
}


def unused_options(args) -> list[str]:
    """The flags of METHOD_OPTIONS that ``args.method`` does not read but that were given a value
    other than their default (--cycle-loss: also gan's identity term reads it)."""
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    defaults = vars(parser.parse_args([]))
    readers = dict(METHOD_OPTIONS)
    readers["cycle_loss"] = GAN_METHODS if args.lambda_identity else METHODS_WITH_F
    return [
        "--" + dest.replace("_", "-")
        for dest, methods in readers.items()
        if args.method not in methods and getattr(args, dest) != defaults.get(dest)
    ]


def cmd_train(args) -> int:
    batch = args.batch_size or 8
    if args.method in GAN_METHODS and args.q_batch_size is not None and args.q_batch_size < batch:
        raise CommandError(
            f"--q-batch-size {args.q_batch_size} is below --batch-size {batch}; it must be at least that"
        )
    if args.method in GAN_METHODS and not args.real_data:
        raise CommandError(f"--method {args.method} needs --real-data (real images for the GAN)")
    if args.method not in GAN_METHODS:
        single_process_only(f"rlcg train --method {args.method}")
    unused = unused_options(args)
    if unused:
        dests = [flag[2:].replace("-", "_") for flag in unused]
        readers = sorted({m for dest in dests for m in METHOD_OPTIONS.get(dest, METHODS_WITH_F)})
        hints = list(dict.fromkeys(Q_ALONE_INSTEAD[d] for d in dests if d in Q_ALONE_INSTEAD))
        raise CommandError(
            f"--method {args.method} does not use {', '.join(unused)} (only {', '.join(readers)} do); leave "
            f"{'it' if len(unused) == 1 else 'them'} out" + "".join(f"; {h}" for h in hints)
        )
    if args.real_rl_share != 0.5 and not args.real_rl:
        raise CommandError("--real-rl-share applies with --real-rl")
    if not 0.0 < args.real_rl_share <= 1.0:
        raise CommandError(f"--real-rl-share must be in (0, 1], got {args.real_rl_share}")
    if args.lr_decay_from is not None:
        if args.lr_schedule != "linear-decay":
            raise CommandError("--lr-decay-from applies with --lr-schedule linear-decay")
        steps = args.steps or 2000
        if not 0 <= args.lr_decay_from < steps:
            raise CommandError(
                f"--lr-decay-from must be a step from 0 to {steps - 1} (--steps {steps}), got {args.lr_decay_from}"
            )
    if args.init_run is not None:
        if args.init_q:
            raise CommandError("--init-run already starts the Q-networks (from RUN); leave out --init-q")
        if not (Path(args.init_run) / "checkpoint" / "config.json").is_file():
            raise CommandError(f"--init-run {args.init_run}: no GAN run checkpoint there (RUN/checkpoint)")
    if args.fresh_q_real and not (args.method == "rl-cyclegan" and (args.init_q or args.init_run)):
        raise CommandError(
            "--fresh-q-real starts Q_sim from --init-q or --init-run and Q_real from scratch: it needs --method "
            "rl-cyclegan and one of them (for the other methods, leave out --init-q)"
        )
    if args.q_tail_steps < 0:
        raise CommandError(f"--q-tail-steps must be 0 or more, got {args.q_tail_steps}")
    if args.q_real_average_from is not None:
        total = (args.steps or 2000) + args.q_tail_steps
        if not 0 <= args.q_real_average_from < total:
            raise CommandError(
                f"--q-real-average-from must be a step from 0 to {total - 1} (the run has {total}), "
                f"got {args.q_real_average_from}"
            )
    try:
        policy = train_method(
            args, args.method, args.sim_data, args.real_data, Path(args.out), progress=not args.no_progress
        )
    except Interrupted as exc:
        raise Interrupted(f"{exc}; the same command with --resume continues it") from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, once
        print(f"{args.method}: policy written to {policy}")
    return 0


def cmd_eval_consistency(args) -> int:
    from rlcg.data.dataset import TransitionDataset
    from rlcg.eval.consistency import format_consistency, scene_consistency

    if not (Path(args.run) / "checkpoint").is_dir():
        raise CommandError(f"{args.run}: no GAN run here (no checkpoint/ directory)")
    datasets = []
    for flag, path in (("--sim-data", args.sim_data), ("--real-data", args.real_data)):
        if not Path(path).exists():
            raise CommandError(f"{flag} {path}: no such dataset or bag directory")
        datasets.append(TransitionDataset.open(path))
    result = scene_consistency(args.run, *datasets, q_sim=args.q_sim, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else format_consistency(result))
    return 0


def cmd_translate(args) -> int:
    import torch

    from rlcg.gan.translate import translate_dataset

    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    result = translate_dataset(
        args.run,
        args.data,
        args.out,
        generator=args.generator,
        batch_size=args.batch_size,
        device=resolve_device(args.device),
        progress=not args.no_progress,
    )
    print(
        f"translate: {result['episodes']} episodes ({result['transitions']} transitions) of {args.data} "
        f"translated by {result['generator']} of {args.run} ({result['method']}) into {result['out']}"
    )
    return 0


def cmd_export_q(args) -> int:
    from rlcg.gan.trainer import export_q

    path = export_q(args.run, args.net, args.out)
    print(f"export-q: {args.net} of {args.run} written to {path}")
    return 0


class SyntheticTransitions:
    """The benches' transitions: random 64x64 images, one fixed grasp, random terminal rewards."""

    def __init__(self, n: int = 256, size: int = 64):
        import numpy as np

        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, b, rng):
        import numpy as np

        i = rng.integers(0, len(self), b)
        return argparse.Namespace(
            image=self.images[i],
            next_image=self.images[i],
            action=np.tile(np.array([0.6, 0.0, 0.3, 0.0], np.float32), (b, 1)),
            reward=rng.integers(0, 2, b).astype(np.float32),
            done=np.ones(b, bool),
        )


def cmd_bench_train(args) -> int:
    import numpy as np
    import torch

    from rlcg.gan.trainer import GanTrainConfig, RLCycleGANTrainer
    from rlcg.models.qnet import QNetConfig
    from rlcg.rl.qtopt import QTOptTrainer, QTrainConfig, WeightedSources
    from rlcg.sim.config import SimConfig

    if args.repeats is not None and not args.ablation:
        raise CommandError("--repeats sets the rounds of --ablation; pass both, or neither")
    repeats = args.repeats or 3
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = (
        [resolve_device(d, "--devices") for d in args.devices]
        if args.devices
        else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    )

    qcfg = QNetConfig.for_world(SimConfig.load())
    q_batch = max(GanTrainConfig().q_batch_size, args.batch_size)  # as rlcg train's defaults give

    def steps_per_s(method: str, device: str, **options) -> float:
        data = WeightedSources([(SyntheticTransitions(), 1.0)])
        with tempfile.TemporaryDirectory() as tmp:
            if method == "sim-only":  # at the Q batch of the GAN methods' Q-networks
                trainer = QTOptTrainer(QTrainConfig(batch_size=q_batch), qcfg, data, tmp, device=device)
            else:
                cfg = GanTrainConfig(method=method, batch_size=args.batch_size, q_batch_size=q_batch, **options)
                trainer = RLCycleGANTrainer(cfg, qcfg, data, data, tmp, device=device)
            for _ in range(2):  # warm-up: allocator, kernels
                trainer.train_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return args.steps / (time.perf_counter() - t0)

    report: dict = {
        "batch_size": args.batch_size,
        "q_batch_size": q_batch,
        "image_size": 64,
        "threads": torch.get_num_threads(),
        "devices": {},
    }
    for device in devices:
        rates = {f"{m}_steps_per_s": steps_per_s(m, device) for m in ("sim-only", *GAN_METHODS)}
        if args.ablation:
            variants = {
                "neither": dict(channels_last=False, fused_adam=False),
                "channels_last": dict(channels_last=True, fused_adam=False),
                "fused_adam": dict(channels_last=False, fused_adam=True),
                "both": dict(channels_last=True, fused_adam=True),
            }
            if device.startswith("cuda"):  # bf16 is for tensor cores: 17x slower on the 2-core CPU (benchmarks.md)
                variants["bf16"] = dict(channels_last=False, fused_adam=False, bf16=True)
                variants["bf16_both"] = dict(channels_last=True, fused_adam=True, bf16=True)
            # rounds in turn, so that a slow spell of a shared machine hits every variant alike
            runs: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(repeats):
                for k, v in variants.items():
                    runs[k].append(steps_per_s("rl-cyclegan", device, **v))
            hot = {f"{k}_steps_per_s": float(np.median(r)) for k, r in runs.items()}
            base = hot["neither_steps_per_s"]
            hot.update({f"{k}_speedup": hot[f"{k}_steps_per_s"] / base for k in variants if k != "neither"})
            rates["hot_path"] = hot
        report["devices"][device] = rates
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0
