"""StackingEnv: determinism, instructions, success/reward, command safety, images."""
import dataclasses

import numpy as np
import pytest

from pac_ros.sim.env import BLOCK_HALF, BLOCK_SIZE, MIN_SEPARATION, StackingEnv
from pac_ros.sim.expert import ScriptedExpert
from pac_ros.spec import CameraSpec, SpecError, default_spec

SPEC = default_spec()


@pytest.fixture(scope="module")
def render_env():
    e = StackingEnv(render=True)
    yield e
    e.close()


def hold(env):
    return env.joint_positions()


def fixed_commands(env, n=6):
    q = env.joint_positions()
    out = []
    for k in range(n):
        c = q + 0.08 * np.sin(np.arange(7) + k)
        c[-1] = 0.04 if k < 3 else 0.0
        out.append(c)
    return out


def test_determinism_same_seed(render_env):
    runs = []
    for _ in range(2):
        obs = render_env.reset(11)
        traj = [obs]
        for c in fixed_commands(render_env):
            traj.append(render_env.step(c)[0])
        runs.append(traj)
    for a, b in zip(*runs):
        assert a["instruction"] == b["instruction"]
        np.testing.assert_array_equal(a["joint_positions"], b["joint_positions"])
        np.testing.assert_array_equal(a["features"], b["features"])
        for cam in SPEC.camera_names:
            np.testing.assert_array_equal(a["images"][cam], b["images"][cam])
    # a fresh env agrees too
    other = StackingEnv(render=False)
    obs = other.reset(11)
    np.testing.assert_array_equal(obs["features"], runs[0][0]["features"])
    other.close()


def test_seeds_differ(env):
    f0 = env.reset(0)["features"]
    f1 = env.reset(1)["features"]
    assert not np.allclose(f0, f1)


def test_reset_layout_and_instructions(env):
    seen = set()
    for seed in range(30):
        obs = env.reset(seed)
        assert obs["instruction"] in SPEC.instructions()
        assert SPEC.parse_instruction(obs["instruction"]) == env.target_pair
        seen.add(obs["instruction"])
        pos = [env.block_pose(b)[0] for b in SPEC.blocks]
        for i, p in enumerate(pos):
            assert abs(p[2] - BLOCK_HALF) < 2e-3  # on the table
            for q in pos[i + 1 :]:
                assert np.linalg.norm(p[:2] - q[:2]) >= MIN_SEPARATION - 1e-3
        assert not env.is_success()
    assert len(seen) >= 4


def test_reset_honours_instruction(env):
    text = SPEC.instruction("green", "red")
    obs = env.reset(5, instruction=text)
    assert obs["instruction"] == text
    assert env.target_pair == ("green", "red")
    # the layout does not depend on the instruction
    f_free = env.reset(5)["features"]
    np.testing.assert_array_equal(obs["features"], f_free)


def test_reset_rejects_unknown_instruction(env):
    with pytest.raises(SpecError, match="not one of this task's instructions"):
        env.reset(0, instruction="put the purple block on the red block")
    with pytest.raises(SpecError):
        env.reset(0, instruction=SPEC.instruction("red", "red"))


def test_reward_mode_validated():
    with pytest.raises(ValueError, match="sparse"):
        StackingEnv(render=False, reward="dense")


def _stack(env, top, bottom, xy=(0.45, 0.1), offset=(0.0, 0.0)):
    env.set_block_pose(bottom, [xy[0], xy[1], BLOCK_HALF])
    env.set_block_pose(top, [xy[0] + offset[0], xy[1] + offset[1], BLOCK_HALF + BLOCK_SIZE + 1e-3])


def _settle(env, n=3):
    for _ in range(n):
        out = env.step(hold(env))
    return out


def test_success_when_stacked(env):
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    _stack(env, "red", "blue")
    obs, reward, terminated, truncated, info = _settle(env)
    assert info["success"] and env.is_success()
    assert reward == 1.0 and terminated and not truncated


def test_no_success_beside_or_offset(env):
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    env.set_block_pose("blue", [0.45, 0.1, BLOCK_HALF])
    env.set_block_pose("red", [0.45, 0.1 + BLOCK_SIZE + 0.01, BLOCK_HALF])
    _, reward, terminated, _, info = _settle(env)
    assert not info["success"] and reward == 0.0 and not terminated
    # overhanging by more than half a block width: it tips or is off-centre
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    _stack(env, "red", "blue", offset=(0.0, 0.75 * BLOCK_SIZE))
    _, reward, _, _, info = _settle(env, 5)
    assert not info["success"] and reward == 0.0


def test_no_success_wrong_pair(env):
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    _stack(env, "green", "blue")
    _, reward, terminated, _, info = _settle(env)
    assert env.is_stacked("green", "blue")
    assert not info["success"] and reward == 0.0 and not terminated
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    _stack(env, "blue", "red")  # reversed order
    _, reward, _, _, info = _settle(env)
    assert not info["success"] and reward == 0.0


def _move_grip_to(env, expert, goal, yaw, opening):
    q = env.joint_positions()[:-1]
    for _ in range(30):
        q = expert._ik(np.asarray(goal), yaw, q)
        env.set_joint_positions(np.concatenate([q, [opening]]))
    assert np.linalg.norm(env.grip_position() - goal) < 2e-3


