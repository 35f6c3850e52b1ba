import copy

import numpy as np
import pytest
import yaml

from pac_ros.spec import Spec, SpecError, default_spec, default_spec_path


@pytest.fixture()
def raw():
    return copy.deepcopy(yaml.safe_load(default_spec_path().read_text())["spec"])


def test_default_spec_loads():
    spec = default_spec()
    assert spec.action_dim == len(spec.arm_joints) + 1
    assert spec.joint_names[-1] == spec.gripper.name
    assert len(spec.instructions()) == len(spec.blocks) * (len(spec.blocks) - 1)
    assert Spec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(colour="red"), "unknown key(s) ['colour']"),
        (lambda d: d.pop("cameras"), "missing required key(s) ['cameras']"),
        (lambda d: d["arm_joints"][0].update(lower=3.0), "limits inverted"),
        (lambda d: d["arm_joints"][1].update(upper="high"), "expected a number"),
        (lambda d: d["arm_joints"][2].update(max_step=0.0), "max_step"),
        (lambda d: d["arm_joints"][0].update(speed=1), "arm_joints[0]: unknown key(s) ['speed']"),
        (lambda d: d["cameras"][0].update(width=64.5), "expected an integer"),
        (lambda d: d["cameras"][0].update(encoding="yuv422"),
         "encoding: must be 'rgb8', 'bgr8' or 'mono8', got 'yuv422'"),
        (lambda d: d.update(control_rate_hz=-5), "control_rate_hz"),
        (lambda d: d.update(control_rate_hz=7.0), "whole multiple"),
        (lambda d: d.update(max_episode_steps=True), "expected an integer"),
        (lambda d: d.update(blocks=["red"]), "at least two"),
        (lambda d: d.update(blocks=["red", "red"]), "duplicated ['red']"),
        (lambda d: d.update(instruction_template="stack {top}"), "{bottom}"),
        (lambda d: d["arm_joints"][1].update(name="shoulder_pan"), "duplicated ['shoulder_pan']"),
        (lambda d: d.update(terminate_on_success="yes"), "expected true/false"),
    ],
)
def test_invalid_specs_name_the_problem(raw, mutate, message):
    mutate(raw)
    with pytest.raises(SpecError) as err:
        Spec.from_dict(raw, source="robot.yaml")
    assert message in str(err.value)
    assert "robot.yaml" in str(err.value)


def test_load_names_file_on_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        Spec.load(bad)
    with pytest.raises(SpecError, match="cannot read spec file"):
        Spec.load(tmp_path / "missing.yaml")


def test_safe_command_is_finite_within_limits_and_step():
    spec = default_spec()
    rng = np.random.default_rng(0)
    for _ in range(200):
        current = rng.uniform(spec.lower, spec.upper)
        command = rng.normal(0, 10, spec.action_dim)
        command[rng.random(spec.action_dim) < 0.2] = np.nan
        command[rng.random(spec.action_dim) < 0.1] = np.inf
        safe = spec.safe_command(command, current)
        assert np.all(np.isfinite(safe))
        assert np.all(safe >= spec.lower) and np.all(safe <= spec.upper)
        assert np.all(np.abs(safe - current) <= spec.max_step + 1e-12)
    with pytest.raises(ValueError, match="7 values"):
        spec.safe_command(np.zeros(3), np.zeros(7))


def test_action_normalisation_round_trips():
    spec = default_spec()
    rng = np.random.default_rng(1)
    current = rng.uniform(spec.lower * 0.5, spec.upper * 0.5, size=(16, spec.action_dim))
    action = rng.uniform(-1, 1, size=(16, spec.action_dim)).astype(np.float32)
    command = spec.denormalize_action(action, current)
    np.testing.assert_allclose(spec.normalize_action(command, current), action, atol=1e-6)


def test_instruction_parsing_and_compatibility(raw):
    spec = default_spec()
    assert spec.parse_instruction("Put the red block on the blue block") == ("red", "blue")
    with pytest.raises(SpecError, match="not one of this task's instructions"):
        spec.parse_instruction("put the red block on the red block")
    raw["cameras"][0]["width"] = 96
    other = Spec.from_dict(raw)
    assert other.fingerprint() != spec.fingerprint()
    with pytest.raises(SpecError, match="cameras"):
        spec.check_compatible(other, what="checkpoint")
    spec.check_compatible(default_spec())
