"""How a command joins the ``pac-ros`` parser: its own parser plus the handler that runs it."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from pac_ros.errors import PacRosError

Handler = Callable[[argparse.Namespace], int]
Subcommands = argparse._SubParsersAction  # what add_subparsers returns


def add_command(sub: Subcommands, name: str, handler: Handler, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose parsed arguments go to ``handler`` (its return value is the exit code)."""
    p = sub.add_parser(name, help=help.replace("%", "%%"), description=help, **kwargs)
    p.set_defaults(handler=handler)
    return p


def add_group(sub: Subcommands, name: str, help: str) -> Subcommands:
    """A command made of subcommands (``pac-ros dataset info``, ...)."""
    p = sub.add_parser(name, help=help.replace("%", "%%"), description=help)
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_spec_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", type=Path, default=None, help="robot/task spec YAML (default config/robot.yaml)")


def load_spec(path: Path | None):
    from pac_ros.spec import Spec, default_spec

    return Spec.load(path) if path else default_spec()


class UsageError(PacRosError):
    """An argument value the command cannot work with."""
