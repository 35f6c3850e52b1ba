"""ScriptedExpert: success rates, command format, quality knobs."""
import numpy as np
import pytest

from pac_ros.sim.expert import ExpertConfig, ScriptedExpert, run_episode
from pac_ros.spec import default_spec

SPEC = default_spec()


def success_rate(env, config, seeds):
    expert = ScriptedExpert(env, config, seed=0)
    results = [run_episode(env, expert, s) for s in seeds]
    return np.mean([ok for ok, _ in results]), np.mean([n for _, n in results])


def test_perfect_expert_fast(env):
    rate, length = success_rate(env, ExpertConfig.preset("perfect"), range(5))
    assert rate == 1.0
    assert length < SPEC.max_episode_steps / 2


@pytest.mark.slow
def test_perfect_expert_100_episodes(env):
    rate, _ = success_rate(env, ExpertConfig.preset("perfect"), range(1000, 1100))
    assert rate >= 0.9


def test_every_instruction(env):
    expert = ScriptedExpert(env)
    for i, text in enumerate(SPEC.instructions()):
        ok, _ = run_episode(env, expert, 50 + i, instruction=text)
        assert ok, text


def test_commands_respect_spec(env):
    env.reset(7)
    expert = ScriptedExpert(env, ExpertConfig.preset("noisy"), seed=1)
    for _ in range(40):
        current = env.joint_positions()
        command = expert.act()
        assert command.shape == (SPEC.action_dim,) and np.all(np.isfinite(command))
        assert np.all(np.abs(command - current) <= SPEC.max_step + 1e-9)
        assert np.all(command >= SPEC.lower) and np.all(command <= SPEC.upper)
        np.testing.assert_allclose(SPEC.safe_command(command, current), command)
        env.step(command)


def test_expert_deterministic(env):
    def roll():
        env.reset(3)
        expert = ScriptedExpert(env, ExpertConfig.preset("poor"), seed=9)
        out = []
        for _ in range(25):
            c = expert.act()
            out.append(c)
            env.step(c)
        return np.array(out)

    np.testing.assert_array_equal(roll(), roll())


def test_wrong_block_knob(env):
    expert = ScriptedExpert(env, ExpertConfig(wrong_block_prob=1.0), seed=0)
    env.reset(2)
    expert.reset()
    assert expert.pair != env.target_pair
    ok, steps = run_episode(env, expert, 2)
    assert not ok and steps == SPEC.max_episode_steps
    # it did stack, just the wrong pair
    assert env.is_stacked(*expert.pair)


def test_swap_knob_stacks_the_instruction_backwards(env):
    expert = ScriptedExpert(env, ExpertConfig(swap_prob=1.0), seed=0)
    env.reset(2)
    expert.reset()
    assert expert.pair == env.target_pair[::-1] and expert.wrong
    ok, _ = run_episode(env, expert, 2)
    assert not ok and env.is_stacked(*expert.pair)


def test_presets_and_validation():
    assert ExpertConfig.preset("perfect") == ExpertConfig()
    noisy, poor = ExpertConfig.preset("noisy"), ExpertConfig.preset("poor")
    assert 0 < noisy.noise <= poor.noise and noisy.wrong_block_prob < poor.wrong_block_prob
    with pytest.raises(ValueError, match="unknown expert preset"):
        ExpertConfig.preset("great")
    with pytest.raises(ValueError, match="probability"):
        ExpertConfig(drop_prob=1.5)
    with pytest.raises(ValueError):
        ExpertConfig(noise=-0.1)


def test_collect_can_end_an_episode_once_the_attempt_is_over(env):
    from pac_ros.collect import run_expert_episode

    expert = ScriptedExpert(env, ExpertConfig(swap_prob=1.0), seed=0)
    ok, steps, _ = run_expert_episode(env, expert, 2, end_after_attempt=5)
    assert not ok and steps < 60 and expert.phase == "retreat"
    full_ok, full_steps, _ = run_expert_episode(env, expert, 2)  # no limit: waits until max_episode_steps
    assert not full_ok and full_steps == SPEC.max_episode_steps
