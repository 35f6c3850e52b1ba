"""Shared by the fault suite (test_faults_*.py): crashes, full disks, sensor dropouts, malformed input,
adversarial model outputs, bad files, clock jumps and a soak. Seeded and deterministic; the ROS tests wait
on conditions (``wait_for``, ``sim_step``), never on wall-clock windows.

Covered elsewhere and only referenced here:
- the writer SIGKILLed at each commit step and at timed moments: test_data.py::test_crash_safety_sigkill;
  the whole launched graph SIGKILLed: test_nodes.py::test_sigkill_of_recording_process_loses_no_committed_episode
- a camera missing for one or two frames:
  test_policy_node.py::test_holds_within_a_period_when_the_camera_stops_and_recovers
- malformed messages through real ROS transport: test_nodes.py::test_recorder_rejects_malformed_input_and_keeps_running,
  test_policy_node.py::test_malformed_joint_state_holds_and_says_why
- corrupted checkpoint files (truncated, flipped bytes, bad meta.json, missing):
  test_policy.py::test_corrupted_checkpoint_is_a_clear_error; a checkpoint of another spec:
  test_policy.py::test_wrong_spec_is_a_clear_error and the policy node in
  test_policy_node.py::test_checkpoint_swap_at_run_time_and_bad_checkpoints
- a truncated or changed episode file: test_data.py::test_corrupted_episode_file; invalid spec fields:
  test_spec.py::test_invalid_specs_name_the_problem; unknown training config keys:
  test_learning.py::test_config_yaml_and_unknown_keys
"""
from __future__ import annotations

import time
from pathlib import Path

import fake_msgs
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pac_ros.data.recording import RecorderCore
from pac_ros.spec import default_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEC = default_spec()
DT = SPEC.control_period
HANG = 60.0  # s: only bounds a hang; no test outcome depends on it
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
# numbers a fuzzed message or model output may hold: plausible, NaN, inf, huge, tiny
values = st.one_of(st.floats(-3.0, 3.0), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-308, 0.0]))


def replay(events, spec=SPEC, **kw):
    """The episodes a RecorderCore hands over for ``events`` (nothing written)."""
    episodes = []
    core = RecorderCore(spec, episodes.append, features=True, max_steps=None, **kw)
    for event in events:
        fake_msgs.feed(core, event)
    return episodes, core


def rows(episode, spec=SPEC):
    """The rows commit_episode writes for a finished episode: its steps, then the final observation."""
    out = [dict(timestamp=s.timestamp, q=s.joint_positions, images=s.images, action=s.action, reward=s.reward,
                features=s.features, instruction=s.instruction) for s in episode.steps]
    if episode.final is not None:
        f = episode.final
        out.append(dict(timestamp=f["timestamp"], q=f["joint_positions"], images=f["images"],
                        action=spec.safe_command(f["joint_positions"], f["joint_positions"]), reward=0.0,
                        features=f["features"], instruction=out[-1]["instruction"]))
    return out


def assert_bit_exact(e, expected):
    """A loaded Episode holds exactly these rows (float32 where the format stores float32)."""
    f32 = np.float32
    assert len(e) == len(expected)
    np.testing.assert_array_equal(e.timestamp, [r["timestamp"] for r in expected])
    np.testing.assert_array_equal(e.joint_positions, np.array([r["q"] for r in expected], f32))
    np.testing.assert_array_equal(e.actions, np.array([r["action"] for r in expected], f32))
    np.testing.assert_array_equal(e.rewards, np.array([r["reward"] for r in expected], f32))
    np.testing.assert_array_equal(e.features, np.array([r["features"] for r in expected], f32))
    assert e.instructions == [r["instruction"] for r in expected]
    for cam in SPEC.camera_names:
        np.testing.assert_array_equal(e.images[cam], np.stack([r["images"][cam] for r in expected]))


# ---- the policy node against the fake robot, one sim period at a time --------------------------
def policy_graph(tmp_path, **params):
    """(policy node, FakeRobot, executor) with a micro checkpoint (test_policy_node.py)."""
    from test_policy_node import make_checkpoint, make_graph

    return make_graph(make_checkpoint(tmp_path / "ckpt"), **params)


def wait_for(ex, condition, what: str) -> None:
    """Spin ``ex`` until ``condition()`` holds; a failure after ``HANG`` s means it never would."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {HANG:g} s"
        ex.spin_once(timeout_sec=0.01)


def status_dict(msg) -> dict:
    return {kv.key: kv.value for kv in msg.values}


def sim_step(ex, robot, policy, cameras=True, joints=True, poses=True):
    """One control period of the fake robot, each stage waited on: the sensors it sends (``cameras``,
    ``joints``, ``poses``) reach the policy, the clock moves, the policy's timer runs once, and what it
    published arrives. Returns the tick's status, or None when it answered nothing (an observation it
    had already answered)."""
    robot.publish_sensors(cameras=cameras, joints=joints, poses=poses)
    sent = ((["joint_states"] if joints else []) + ([f"image:{c}" for c in SPEC.camera_names] if cameras else [])
            + (["block_poses"] if poses else []))
    sent = [name for name in sent if name in dict(policy._needed())]  # the inputs the model subscribes to
    wait_for(ex, lambda: all(abs(policy.latest.get(k, (-1.0,))[0] - robot.t) < 1e-6 for k in sent),
             "sensor messages at the policy")
    ticks, skipped, statuses, commands = policy.ticks, policy.skipped, len(robot.status), len(robot.commands)
    robot.publish_clock()
    wait_for(ex, lambda: policy.ticks > ticks, "tick of the policy")
    if policy.skipped > skipped:
        return None
    wait_for(ex, lambda: len(robot.status) > statuses, "status from the policy")
    if "joint_states" in policy.latest:  # a position is known: the tick commanded one
        wait_for(ex, lambda: len(robot.commands) > commands, "command from the policy")
    return status_dict(robot.status[-1])
