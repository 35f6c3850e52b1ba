"""The ``pac-ros`` command: the offline side of the package (no ROS needed)."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

from pac_ros.cli import dataset, episodes, training  # noqa: E402
from pac_ros.errors import PacRosError  # noqa: E402

GROUPS = (episodes, dataset, training)  # each registers its commands, in --help order

# Failures that are the input's fault, reported as ``error: <message>`` (exit 2) instead of a traceback:
# the project's errors, and the builtin kinds the library raises for a path, value or index it cannot use.
REPORTED = (PacRosError, OSError, ValueError, IndexError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pac-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not isinstance(exc, REPORTED):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