def test_no_success_while_touching_finger(env):
    env.reset(0, instruction=SPEC.instruction("red", "blue"))
    expert = ScriptedExpert(env)
    env.set_block_pose("blue", [0.45, 0.1, BLOCK_HALF])
    env.set_block_pose("red", [0.45, 0.1, BLOCK_HALF + BLOCK_SIZE])
    goal = np.array([0.45, 0.1, BLOCK_HALF + BLOCK_SIZE + 0.01])
    _move_grip_to(env, expert, goal, 0.0, BLOCK_HALF - 1e-3)  # pads squeeze the block
    assert env.gripper_touching("red") and env.is_grasped("red")
    assert not env.is_success()
    env.set_joint_positions(np.concatenate([env.joint_positions()[:-1], [0.04]]))  # released
    assert not env.gripper_touching("red")
    assert env.is_success()


def test_no_success_while_held_in_air(env):
    """Roll the expert: no success while the gripper holds the block, success after release."""
    env.reset(3)
    expert = ScriptedExpert(env)
    top, bottom = env.target_pair
    held_over_bottom = touched = False
    for _ in range(SPEC.max_episode_steps):
        _, reward, terminated, truncated, info = env.step(expert.act())
        if env.gripper_touching(top):
            touched = True
            assert not info["success"] and reward == 0.0
            p_top, p_bot = env.block_pose(top)[0], env.block_pose(bottom)[0]
            if np.linalg.norm(p_top[:2] - p_bot[:2]) < BLOCK_HALF and p_top[2] > p_bot[2] + BLOCK_SIZE:
                held_over_bottom = True
        if terminated or truncated:
            break
    assert touched and held_over_bottom
    assert info["success"] and not env.gripper_touching(top)


def test_shaped_reward_range():
    e = StackingEnv(render=False, reward="shaped")
    e.reset(2)
    expert = ScriptedExpert(e)
    rewards = []
    for _ in range(SPEC.max_episode_steps):
        _, r, terminated, truncated, info = e.step(expert.act())
        rewards.append(r)
        if not info["success"]:
            assert 0.0 <= r < 1.0
        if terminated or truncated:
            break
    assert info["success"] and rewards[-1] >= 1.0
    assert max(rewards[:-1]) > min(rewards[:-1])  # dense progress signal
    e.close()


def test_command_clamping_nan_and_limits(env):
    env.reset(4)
    q0 = env.joint_positions()
    obs, *_ = env.step(np.full(SPEC.action_dim, np.nan))
    assert np.all(np.isfinite(obs["joint_positions"]))
    assert np.allclose(obs["joint_positions"], q0, atol=0.02)
    prev = obs["joint_positions"]
    for sign in (1.0, -1.0):
        for _ in range(40):
            obs, _, _, _, info = env.step(np.full(SPEC.action_dim, sign * 1e6))
            q = obs["joint_positions"]
            assert np.all(q >= SPEC.lower - 0.02) and np.all(q <= SPEC.upper + 0.02)
            assert np.all(np.abs(q - prev) <= 1.5 * SPEC.max_step)  # servo lag can overshoot a little
            step = np.abs(info["command"] - np.clip(prev, SPEC.lower, SPEC.upper))
            assert np.all(step <= SPEC.max_step + 1e-9)
            prev = q
    env.step(np.array([np.inf, -np.inf, 0, 0, 0, 0, 0.02]))
    assert np.all(np.isfinite(env.joint_positions()))
    with pytest.raises(ValueError, match="7 values"):
        env.step(np.zeros(3))


def test_observation_contents(render_env):
    obs = render_env.reset(0)
    assert set(obs["images"]) == set(SPEC.camera_names)
    for cam in SPEC.cameras:
        img = obs["images"][cam.name]
        assert img.shape == cam.shape and img.dtype == np.uint8
        assert img.std() > 5  # not blank
    assert obs["joint_positions"].shape == (SPEC.action_dim,) and obs["joint_positions"].dtype == np.float64
    assert obs["features"].shape == (SPEC.feature_dim,) and obs["features"].dtype == np.float64
    quats = obs["features"].reshape(len(SPEC.blocks), 7)[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-6)
    assert isinstance(obs["instruction"], str)


def test_no_images_without_render(env):
    obs = env.reset(0)
    assert obs["images"] == {}
    assert env.render_camera("front").shape == (64, 64, 3)  # on demand still works


def test_other_camera_sizes_and_encodings():
    cams = (CameraSpec("front", 48, 32, "mono8"), CameraSpec("wrist", 40, 24, "bgr8"))
    spec = dataclasses.replace(SPEC, cameras=cams)
    e = StackingEnv(spec=spec)
    obs = e.reset(1)
    assert obs["images"]["front"].shape == (32, 48, 1)
    assert obs["images"]["wrist"].shape == (24, 40, 3)
    assert all(img.dtype == np.uint8 for img in obs["images"].values())
    e.close()
    bad = dataclasses.replace(SPEC, cameras=(CameraSpec("ceiling", 64, 64),))
    with pytest.raises(ValueError, match="ceiling"):
        StackingEnv(spec=bad)


def test_truncation():
    spec = dataclasses.replace(SPEC, max_episode_steps=3)
    e = StackingEnv(spec=spec, render=False)
    e.reset(0)
    flags = [e.step(e.joint_positions())[3] for _ in range(3)]
    assert flags == [False, False, True]
    assert e.step_count == 3
