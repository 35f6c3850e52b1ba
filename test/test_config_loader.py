"""The typed config loader: dataclasses from mappings, errors naming where, the field and the problem."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from pac_ros.config_loader import check, check_choices, choices, load, one_of


class LoadError(ValueError):
    pass


@dataclass(frozen=True)
class Joint:
    name: str
    lower: float
    upper: float = 1.0

    def __post_init__(self):
        if not self.lower < self.upper:
            raise ValueError(f"lower {self.lower} must be < upper {self.upper}")


@dataclass
class Robot:
    joints: tuple[Joint, ...]
    mode: Literal["fast", "safe", "off"] = "safe"
    rate: float | None = None
    steps: int = 10
    verbose: bool = False
    extra: dict = field(default_factory=dict)
    gripper: Joint = field(default_factory=lambda: Joint("g", 0.0))

    def __post_init__(self):
        check_choices(self)


def test_builds_nested_typed_values():
    robot = load(Robot, {"joints": [{"name": "a", "lower": -1}], "rate": 5, "gripper": {"name": "g", "lower": 0}},
                 "robot.yaml", LoadError)
    assert robot.joints == (Joint("a", -1.0),) and isinstance(robot.joints[0].lower, float)
    assert robot.rate == 5.0 and isinstance(robot.rate, float) and robot.mode == "safe"
    assert load(Robot, {"joints": [], "gripper": None}, "r").gripper == Joint("g", 0.0)  # empty section: defaults
    assert choices(Robot, "mode") == ("fast", "safe", "off") and one_of(("a", "b", "c")) == "'a', 'b' or 'c'"


@pytest.mark.parametrize("data, message", [
    ({"joints": [], "colour": 1}, "robot.yaml: unknown key(s) ['colour']; allowed: ['extra', 'gripper', 'joints'"),
    ({}, "robot.yaml: missing required key(s) ['joints']"),
    ([1], "robot.yaml: expected a mapping, got list"),
    ({"joints": {"name": "a"}}, "robot.yaml: joints: expected a list, got dict"),
    ({"joints": [{"name": "a", "lower": "low"}]}, "robot.yaml: joints[0].lower: expected a number, got str 'low'"),
    ({"joints": [{"name": "a", "lower": 0, "speed": 1}]}, "robot.yaml: joints[0]: unknown key(s) ['speed']"),
    ({"joints": [{"name": "a", "lower": 2}]}, "robot.yaml: joints[0]: lower 2.0 must be < upper 1.0"),
    ({"joints": [], "mode": "turbo"}, "robot.yaml: mode: must be 'fast', 'safe' or 'off', got 'turbo'"),
    ({"joints": [], "rate": "x"}, "robot.yaml: rate: expected a number or null, got str 'x'"),
    ({"joints": [], "rate": float("nan")}, "robot.yaml: rate: must be finite, got nan"),
    ({"joints": [], "steps": True}, "robot.yaml: steps: expected an integer, got bool True"),
    ({"joints": [], "steps": 2.5}, "robot.yaml: steps: expected an integer, got float 2.5"),
    ({"joints": [], "verbose": "yes"}, "robot.yaml: verbose: expected true/false, got str 'yes'"),
    ({"joints": [], "extra": [1]}, "robot.yaml: extra: expected a mapping, got list [1]"),
])
def test_errors_name_where_the_field_and_the_problem(data, message):
    with pytest.raises(LoadError) as err:
        load(Robot, data, "robot.yaml", LoadError)
    assert message in str(err.value), str(err.value)


def test_partial_check_and_direct_construction():
    check(Robot, {"steps": 3}, "overrides")  # required keys may be absent from overrides
    with pytest.raises(ValueError, match="overrides: steps: expected an integer"):
        check(Robot, {"steps": "3"}, "overrides")
    with pytest.raises(ValueError, match="mode: must be 'fast', 'safe' or 'off', got 'turbo'"):
        Robot(joints=(), mode="turbo")
