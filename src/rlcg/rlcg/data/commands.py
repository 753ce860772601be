"""`rlcg data info`, `rlcg data ingest` and `rlcg bench ingest`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rlcg.sim.commands import image_size, positive_int

MAX_WARNINGS_SHOWN = 100


def _image_size_arg(text: str) -> tuple[int, int]:
    """``64`` or ``HxW``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return parts[0], parts[1]


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="inspect bags and datasets, ingest bags into training datasets",
        description="Episode data: rosbag2 bags (as recorded by rlcg collect, rlcg sim --record or the ROS "
        "recorder node) and ingested transition datasets.",
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    q = data_sub.add_parser(
        "info",
        help="episodes, success rate, domains, image sizes, duration and topic counts of bags or a dataset",
        description="Summarise a bag, a directory of bags, or an ingested dataset. Bags are read whole, so "
        "damaged or incomplete episodes are listed as problems. Exits with status 2 when not one episode "
        "of the bags could be read and problems say why (after printing the report), or when a dataset "
        "is damaged.",
    )
    q.add_argument("path", metavar="PATH", help="a bag directory, a directory of bags, a .mcap/.db3 file, or a dataset")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(handler=cmd_info)

    q = data_sub.add_parser(
        "ingest",
        help="turn bags into a memory-mapped transition dataset for training",
        description="Decode and check the episodes of the given bags (directories are searched for bags) "
        "and write their transitions into DATASET. Bad episodes are skipped with a warning naming the file "
        "and episode; the rest is kept. An existing dataset is only added to with --append; bags and "
        "episodes already in it are skipped (a copy of a bag that lost episodes to damage is read for them).",
    )
    q.add_argument("bags", nargs="+", metavar="BAG_DIR", help="bags or directories holding bags")
    q.add_argument("--out", required=True, metavar="DATASET", help="dataset directory to create (or add to)")
    q.add_argument("--append", action="store_true", help="add to DATASET if it exists already")
    q.add_argument(
        "--image-size",
        type=_image_size_arg,
        default=None,
        metavar="N|HxW",
        help="image size of a new dataset (default: that of the first good episode); other sizes are skipped",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--json", action="store_true", help="print one JSON object (all warnings included)")
    q.set_defaults(handler=cmd_ingest)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser(
        "ingest",
        help="ingest throughput vs raw rosbags reading of the same bag",
        description="Collect random-policy episodes in the simulator and record them --copies times (as "
        "distinct episodes) into a fresh bag, then measure on that bag, in the same run: `rlcg data ingest` "
        "(decode, check, write the dataset) and reading every message's raw bytes with rosbags alone. Reports "
        "MB/s of both (bag bytes / time), their ratio and transitions/s; best of --repeats each. The copies "
        "make the bag large enough (about 27 MB at 64x64) that per-file set-up costs do not dominate.",
    )
    p.add_argument("--episodes", type=positive_int, default=100, help="episodes collected (default: 100)")
    p.add_argument(
        "--copies", type=positive_int, default=10, help="times each episode is recorded into the bag (default: 10)"
    )
    p.add_argument("--image-size", type=image_size, default=64, help="square image size, 16 to 1024 (default: 64)")
    p.add_argument("--attempts", type=positive_int, default=1, help="grasp attempts per episode (default: 1)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs of each, best kept (default: 5)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_bench_ingest)


# --------------------------------------------------------------------------- handlers
def cmd_info(args) -> int:
    from rlcg.data.info import format_info, info, nothing_read

    report = info(args.path)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_info(report))
    error = nothing_read(report)
    if error is not None:  # after the report, which lists the problems; scripts see the exit status
        sys.stdout.flush()
        print(f"rlcg data: error: {error}", file=sys.stderr)
        return 2
    return 0


def _print_problems(problems) -> None:
    for p in problems.items[:MAX_WARNINGS_SHOWN]:
        print(f"warning: {p}", file=sys.stderr)
    hidden = len(problems) - MAX_WARNINGS_SHOWN
    if hidden > 0:
        print(f"warning: {hidden} more warnings not shown (--json lists them all)", file=sys.stderr)


def cmd_ingest(args) -> int:
    from rlcg.data.ingest import ingest
    from rlcg.interrupts import Interrupted

    t0 = time.perf_counter()
    existed = Path(args.out).exists()
    try:
        report = ingest(
            args.bags,
            args.out,
            append=args.append,
            image_size=args.image_size,
            progress=not args.no_progress and not args.json,
        )
    except Interrupted:  # after the commit: the dataset holds the new episodes
        raise
    except KeyboardInterrupt:  # ingest undoes what it wrote
        raise Interrupted(f"{args.out} is as it was" if existed else f"nothing was written ({args.out})") from None
    seconds = time.perf_counter() - t0
    if args.json:
        out = report.as_dict()
        out["seconds"] = seconds
        out["warnings"] = [str(p) for p in report.problems.items]
        print(json.dumps(out))
        return 0
    _print_problems(report.problems)
    print(
        f"ingested {report.episodes} episodes ({report.transitions} transitions) from {report.bags} bag(s) "
        f"into {report.out} in {seconds:.1f} s"
        + (f"; {report.skipped_bags} bag(s) already in it skipped" if report.skipped_bags else "")
        + (f"; {report.duplicate_episodes} episode(s) already in it skipped" if report.duplicate_episodes else "")
    )
    if report.rejected_episodes or len(report.problems):
        print(f"skipped {report.rejected_episodes} episode(s); warnings: {report.problems.summary()}")
    return 0


def cmd_bench_ingest(args) -> int:
    import dataclasses
    import shutil
    import tempfile

    from rosbags.rosbag2 import Reader

    from rlcg.data.episode import Episode, MemorySink
    from rlcg.data.ingest import ingest
    from rlcg.data.recorder import EpisodeRecorder
    from rlcg.rollout import RolloutSpec, rollout

    with tempfile.TemporaryDirectory(prefix="rlcg-bench-ingest-") as tmp:
        root = Path(tmp)
        spec = RolloutSpec(
            policy="random", episodes=args.episodes, image_size=args.image_size, attempts=args.attempts, base_seed=2024
        )
        sink = MemorySink()
        rollout(spec, sink, progress=not args.json, desc="collect")
        with EpisodeRecorder(root / "bags", storage=args.storage, fsync=False) as recorder:
            for k in range(args.copies):
                for ep in sink.episodes:
                    meta = dataclasses.replace(ep.meta, episode_id=f"{ep.meta.episode_id}-copy{k}")
                    recorder.write(Episode(meta, ep.steps))
        (bag,) = recorder.bags
        bag_bytes = sum(f.stat().st_size for f in bag.iterdir() if f.suffix in (".mcap", ".db3"))

        # Alternate the two, so that both see the same machine load; each ingest starts from scratch.
        raw_times, ingest_times, messages, transitions = [], [], 0, 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with Reader(bag) as reader:
                messages = sum(1 for _conn, _t, _raw in reader.messages())
            raw_times.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            report = ingest([bag], root / "dataset", progress=False)
            ingest_times.append(time.perf_counter() - t0)
            transitions = report.transitions
            if len(report.problems):
                raise RuntimeError(f"the benchmark bag did not ingest cleanly: {report.problems.summary()}")
            shutil.rmtree(root / "dataset")

    raw_s, ingest_s = min(raw_times), min(ingest_times)
    result = {
        "ingest_mb_per_s": bag_bytes / ingest_s / 1e6,
        "raw_read_mb_per_s": bag_bytes / raw_s / 1e6,
        "ratio": raw_s / ingest_s,
        "transitions_per_s": transitions / ingest_s,
        "raw_read_messages_per_s": messages / raw_s,
        "bag_mb": bag_bytes / 1e6,
        "episodes": args.episodes * args.copies,
        "transitions": transitions,
        "messages": messages,
        "image_size": args.image_size,
        "storage": args.storage,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    return 0
