"""scripts/probe_bc.py runs end to end on a tiny dataset and reports what it promises."""
import importlib.util
from pathlib import Path

import pytest

from pac_ros.collect import collect

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "probe_bc.py"


@pytest.mark.parametrize("control,extra", [("joint", []), ("task", []), ("joint", ["--history"]),
                                           ("task", ["--chunk", "3", "--history"])])
def test_probe_bc_reports_held_out_error_and_closed_loop(tmp_path, capsys, control, extra):
    collect(tmp_path / "ds", 3, quality="perfect", seed=0)
    spec = importlib.util.spec_from_file_location("probe_bc", SCRIPT)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    argv = [str(tmp_path / "ds"), "--steps", "5", "--episodes", "1", "--hidden", "16", "--control", control, *extra]
    assert probe.main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out NLL" in out and ("shoulder_pan" if control == "joint" else "dyaw") in out
    if "--chunk" in extra:
        assert "dyaw@2" in out
    assert "closed loop: success" in out and "/1 =" in out and "grasped the instructed block" in out
