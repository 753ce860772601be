"""The `rlcg` command line.

Each area of the library registers its own subcommands (``register(subparsers)``) and benchmarks
(``register_bench(bench_subparsers)``); heavy imports (torch) happen inside the handlers, so
``rlcg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rlcg.errors import RlcgError

COMMAND_MODULES = ("rlcg.sim.commands", "rlcg.data.commands", "rlcg.rl.commands", "rlcg.gan.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlcg",
        description="RL-CycleGAN sim-to-real grasping: simulate, collect, train, evaluate, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = sub.add_parser("bench", help="speed benchmarks (JSON with --json); figures go to docs/benchmarks.md")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rlcg.provenance import record_command

    parser = build_parser()
    args = parser.parse_args(argv)
    record_command(sys.argv[1:] if argv is None else argv)
    try:
        result = args.handler(args)
    except BrokenPipeError:  # the reader of stdout left (`rlcg data info B | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except (RlcgError, OSError) as exc:  # OSError: a missing or unreadable file, a full disk
        print(f"rlcg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted says what was kept
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
