"""A sensor silent for a second: the recorder marks the gap in the episode, the policy node holds and
says which input is stale, then acts again when data return."""
from __future__ import annotations

import fake_msgs
import numpy as np
import pytest
from fault_helpers import DT, SPEC, assert_bit_exact, policy_graph, replay, rows, sim_step

from pac_ros.data import Dataset, DatasetWriter
from pac_ros.data.messages import stamp_seconds
from pac_ros.data.recording import commit_episode
from pac_ros.data.validate import validate


@pytest.mark.parametrize("silent", ["joints", "cameras", "joints_to_the_end"])
def test_recorder_marks_a_one_second_dropout_in_the_episode(tmp_path, silent):
    """Either input silent for 1 s mid-episode: the episode's metadata says which input and when,
    and its rows resume after the gap. Silent until the episode ends: a gap up to its last stamp."""
    to_the_end = silent.endswith("_to_the_end")
    silent = silent.split("_")[0]
    dropout = {"input": silent, "episode": 1, "at": 3, "seconds": 100.0 if to_the_end else 1.0}
    events = fake_msgs.robot_stream(SPEC, 2, episodes=3, dropout=dropout)
    episodes, _ = replay(events)
    with DatasetWriter(tmp_path / "ds", SPEC, features=True) as writer:
        for e in episodes:
            commit_episode(writer, e)
    ds = Dataset(tmp_path / "ds", SPEC)
    inputs = ["joint_states"] if silent == "joints" else [f"image:{c}" for c in SPEC.camera_names]
    for i, meta in enumerate(ds.episodes):
        gaps = meta["metadata"]["recording"]["gaps"]
        if i != 1:
            assert gaps == []
            continue
        assert sorted(g["input"] for g in gaps) == inputs
        e = ds.load_episode(i)
        if to_the_end:  # from the last joint state to the stamp of the episode's last message
            third = [j for j, ev in enumerate(events) if ev[0] == "instruction"][2]
            last = [ev[-1].header.stamp for ev in events[:third] if ev[0] == "image"][-1]
            assert [(g["from"], g["to"]) for g in gaps] == [(e.timestamp[-1], stamp_seconds(last))]
            continue
        for g in gaps:  # from the last message before the silence to the first after it
            assert g["to"] - g["from"] == pytest.approx(1.0 + DT)
        assert_bit_exact(e, rows(episodes[i]))  # rows resume after the gap, paired as before
        assert np.max(np.diff(e.timestamp)) == pytest.approx(1.0 + DT)
    assert validate(tmp_path / "ds").ok


def test_policy_node_holds_through_a_one_second_sensor_dropout(ros, tmp_path):
    """Joint states, then the cameras, stop for 1 s (10 periods): the node holds from the tick
    after its staleness limit (0.15 s here, so within one period of the missing input's second
    frame), says which input is stale, never acts on old data, and acts again as data return.
    Each period is waited on stage by stage (sim_step), so a busy machine changes nothing."""
    policy, robot, ex = policy_graph(tmp_path, **{"staleness.joint_states": 0.15, "staleness.image": 0.15})
    try:
        for silent, key, name in (("joints", "joints", "joint_states"), ("cameras", "cameras", "image:front")):
            for _ in range(3):
                assert sim_step(ex, robot, policy)["mode"] == "ok"
            acted = len(robot.commands)
            statuses = [sim_step(ex, robot, policy, **{key: False}) for _ in range(10)]
            first = 1 if silent == "joints" else 0  # the tick after the last joint state: already answered
            assert all(s is None for s in statuses[:first]) and len(robot.commands) >= acted
            if silent == "cameras":
                assert statuses[0]["mode"] == "ok"  # 0.1 s old: within the limit
                first = 1
            for s in statuses[first:]:
                assert s["mode"] == "hold" and f"{name}: stale" in s["reason"], s
            held = [np.array(m.data) for m in robot.commands[acted + (silent == "cameras"):]]
            assert len(held) == 9 and all(np.array_equal(h, held[0]) for h in held)  # one hold target
            assert np.all(np.isfinite(held[0])) and np.all(np.abs(held[0] - robot.q) <= SPEC.max_step + 1e-9)
            assert sim_step(ex, robot, policy)["mode"] == "ok"  # data are back: acting within one period
    finally:
        policy.destroy_node()
        robot.node.destroy_node()
