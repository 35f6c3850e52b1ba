"""Soak: two minutes' worth of control ticks through bridge, policy node and recorder."""
from __future__ import annotations

import importlib.util

import pytest
from fault_helpers import REPO


@pytest.mark.slow
def test_soak_two_minutes_equivalent(ros, tmp_path):
    """bench/soak.py for 2 minutes' worth of 20 Hz ticks (2400): bridge + policy node with the
    shipped model + recorder, one executor. The bridge runs lock-step, so it goes faster than
    real time (about 20-30 s of wall time here). Memory must not grow, ticks must not be missed,
    every finished episode must be committed and the dataset must validate."""
    spec = importlib.util.spec_from_file_location("soak", REPO / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    r = soak.soak(2.0, tmp_path / "ds", rate_hz=20.0, mode="lockstep")
    print(soak.describe(r))
    assert r["ticks"] == 2400 and r["valid"], r
    assert r["rss_growth_mib"] < 30.0, r
    assert r["missed"] <= 2, r  # the first step may come before the policy's first tick
    assert r["committed"] == r["episodes_run"] - 1 >= 5 and r["commit_failures"] == 0, r
    assert r["validated_episodes"] == r["committed"]
