"""`rlcg sim`, `rlcg collect`, `rlcg render` and `rlcg bench sim`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rlcg.device import DEVICE_CHOICES, device_name, resolve_device
from rlcg.errors import CommandError

POLICY_HELP = "random, scripted, oracle, default (the shipped learned checkpoint) or the path of a policy checkpoint"


def _checked(value, ok: bool, expected: str, text: str):
    """``value`` when ``ok``; else the argparse error an option's type raises."""
    if not ok:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
    return value


MAX_INT = 2**63 - 1  # what torch and numpy take as a seed or a count


def positive_int(text: str) -> int:
    value = int(text)
    return _checked(value, 1 <= value <= MAX_INT, "at least 1 (and below 2^63)", text)


def nonnegative_int(text: str) -> int:
    value = int(text)
    return _checked(value, 0 <= value <= MAX_INT, "at least 0 (and below 2^63)", text)


def int_within(low: int, high: int):
    """An argparse type: an integer within [low, high] (sizes whose excess only exhausts memory)."""

    def parse(text: str) -> int:
        value = int(text)
        return _checked(value, low <= value <= high, f"within {low}..{high}", text)

    parse.__name__ = f"integer within {low}..{high}"
    return parse


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate): NaN or infinity would train a NaN network."""
    value = float(text)
    return _checked(value, math.isfinite(value) and value > 0, "a finite number above 0", text)


def nonnegative_float(text: str) -> float:
    """A finite number of at least 0 (a loss weight)."""
    value = float(text)
    return _checked(value, math.isfinite(value) and value >= 0, "a finite number of at least 0", text)


def unit_fraction(text: str) -> float:
    """A number within [0, 1] (a discount, a probability)."""
    value = float(text)
    return _checked(value, 0.0 <= value <= 1.0, "within [0, 1]", text)


def png_path(text: str) -> str:
    if not text.lower().endswith(".png") or not Path(text).stem or Path(text).name.startswith("."):
        raise argparse.ArgumentTypeError(f"the output is a PNG file, so its name ends in .png, got {text!r}")
    return text


def image_size(text: str) -> int:
    value = int(text)
    if not 16 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"image size must be within 16..1024, got {value}")
    return value


def add_world_args(
    p: argparse.ArgumentParser,
    default_policy: str = "default",
    default_objects: str | None = None,
    default_seed: int = 0,
) -> None:
    p.add_argument(
        "--domain",
        default="sim",
        help="built-in domain (sim, randomized, pseudo-real, sim-camera-jitter) or a domain YAML",
    )
    p.add_argument("--policy", default=default_policy, help=POLICY_HELP + f" (default: {default_policy})")
    p.add_argument("--episodes", type=positive_int, default=100, help="number of episodes (default: 100)")
    p.add_argument(
        "--bins",
        choices=["single", "multi"],
        default="single",
        help="single: always the centre bin; multi: the robot is placed before a random bin",
    )
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=default_seed,
        help=f"base seed; episode i uses a seed derived from it (default: {default_seed})",
    )
    p.add_argument("--workers", type=int_within(1, 256), default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--objects",
        choices=["train", "test", "all"],
        default=default_objects,
        help="object split (default: "
        + (default_objects or "test for learned policies, train for random, scripted and oracle")
        + ")",
    )
    p.add_argument("--image-size", type=image_size, default=None, help="square image size (default: config, 64)")
    p.add_argument("--attempts", type=positive_int, default=1, help="grasp attempts per episode (default: 1)")
    p.add_argument(
        "--device",
        type=device_name,
        default="cpu",
        help=f"torch device for learned policies: {DEVICE_CHOICES} (default: cpu)",
    )
    add_cem_arg(p, "learned policies: ")
    p.add_argument(
        "--translate-with",
        metavar="RUN",
        default=None,
        help="learned policies: see each camera image through G (sim -> real) of the GAN run RUN, as Q_real "
        "sees sim images in training; in sim, its success in the world it learns in, and on-policy sim data "
        "for the run (recorded images stay untranslated)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_cem_arg(p: argparse.ArgumentParser, scope: str = "") -> None:
    """``--cem ITERS POP ELITES``: act with another cross-entropy search than the checkpoint's."""
    p.add_argument(
        "--cem",
        type=positive_int,
        nargs=3,
        default=None,
        metavar=("ITERS", "POP", "ELITES"),
        help=f"{scope}the cross-entropy method's iterations, population and elites when acting "
        "(default: the checkpoint's own, 2 64 6 for QT-Opt's)",
    )


