"""Control: the model's action and block-feature mapping, the same for training labels and deployment."""
import numpy as np
import pytest
import torch

from pac_ros.control import Control
from pac_ros.model import PACModel
from pac_ros.model.config import preset
from pac_ros.policy import Policy
from pac_ros.sim.expert import ScriptedExpert
from pac_ros.spec import default_spec

SPEC = default_spec()
TASK = preset("tiny", obs_mode="features", control="task", width=32, heads=2, n_latents=4, n_self_blocks=1)


def expert_steps(env, seed, n):
    """(joint positions, expert command, features, instruction) of n expert steps."""
    obs = env.reset(seed)
    expert = ScriptedExpert(env)
    rows = []
    for _ in range(n):
        q, command = obs["joint_positions"], expert.act()
        rows.append((q, command, obs["features"], obs["instruction"]))
        obs, *_ = env.step(command)
    return rows


def test_joint_control_is_the_spec_normalisation(env):
    control = Control(preset("tiny", obs_mode="features"), SPEC)
    q, command, features, text = zip(*expert_steps(env, 0, 5))
    q, command = np.array(q), np.array(command)
    np.testing.assert_array_equal(control.action_labels(q, command), SPEC.normalize_action(command, q))
    np.testing.assert_array_equal(control.features(q, np.array(features), text), np.array(features, np.float32))
    np.testing.assert_allclose(control.command(SPEC.normalize_action(command[0], q[0]), q[0]), command[0], atol=1e-6)


def test_task_labels_and_commands_agree(env):
    """An action labelled from a recorded command, turned back into a command by IK, moves the grip
    site where the recorded command would have."""
    control = Control(TASK, SPEC)
    fk = control.kinematics.fk
    rows = expert_steps(env, 3, 25)
    q = np.array([r[0] for r in rows])
    command = np.array([r[1] for r in rows])
    labels = control.action_labels(q, command)
    assert labels.shape == (len(rows), 5) and labels.dtype == np.float32
    assert np.all(np.abs(labels) <= 1.0)
    checked = 0
    for qt, ct, a in zip(q, command, labels):
        if np.any(np.abs(a[:4]) >= 1.0):  # clipped labels do not reproduce the command
            continue
        back = control.command(a, qt)
        (g_want, y_want), (g_got, y_got) = fk(ct), fk(back)
        assert np.linalg.norm(g_got - g_want) < 2e-3
        assert abs((y_got - y_want + np.pi) % (2 * np.pi) - np.pi) < 0.02
        assert back[-1] == pytest.approx(ct[-1], abs=1e-6)
        checked += 1
    assert checked >= 10
    assert np.all(np.isnan(control.command(np.full(5, np.nan), q[0])))  # NaN -> hold (safe_command)


def test_task_features_order_blocks_by_role(env):
    control = Control(TASK, SPEC)
    env.reset(1)
    q, poses = env.joint_positions(), env.features()
    text = SPEC.instruction("green", "red")
    out = control.features(q[None], poses[None], [text])[0].reshape(len(SPEC.blocks), 10)
    blocks = poses.reshape(-1, 7)
    order = [SPEC.blocks.index(b) for b in ("green", "red", "blue")]
    np.testing.assert_allclose(out[:, :7], blocks[order], atol=1e-6)
    grip = control.kinematics.fk(q)[0]
    np.testing.assert_allclose(out[:, 7:], blocks[order, :3] - grip, atol=1e-6)
    with pytest.raises(ValueError, match="instruction"):
        control.features(q[None], poses[None], ["stack everything"])


def test_task_policy_commands_are_safe():
    torch.manual_seed(0)
    model = PACModel(TASK, SPEC)
    policy = Policy(model, SPEC, device="cpu")
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(SPEC.lower, SPEC.upper)
        obs = {"joint_positions": q, "instruction": SPEC.instructions()[1],
               "features": rng.normal(size=SPEC.feature_dim)}
        cmd, info = policy.act(obs)
        assert np.isfinite(cmd).all() and (cmd >= SPEC.lower).all() and (cmd <= SPEC.upper).all()
        assert np.all(np.abs(cmd - q) <= SPEC.max_step + 1e-9)
        assert info["action"].shape == (5,)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    cmd, info = policy.act(obs)
    assert info["fallback"] and np.allclose(cmd, obs["joint_positions"])

