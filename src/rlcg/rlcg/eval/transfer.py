"""The sim-to-real transfer benchmark: the paper's Table 1 (and Table 2 with --real-rl) in miniature.

Collects sim, randomized-sim and "real" episodes (real = any domain: a built-in name or a user's own
domain YAML, the hidden reality), trains the five methods (or starts from a given sim-only policy),
evaluates every policy in the real domain on the same evaluation seeds and held-out objects, and
writes report.json, report.md, a bar chart of success with 95% Wilson intervals, sample
translations per method and, with --real-rl, the curve of success against the amount of real data.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rlcg.errors import CommandError
from rlcg.gan.methods import GAN_METHODS, METHODS
from rlcg.sim.commands import int_within, nonnegative_int, positive_int

EVAL_SEED = 1000
METHOD_ORDER = METHODS  # the report's rows, in Table 1's order


@dataclass(frozen=True)
class TransferPreset:
    sim_episodes: int
    real_episodes: int
    randomized_episodes: int
    q_steps: int
    gan_steps: int
    q_batch: int
    gan_batch: int
    eval_episodes: int
    real_rl_fractions: tuple[float, ...]
    gen_width: int = 16
    gen_blocks: int = 4
    # The sim-only policy every other method starts from: None trains it here on the sim episodes;
    # a checkpoint ("default": the shipped one) is used as is, and the sim data then add
    # sim_episodes on-policy episodes of it (exploring with onpolicy_explore) to the scripted ones,
    # so that Q_real keeps learning from the states its own grasps reach.
    sim_only_policy: str | None = None
    onpolicy_explore: float = 0.2


PRESETS = {
    # Checks that the pipeline runs end to end in under 3 minutes on 2 cores; not the numbers.
    "smoke": TransferPreset(
        sim_episodes=40,
        real_episodes=24,
        randomized_episodes=40,
        q_steps=20,
        gan_steps=6,
        q_batch=16,
        gan_batch=4,
        eval_episodes=8,
        real_rl_fractions=(0.5, 1.0),
    ),
    # The full run reported in docs/results.md, about 80 minutes on 2 otherwise idle CPU cores (the machines this
    # project is developed on). The methods compete on top of a competent sim-only policy (the shipped one, 91.7% in
    # sim, made by scripts/make_default_policy.sh from 30,000 sim grasps in about an hour): a sim-only Q trained
    # within the benchmark's budget grasps too poorly for the methods to differ (docs/results.md).
    "paper": TransferPreset(
        sim_episodes=5000,
        real_episodes=1000,
        randomized_episodes=5000,
        q_steps=2000,
        gan_steps=2000,
        q_batch=64,
        gan_batch=8,
        eval_episodes=300,
        real_rl_fractions=(0.25, 0.5, 1.0),
        sim_only_policy="default",
    ),
}


def register_transfer(bench_sub) -> None:
    p = bench_sub.add_parser(
        "transfer",
        help="train all five methods and evaluate them in a 'real' domain (the paper's Table 1)",
        description="Collect sim, randomized and real episodes, train sim-only (or take a given sim-only policy: "
        "--sim-only-policy, the paper preset's shipped one), randomized-sim, gan, cyclegan and rl-cyclegan, "
        "evaluate each in the real domain on fixed seeds and held-out objects, and write a "
        "report (report.md, report.json, figures) to --out. Re-running with the same --out reuses finished parts; "
        "another real domain, preset size or seed needs another --out.",
    )
    p.add_argument(
        "--real-domain",
        default="pseudo-real",
        help="built-in domain or a domain YAML (the 'reality'; default: pseudo-real)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke", help="run sizes (default: smoke)")
    p.add_argument(
        "--sim-episodes",
        type=positive_int,
        default=None,
        help="episodes of each sim collection (scripted sim, the sim-only policy's on-policy sim, and the "
        "randomized domain, so that randomized-sim sees as many episodes as sim-only); overrides the preset",
    )
    p.add_argument("--real-episodes", type=positive_int, default=None, help="override the preset")
    p.add_argument("--eval-episodes", type=positive_int, default=None, help="override the preset")
    p.add_argument("--real-rl", action="store_true", help="also the curve of success against real RL data")
    p.add_argument(
        "--sim-only-policy",
        metavar="CKPT",
        default=None,
        help="use this sim-only policy ('default': the shipped one) instead of training one; every other method "
        "starts from it (default: the preset's: smoke trains one, paper uses 'default')",
    )
    p.add_argument("--workers", type=int_within(1, 256), default=2, help="simulation processes (default: 2)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", required=True, metavar="REPORT_DIR")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_bench_transfer)


def _check_same_settings(out: Path, real, preset: TransferPreset, seed: int) -> None:
    """A report directory holds the data and runs of one setting. Re-run with another reality,
    preset size or seed, it would reuse data and trained runs that belong to the first, so that
    is refused. (--real-rl adds runs and --eval-episodes only evaluates: both may change.)"""
    settings = {
        "real_domain": json.loads(json.dumps(asdict(real.spec), default=str)),
        "preset": {k: v for k, v in json.loads(json.dumps(asdict(preset))).items() if k != "eval_episodes"},
        "seed": seed,
    }
    path = out / "settings.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        differ = sorted(k for k in settings.keys() | saved.keys() if settings.get(k) != saved.get(k))
        if differ:
            raise CommandError(
                f"{out} holds a benchmark run with other settings ({', '.join(differ)} differ); its data and "
                "runs do not belong to this one: choose another --out"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # its report.md would be overwritten
        raise CommandError(f"{out} is not empty and holds no benchmark run (settings.json); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def _collect(
    out: Path,
    domain,
    policy: str,
    episodes: int,
    seed: int,
    split: str,
    workers: int,
    progress: bool,
    desc: str,
    explore: float = 0.0,
) -> Path:
    """Episodes into rosbag2 under ``out``; a finished collection (marker file) is reused."""
    from rlcg.data.recorder import EpisodeRecorder
    from rlcg.rollout import RolloutSpec, rollout

    done = out / ".complete"
    if done.exists() and json.loads(done.read_text()).get("episodes") == episodes:
        return out
    if out.exists():
        import shutil

        shutil.rmtree(out)  # an unfinished collection from an interrupted run
    from rlcg.interrupts import Interrupted

    spec = RolloutSpec(domain=domain, policy=policy, split=split, base_seed=seed, episodes=episodes, explore=explore)
    recorder = EpisodeRecorder(out)
    try:
        summary = rollout(spec, recorder, workers=workers, progress=progress, desc=desc)
    except Interrupted as exc:
        raise Interrupted(
            f"{desc}: {exc}; an unfinished collection is not kept: the same command collects it again "
            "and continues the benchmark from there"
        ) from None
    finally:
        recorder.close()
    done.write_text(json.dumps({"episodes": episodes, "successes": summary.successes}))
    return out


def _evaluate(policy_dir: Path, domain, episodes: int, workers: int, progress: bool, desc: str) -> dict:
    from rlcg.eval.stats import success_report
    from rlcg.interrupts import Interrupted
    from rlcg.rollout import RolloutSpec, rollout

    spec = RolloutSpec(domain=domain, policy=str(policy_dir), split="test", base_seed=EVAL_SEED, episodes=episodes)
    try:
        summary = rollout(spec, None, workers=workers, progress=progress, desc=desc)
    except Interrupted as exc:
        raise Interrupted(
            f"{desc}: {exc}; the same command keeps the trained runs and evaluates again from the first episode"
        ) from None
    return success_report(summary.successes, summary.episodes, summary.per_bin)


def _train(
    method: str,
    run: Path,
    sim_dirs: list[Path],
    real_dirs: list[Path] | None,
    preset: TransferPreset,
    seed: int,
    progress: bool,
    init_q: Path | None = None,
    real_rl: bool = False,
) -> Path:
    """Train ``method`` into ``run`` (a finished run is reused); Q-only methods and GAN methods alike
    start their Q-network(s) from ``init_q`` when given."""
    from rlcg.gan.commands import add_train_args, train_method
    from rlcg.interrupts import Interrupted

    policy = run / "policy"
    if (run / ".complete").exists():
        return policy
    q_only = method in ("sim-only", "randomized-sim")
    # The defaults of `rlcg train` (one source for lambdas, generator size, ...), with the preset's sizes.
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args([])
    args.steps = preset.q_steps if q_only else preset.gan_steps
    args.batch_size = preset.q_batch if q_only else preset.gan_batch
    args.q_batch_size = preset.q_batch if q_only else 4 * preset.gan_batch
    args.real_rl = real_rl
    args.init_q = str(init_q) if init_q else None
    args.gen_width, args.gen_blocks, args.seed = preset.gen_width, preset.gen_blocks, seed
    args.resume = (run / "checkpoint").exists() or (policy / "config.json").exists()
    try:
        train_method(
            args,
            method,
            [str(d) for d in sim_dirs],
            [str(d) for d in real_dirs] if real_dirs else None,
            run,
            progress=progress,
        )
    except Interrupted as exc:
        raise Interrupted(f"{method}: {exc}; the same command continues the benchmark from there") from None
    (run / ".complete").write_text("done\n")
    return policy


def cmd_bench_transfer(args) -> int:
    from rlcg.provenance import provenance
    from rlcg.sim.domains import load_domain

    preset = PRESETS[args.preset]
    preset = replace(
        preset,
        sim_episodes=args.sim_episodes or preset.sim_episodes,
        randomized_episodes=args.sim_episodes or preset.randomized_episodes,
        real_episodes=args.real_episodes or preset.real_episodes,
        eval_episodes=args.eval_episodes or preset.eval_episodes,
        sim_only_policy=args.sim_only_policy or preset.sim_only_policy,
    )
    given_sim_only = None
    if preset.sim_only_policy:
        from rlcg.rl.policy import load_policy, resolve_policy_path

        given_sim_only = resolve_policy_path(preset.sim_only_policy)
        load_policy(given_sim_only)  # a missing or broken checkpoint fails now, not after the collection
    real = load_domain(args.real_domain)
    out = Path(args.out)
    _check_same_settings(out, real, preset, args.seed)
    progress = not args.no_progress
    t_start = time.perf_counter()
    log = _Log(out / "log.txt", quiet=args.json)
    log(f"transfer benchmark: real domain {real.name} ({real.source}), preset {args.preset}: {asdict(preset)}")

    seed = args.seed
    data = out / "data"
    sim_dir = _collect(
        data / "sim",
        "sim",
        "scripted",
        preset.sim_episodes,
        seed * 10 + 1,
        "train",
        args.workers,
        progress,
        "collect sim",
    )
    sim_dirs = [sim_dir]
    if given_sim_only is not None:
        sim_dirs.append(
            _collect(
                data / "sim-onpolicy",
                "sim",
                str(given_sim_only),
                preset.sim_episodes,
                seed * 10 + 4,
                "train",
                args.workers,
                progress,
                "collect sim on-policy",
                explore=preset.onpolicy_explore,
            )
        )
    rnd_dir = _collect(
        data / "randomized",
        "randomized",
        "scripted",
        preset.randomized_episodes,
        seed * 10 + 2,
        "train",
        args.workers,
        progress,
        "collect randomized",
    )
    # Real data in chunks, so that --real-rl can train on growing amounts of it.
    fractions = sorted(set(preset.real_rl_fractions) | {1.0})
    sizes = sorted({max(1, round(f * preset.real_episodes)) for f in fractions})  # two fractions may round alike
    chunk_sizes = [b - a for a, b in zip([0, *sizes[:-1]], sizes)]
    real_dirs = [
        _collect(
            data / f"real-{i}",
            real,
            "scripted",
            n,
            seed * 10 + 3 + 100 * i,
            "train",
            args.workers,
            progress,
            f"collect real {i + 1}/{len(chunk_sizes)}",
        )
        for i, n in enumerate(chunk_sizes)
    ]
    log(f"data ready after {time.perf_counter() - t_start:.0f} s")

    runs = out / "runs"
    if given_sim_only is not None:
        sim_only = given_sim_only
    else:
        sim_only = _train("sim-only", runs / "sim-only", sim_dirs, None, preset, seed, progress)
    policies = {
        "sim-only": sim_only,
        "randomized-sim": _train(
            "randomized-sim", runs / "randomized-sim", [rnd_dir], None, preset, seed, progress, init_q=given_sim_only
        ),
    }
    for method in GAN_METHODS:
        policies[method] = _train(method, runs / method, sim_dirs, real_dirs, preset, seed, progress, init_q=sim_only)
    log(f"training done after {time.perf_counter() - t_start:.0f} s")

    results = {}
    for method in METHOD_ORDER:
        results[method] = _evaluate(
            policies[method], real, preset.eval_episodes, args.workers, progress, f"eval {method}"
        )
        log(
            f"{method:15s} in {real.name}: {results[method]['success_rate']:.1%} "
            f"[{results[method]['ci95'][0]:.1%}, {results[method]['ci95'][1]:.1%}]"
        )
    # Offline, how well each policy's Q ranks real grasps it never learned from: the last real chunk's
    # outcomes (its images are GAN training data, its labels are not; rlcg eval-data computes the same).
    for method in METHOD_ORDER:
        results[method]["offline"] = _score_offline(policies[method], real_dirs[-1])
    reference = {
        m: _evaluate(policies[m], "sim", preset.eval_episodes, args.workers, progress, f"eval {m} in sim")
        for m in ("sim-only", "rl-cyclegan")
    }

    curve = None
    if args.real_rl:
        curve = []
        for k, n in enumerate(sizes):
            dirs = real_dirs[: k + 1]
            real_only = _train("sim-only", runs / f"real-only-{n}", dirs, None, preset, seed, progress)
            rlcg_rl = _train(
                "rl-cyclegan",
                runs / f"rl-cyclegan-real-rl-{n}",
                sim_dirs,
                dirs,
                preset,
                seed,
                progress,
                init_q=sim_only,
                real_rl=True,
            )
            point = {
                "real_episodes": n,
                "real-only": _evaluate(
                    real_only, real, preset.eval_episodes, args.workers, progress, f"eval real-only {n}"
                ),
                "rl-cyclegan": _evaluate(
                    rlcg_rl, real, preset.eval_episodes, args.workers, progress, f"eval rl-cyclegan+real {n}"
                ),
            }
            curve.append(point)

    report = {
        "real_domain": real.name,
        "real_domain_file": str(real.source),
        "preset": args.preset,
        "settings": asdict(preset),
        "sim_only_policy": str(given_sim_only) if given_sim_only is not None else None,
        "methods": results,
        "in_sim": reference,
        "real_rl_curve": curve,
        "eval_seed": EVAL_SEED,
        "seconds": time.perf_counter() - t_start,
        "provenance": provenance(seed=seed),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    from rlcg.eval.report import write_transfer_report

    write_transfer_report(out, report, policies, sim_dir, real_dirs[0])
    log(f"report written to {out / 'report.md'} after {report['seconds']:.0f} s")
    if args.json:
        print(json.dumps(report))
    return 0


def _score_offline(policy: Path, data: Path) -> dict:
    from rlcg.data.dataset import TransitionDataset
    from rlcg.errors import RlcgError
    from rlcg.eval.offline import score_outcomes
    from rlcg.rl.policy import load_policy

    try:
        scores = score_outcomes(load_policy(policy).qnet, TransitionDataset.open(data))
    except RlcgError as exc:  # e.g. a smoke-sized chunk with one outcome only
        return {"data": str(data), "auc": None, "why_not": str(exc)}
    return {"data": str(data), **scores}


class _Log:
    def __init__(self, path: Path, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, text: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(text + "\n")
        if not self.quiet:
            print(text, flush=True)