def cem_from_args(values: Sequence[int] | None):
    """The CEMConfig that ``--cem`` asks for (None when not given), refused with a clear error if invalid."""
    if values is None:
        return None
    from rlcg.rl.cem import CEMConfig  # torch: only for learned policies

    cem = CEMConfig(*values)
    try:
        cem.validate()
    except ValueError as exc:
        raise CommandError(f"--cem: {exc}") from exc
    return cem


def register(sub) -> None:
    p = sub.add_parser(
        "sim",
        help="run the world with a policy and report the success rate (the main job)",
        description="Run the PyBullet three-bin world with a policy; print the success rate with its 95% "
        "Wilson interval, overall and per bin.",
    )
    add_world_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--record", metavar="DIR", default=None, help="also record the episodes as rosbag2 into DIR")
    p.set_defaults(handler=cmd_sim)

    p = sub.add_parser(
        "collect",
        help="collect episodes into rosbag2 files",
        description="Collect grasping episodes with a policy in a domain and record them as rosbag2 (MCAP).",
    )
    add_world_args(p, default_policy="scripted", default_objects="train")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not hold a bag already)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage (default: mcap)")
    p.add_argument(
        "--distro",
        choices=["jazzy", "humble"],
        default="jazzy",
        help="ROS 2 distribution whose message definitions and bag version are written (default: jazzy)",
    )
    p.add_argument(
        "--max-episodes-per-bag", type=positive_int, default=None, help="start a new bag after this many episodes"
    )
    p.add_argument("--max-bag-mb", type=positive_float, default=None, help="start a new bag after this many megabytes")
    p.add_argument(
        "--explore",
        type=unit_fraction,
        default=0.0,
        help="probability of a random grasp instead of the policy's (default: 0)",
    )
    p.set_defaults(handler=cmd_collect)

    p = sub.add_parser(
        "render",
        help="write a grid of camera images of a domain (PNG)",
        description="Render the camera image of several episodes' scenes into one PNG grid.",
    )
    p.add_argument("--domain", default="sim", help="built-in domain name or a domain YAML file")
    p.add_argument("--seeds", type=positive_int, default=16, help="number of scenes (default: 16)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="base seed (default: 0)")
    p.add_argument(
        "--bins", choices=["single", "multi"], default="multi", help="multi (default): scenes before all three bins"
    )
    p.add_argument("--image-size", type=image_size, default=None, help="square image size (default: 64)")
    p.add_argument(
        "--scale",
        type=int_within(1, 32),
        default=None,
        help="upscale each image by this factor in the grid (default: to about 128 pixels)",
    )
    p.add_argument("--out", required=True, type=png_path, metavar="PNG")
    p.set_defaults(handler=cmd_render)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser(
        "sim",
        help="grasp attempts per second with 1 and 2 workers",
        description="Grasp attempts per second of the world at 64x64 with the random policy, with 1 and 2 "
        "worker processes (after warm-up: every worker started with its mesh files preloaded, then an episode per "
        "worker).",
    )
    p.add_argument(
        "--attempts", type=positive_int, default=200, help="attempts per worker and measurement (default: 200)"
    )
    p.add_argument("--domain", default="sim", help="built-in domain name or a domain YAML file (default: sim)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_sim)


def _spec_from_args(args, default_split: str | None = None):
    from rlcg.rollout import RolloutSpec
    from rlcg.sim.domains import load_domain

    domain = load_domain(args.domain)  # fail fast, with the file and field named
    learned = args.policy not in ("random", "scripted", "oracle")
    if not learned and args.device != "cpu":
        raise CommandError(f"--device applies to learned policies, not to {args.policy!r}")
    device = resolve_device(args.device) if learned else "cpu"
    split = args.objects or default_split or ("test" if learned else "train")
    cem = tuple(args.cem) if getattr(args, "cem", None) else None
    if cem is not None and not learned:
        raise CommandError(f"--cem applies to learned policies, not to {args.policy!r}")
    translate_with = getattr(args, "translate_with", None)
    if translate_with is not None and not learned:
        raise CommandError(f"--translate-with applies to learned policies, not to {args.policy!r}")
    if learned:
        from rlcg.rl.policy import load_policy

        cem_from_args(cem)
        policy = load_policy(
            args.policy, device=device
        )  # a missing or broken checkpoint is an error before any worker starts
        if args.image_size is not None and args.image_size != policy.image_size:
            raise CommandError(
                f"--image-size {args.image_size}: the policy takes {policy.image_size}x{policy.image_size} images"
            )
        if translate_with is not None:
            from rlcg.gan.translate import translated_policy

            translated_policy(policy, translate_with)
    return RolloutSpec(
        domain=domain,
        policy=args.policy,
        bins=args.bins,
        split=split,
        image_size=args.image_size,
        attempts=args.attempts,
        explore=getattr(args, "explore", 0.0),
        device=device,
        cem=cem,
        translate_with=translate_with,
        base_seed=args.seed,
        episodes=args.episodes,
    )


def _translate_label(run: str | None) -> str:
    return "" if run is None else f" seeing through G of {run}"


def _cem_label(cem: tuple[int, int, int] | None) -> str:
    return "" if cem is None else " (CEM {} x {}, {} elites)".format(*cem)


def _grasp_offset_of(policy: str) -> list[float] | None:
    """The calibrated grasp offset a policy checkpoint carries (`rlcg calibrate`), None where there is none."""
    if policy in ("random", "scripted", "oracle"):
        return None
    from rlcg.rl.checkpoint import read_checkpoint_meta
    from rlcg.rl.policy import resolve_policy_path

    _, meta = read_checkpoint_meta(resolve_policy_path(policy))
    offset = meta["config"].get("grasp_offset")
    return [float(v) for v in offset] if offset and any(offset) else None


def _offset_label(offset: list[float] | None) -> str:
    return "" if offset is None else " (grasp offset {:+.1f}, {:+.1f} mm)".format(*(1000 * v for v in offset))


def cmd_sim(args) -> int:
    from rlcg.eval.stats import success_report
    from rlcg.interrupts import Interrupted
    from rlcg.rollout import RolloutInterrupted, rollout

    spec = _spec_from_args(args)
    sink = None
    if args.record:
        from rlcg.data.recorder import EpisodeRecorder

        sink = EpisodeRecorder(args.record)
    interrupted = None
    try:
        summary = rollout(spec, sink, workers=args.workers, progress=not args.no_progress, desc="sim")
    except RolloutInterrupted as exc:  # the episodes that finished are reported, marked as a partial run
        if not exc.summary.episodes:
            raise Interrupted("no episode finished") from None
        summary, interrupted = exc.summary, exc
    finally:
        if sink is not None:
            sink.close()
    report = success_report(summary.successes, summary.episodes, summary.per_bin)
    if interrupted is not None:
        report["interrupted"] = {"episodes_planned": interrupted.planned}
    report.update(domain=spec.domain.name, policy=args.policy, bins=args.bins, objects=spec.split, seed=args.seed)
    if spec.cem is not None:
        report["cem"] = dict(zip(("iterations", "population", "elites"), spec.cem, strict=True))
    if spec.translate_with is not None:
        report["translate_with"] = spec.translate_with
    offset = _grasp_offset_of(args.policy)
    if offset is not None:
        report["grasp_offset"] = offset
    if args.json:
        print(json.dumps(report))
    else:
        lo, hi = report["ci95"]
        print(
            f"{args.policy}{_cem_label(spec.cem)}{_offset_label(offset)}{_translate_label(spec.translate_with)} "
            f"on {spec.domain.name} "
            f"({args.bins} bin, {spec.split} objects, seed {args.seed}): "
            f"success {report['success_rate']:.1%} [95% CI {lo:.1%}, {hi:.1%}] over {summary.episodes} episodes"
        )
        for b, r in report["per_bin"].items():
            print(f"  bin {b}: {r['success_rate']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] of {r['episodes']}")
    if interrupted is not None:
        print(f"interrupted: {interrupted}; the figures above are of those alone", file=sys.stderr)
        return 130
    return 0


def cmd_collect(args) -> int:
    from rlcg.data.recorder import EpisodeRecorder
    from rlcg.interrupts import Interrupted
    from rlcg.rollout import rollout

    spec = _spec_from_args(args, default_split=args.objects or "train")
    recorder = EpisodeRecorder(
        args.out,
        storage=args.storage,
        distro=args.distro,
        max_episodes_per_bag=args.max_episodes_per_bag,
        max_bag_bytes=int(args.max_bag_mb * 1e6) if args.max_bag_mb is not None else None,
    )
    try:
        summary = rollout(spec, recorder, workers=args.workers, progress=not args.no_progress, desc="collect")
    except KeyboardInterrupt:  # the bag is closed below, with every finished episode
        kept = f"{recorder.episodes} finished episodes kept in {args.out}"
        raise Interrupted(kept if recorder.episodes else "no episode finished") from None
    finally:
        recorder.close()
    print(
        f"collected {summary.episodes} episodes ({summary.attempts} grasp attempts; "
        f"{summary.successes / max(summary.episodes, 1):.1%} of episodes successful) into {args.out}"
    )
    return 0


def cmd_render(args) -> int:
    from PIL import Image

    from rlcg.rollout import episode_seed
    from rlcg.sim.world import ThreeBinWorld

    images = []
    with ThreeBinWorld(domain=args.domain, bins=args.bins, image_size=args.image_size) as world:
        for i in range(args.seeds):
            images.append(world.reset(episode_seed(args.seed, i)))
    grid = image_grid(images, scale=args.scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    print(f"wrote {out} ({len(images)} scenes of {args.domain}, {images[0].shape[1]}x{images[0].shape[0]})")
    return 0


def image_grid(images, columns: int | None = None, scale: int | None = None, pad: int = 2):
    """Images (equal size) tiled into one uint8 array, upscaled by nearest neighbour."""
    import numpy as np

    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    h, w = images[0].shape[:2]
    scale = scale or max(1, round(128 / w))
    hs, ws = h * scale, w * scale
    grid = np.full((rows * (hs + pad) + pad, columns * (ws + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        big = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
        grid[pad + r * (hs + pad) : pad + r * (hs + pad) + hs, pad + c * (ws + pad) : pad + c * (ws + pad) + ws] = big
    return grid


def cmd_bench_sim(args) -> int:
    from rlcg.rollout import EpisodeRunner, RolloutSpec, episode_seed

    cores = os.cpu_count() or 1
    rates = {}
    for workers in (1, 2):
        seeds = [episode_seed(12345, i) for i in range(args.attempts * workers)]
        spec = RolloutSpec(domain=args.domain, policy="random", image_size=64)
        with EpisodeRunner(spec, workers) as runner:
            # Warm-up: every worker started (object mesh files preloaded), then an episode per worker.
            runner.wait_ready()
            list(runner.run([episode_seed(999, i) for i in range(workers)], ordered=False))
            t0 = time.perf_counter()
            count = sum(len(ep.steps) for ep in runner.run(seeds, ordered=False))
            rates[workers] = count / (time.perf_counter() - t0)
    report = {
        "attempts_per_s_1_worker": rates[1],
        "attempts_per_s_2_workers": rates[2],
        "attempts_per_s_per_core": rates[2] / min(2, cores),
        "scaling_2_vs_1": rates[2] / rates[1],
        "cores": cores,
        "image_size": 64,
        "policy": "random",
        "domain": args.domain,
        "attempts_per_worker": args.attempts,  # each measurement runs attempts x workers
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    return 0
