"""Sim time jumps back (a reset) and pauses: the recorder splits the episode at the jump and rides out the
pause; the policy node keeps ticking and never acts on the old timeline."""
from __future__ import annotations

import time

import fake_msgs
import numpy as np
import pytest
from fault_helpers import DT, SPEC, policy_graph, replay, sim_step, status_dict, wait_for

from pac_ros.data.messages import stamp_seconds


def _shifted(event, dt):
    kind, *args = event
    if kind in ("joints", "image", "poses", "command"):
        msg = args[-1]
        t = stamp_seconds(msg.header.stamp) + dt
        copy = fake_msgs.NS(**vars(msg))
        copy.header = fake_msgs.header(round(t, 9))
        return (kind, *args[:-1], copy)
    return event


def test_recorder_core_splits_at_a_clock_jump_and_rides_out_a_pause():
    """Sim time restarts 50 s earlier in the middle of an episode: the episode is closed at the
    jump and a new one starts, neither mixing the two timelines. A pause (the last messages
    repeated with their stamps, then silence) changes nothing but the late-message count."""
    events = fake_msgs.robot_stream(SPEC, 4, episodes=3, t0=100.0, long=1)
    plain, _ = replay(events)
    starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
    cut = [i for i in range(starts[1], starts[2]) if events[i][0] == "joints"][8]  # the 9th observation
    jumped = events[:cut] + [_shifted(e, -50.0) for e in events[cut:]]
    logs = []
    episodes, core = replay(jumped, log=lambda level, text: logs.append(text))
    assert [e.reason for e in episodes] == [plain[0].reason, "clock jumped backwards", plain[1].reason, plain[2].reason]
    assert any("time jumped back" in text for text in logs)
    t_cut = stamp_seconds(events[cut][1].header.stamp)
    for e in episodes:
        stamps = [s.timestamp for s in e.steps] + ([e.final["timestamp"]] if e.final else [])
        assert np.all(np.diff(stamps) > 0)
        assert all(t < t_cut for t in stamps) or all(t >= t_cut - 50.0 for t in stamps)  # one timeline each
    before, after = episodes[1], episodes[2]
    assert before.final is not None and before.final["timestamp"] < t_cut <= after.steps[0].timestamp + 50.0
    # every step of the plain episode is kept, on one side of the jump or the other; the last
    # observation before the jump ends the first part (its row holds, as an episode's last row does)
    kept = [(s.timestamp, s.action.tobytes()) for s in before.steps] + [(before.final["timestamp"], None)] + \
        [(round(s.timestamp + 50.0, 9), s.action.tobytes()) for s in after.steps]
    whole = [(s.timestamp, s.action.tobytes()) for s in plain[1].steps]
    assert [k[0] for k in kept] == [w[0] for w in whole]
    assert all(k[1] in (None, w[1]) for k, w in zip(kept, whole))

    # a pause: the sim republishes its last messages (same stamps), then goes quiet, then resumes
    paused = events[:cut] + [e for e in events[cut - 12:cut] if e[0] != "instruction"] * 3 + events[cut:]
    episodes, core = replay(paused)
    assert [len(e.steps) for e in episodes] == [len(e.steps) for e in plain]
    assert sum(e.stats.late_messages for e in episodes) > 0
    for e, p in zip(episodes, plain):
        assert [s.timestamp for s in e.steps] == [s.timestamp for s in p.steps]


def test_policy_node_keeps_ticking_after_sim_time_jumps_back_and_pauses(ros, tmp_path):
    """The fake robot's sim time pauses (nothing published for 0.5 s wall), then restarts at 0
    (a reset), then runs on. The node keeps ticking, acts on the new timeline's observations,
    and never on the old ones, even while only the clock comes back. Every stage is waited on
    (sim_step, wait_for), so a busy machine changes nothing."""
    from pac_ros.nodes import common

    policy, robot, ex = policy_graph(tmp_path)
    try:
        for _ in range(10):
            assert sim_step(ex, robot, policy)["mode"] == "ok"
        # paused: no clock, no sensors; callbacks already due (a busy machine runs them late) run first
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            ex.spin_once(timeout_sec=0.02)
        end = time.monotonic() + 0.5
        ticks = policy.ticks
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.02)
        assert policy.ticks == ticks  # no tick without time passing
        assert sim_step(ex, robot, policy)["mode"] == "ok"  # resumed
        old, n, ticks = robot.t, len(robot.status), policy.ticks
        robot.t = 0.0  # reset: sim time starts over; first only the clock comes back
        for _ in range(3):
            robot.t = round(robot.t + DT, 9)
            robot.publish_clock()
            wait_for(ex, lambda: abs(common.now_sec(policy) - robot.t) < 1e-6, "clock message at the policy")
        # rcl re-arms a timer when time jumps back: the first period after the reset may not tick
        wait_for(ex, lambda: policy.ticks >= ticks + 2, "ticks after the reset")
        wait_for(ex, lambda: len(robot.status) - n >= policy.ticks - ticks, "status of each tick")
        held = [status_dict(s) for s in robot.status[n:]]
        assert len(held) >= 2 and all(s["mode"] == "hold" and "ahead of the clock" in s["reason"] for s in held), held
        assert all(float(s["observation_stamp"]) <= old for s in held)
        for _ in range(3):  # sensors are back, on the new timeline
            status = sim_step(ex, robot, policy)
        assert status["mode"] == "ok" and float(status["observation_stamp"]) == pytest.approx(robot.t)
        stamps = [common.stamp_seconds(m.header.stamp) for m in robot.stamped]
        assert stamps[-1] == pytest.approx(robot.t) and stamps[-1] < old
    finally:
        policy.destroy_node()
        robot.node.destroy_node()
