"""Soak: two minutes' worth of control ticks through bridge, policy node and recorder."""
from __future__ import annotations

import importlib.util
import sys

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


@pytest.mark.slow
def test_soak_with_crashes_accounts_for_every_episode(ros, tmp_path):
    """bench/soak_crashes.py for 100 s with the whole schedule once: the recorder and the policy
    node SIGKILLed and restarted, the cameras stopped beyond the staleness limit, the bridge
    frozen, the instruction changed mid-episode. Nothing committed is lost or invalid, every
    episode the bridge ran is accounted for, no command is out of limits, the policy holds
    through the outage and acts again after its restart."""
    spec = importlib.util.spec_from_file_location("soak_crashes", REPO / "bench" / "soak_crashes.py")
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak_crashes"] = soak  # its dataclasses look their module up
    spec.loader.exec_module(soak)
    r = soak.soak(100 / 60, tmp_path / "ds", cycle=95.0, warmup=15.0, domain_id=ros)
    print(soak.describe(r))
    assert soak.ok(r), r
    assert [e["kind"] for e in r["events"]] == [k for k, _ in soak.EVENTS]
    a = r["accounting"]
    assert a["committed"] == r["validated_episodes"] >= 5 and a["outcomes"]["committed whole"] >= 3, a
    # the kill loses the episode in flight, and any started while the new recorder comes up; ok() holds
    # that every lost one overlaps that window (none unaccounted)
    assert a["outcomes"].get("lost in flight at a recorder kill", 0) >= 1, a
    assert r["commands"] > 500 and r["bad_commands"] == 0
    outage = next(e for e in r["events"] if e["kind"] == "camera_outage")
    assert outage["holds"] >= 5 and outage["resume_to_acting_s"] is not None, outage
    assert r["restart_to_first_command_s"][0] is not None and r["restart_to_acting_s"][0] is not None
    assert r["memory"]["mujoco_bridge"]["incarnations"] == 1
    assert r["memory"]["recorder"]["incarnations"] == r["memory"]["policy"]["incarnations"] == 2


def test_soak_accounting_of_a_kill_as_an_episode_ends(monkeypatch):
    """CI's case: the recorder was killed as one episode ended (before its commit) and came back
    during the next, whose tail it recorded as joined_in_progress. Both are lost in flight."""
    from types import SimpleNamespace

    import pac_ros.data

    spec = importlib.util.spec_from_file_location("soak_crashes", REPO / "bench" / "soak_crashes.py")
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak_crashes"] = soak
    spec.loader.exec_module(soak)
    starts = [0.0, 4.02, 8.26, 10.78, 13.50, 16.12, 18.24]
    monitor = SimpleNamespace(instructions=[(s, s, "put the red block on the blue block") for s in starts])
    committed = [(0.12, 4.02, False), (4.14, 8.26, False), (8.38, 10.78, False), (15.62, 16.12, True),
                 (16.24, 18.24, False)]
    episodes = [{"start_stamp": a, "end_stamp": b, "success": True, "metadata": {"joined_in_progress": j}}
                for a, b, j in committed]
    monkeypatch.setattr(pac_ros.data, "Dataset", lambda root: SimpleNamespace(episodes=episodes))
    kill = [{"kind": "recorder_kill", "sim_time": 13.50, "ready_sim_time": 15.52}]
    a = soak.account("unused", monitor, kill, ended_sim=30.0, period=0.1)
    assert not a["unaccounted"] and not a["stray_committed"]
    assert a["outcomes"]["lost in flight at a recorder kill"] == 2
    assert a["outcomes"]["  of which the tail was committed, joined_in_progress"] == 1
    assert a["outcomes"]["committed whole"] == 4
