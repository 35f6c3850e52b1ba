"""One project error base; the pac-ros command reports such errors as one line, and bugs as tracebacks."""
import argparse

import pytest

from pac_ros.cli import main
from pac_ros.data import DatasetError
from pac_ros.data.messages import ConversionError
from pac_ros.errors import PacRosError
from pac_ros.learning import ConfigError
from pac_ros.spec import SpecError


def test_project_errors_share_the_base_and_keep_their_builtin_ones():
    for error in (DatasetError, ConversionError, ConfigError, SpecError):
        assert issubclass(error, PacRosError)
    assert all(issubclass(e, ValueError) for e in (ConversionError, ConfigError, SpecError))


def test_main_prints_a_project_error_and_exits_2(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err and "Traceback" not in err


def test_main_lets_a_bug_through(monkeypatch):
    import pac_ros.cli.dataset as dataset_cli

    def broken(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(dataset_cli.EXPORTERS, "mcap", broken)
    with pytest.raises(ZeroDivisionError):
        main(["dataset", "export", "ds", "--out", "x"])
