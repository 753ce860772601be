"""`ros2 run rlcg_ros train ...`: the `rlcg train` command of the core, with ROS's own arguments removed."""

from __future__ import annotations

import sys


def strip_ros_args(argv: list[str]) -> list[str]:
    """Arguments before ``--ros-args`` (up to a closing ``--``), as ros2 run may append them."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--ros-args":
            skipping = True
        elif skipping and arg == "--":
            skipping = False
        elif not skipping:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    from rlcg.cli import main as rlcg_main

    args = strip_ros_args(sys.argv[1:] if argv is None else list(argv))
    return rlcg_main(["train", *args])


if __name__ == "__main__":
    sys.exit(main())
