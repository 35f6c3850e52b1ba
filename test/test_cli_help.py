"""``--help`` of ``pac-ros`` and of every (nested) subcommand, found by walking the parser."""
import argparse
import subprocess
import sys

import pytest

from pac_ros.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, path: tuple = ()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, path + (name,))


COMMANDS = list(_command_paths(build_parser()))


def test_the_walk_finds_nested_commands():
    assert ("dataset", "info") in COMMANDS and ("train",) in COMMANDS and ("experiment",) in COMMANDS
    assert len(COMMANDS) > 15


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "pac-ros")
def test_help_exits_0_with_usage(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: " + " ".join(("pac-ros",) + path)) and len(out.splitlines()) > 2


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "pac_ros.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "dataset" in done.stdout, done.stderr
