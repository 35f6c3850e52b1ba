"""The spec's joints under a robot's own names, in its controllers' order (ROS-free).

A checkpoint acts in spec space: the spec's joints, in spec order. A robot may call them
otherwise (``shoulder_pan_joint``) and its controller may take them in another order.
``joint_name_map`` entries ``"robot_name:spec_name"`` rename spec joints (the others keep
their spec names); ``controller_joints`` lists, in robot names, the joints of the arm
controller in its order; with ``separate_gripper`` the gripper is not among them (it has a
controller of its own). Every error names the parameter and the joints at fault.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pac_ros.errors import PacRosError


class JointMapError(PacRosError, ValueError):
    """A joint_name_map or controller_joints that does not fit the spec."""


class JointMap:
    def __init__(self, spec_names: Sequence[str], name_map: Sequence[str] = (),
                 controller_joints: Sequence[str] = (), separate_gripper: bool = False):
        self.spec_names = list(spec_names)
        renamed = self._parse(name_map)
        self.robot_names = [renamed.get(n, n) for n in self.spec_names]  # per spec joint, spec order
        clashes = sorted({n for n in self.robot_names if self.robot_names.count(n) > 1})
        if clashes:
            raise JointMapError(f"joint_name_map: robot joint(s) {clashes} would stand for more than one spec "
                                f"joint (robot names in spec order: {self.robot_names})")
        commanded = self.robot_names[:-1] if separate_gripper else self.robot_names  # the gripper is last
        self.gripper_name = self.robot_names[-1] if separate_gripper else None
        self.controller_joints = list(controller_joints) or list(commanded)
        self._check_controller(commanded)
        index = {name: i for i, name in enumerate(self.robot_names)}
        self.controller_index = np.array([index[n] for n in self.controller_joints], dtype=np.int64)

    def _parse(self, name_map: Sequence[str]) -> dict[str, str]:
        """'robot:spec' strings -> {spec name: robot name}."""
        renamed: dict[str, str] = {}
        robots: set[str] = set()
        for entry in name_map:
            robot, sep, spec = (part.strip() for part in str(entry).partition(":"))
            if not sep or not robot or not spec:
                raise JointMapError(f"joint_name_map entry {entry!r} must look like 'robot_name:spec_name'")
            if spec not in self.spec_names:
                raise JointMapError(f"joint_name_map entry {entry!r}: the spec has no joint {spec!r}; "
                                    f"spec joints: {self.spec_names}")
            if spec in renamed:
                raise JointMapError(f"joint_name_map names spec joint {spec!r} more than once")
            if robot in robots:
                raise JointMapError(f"joint_name_map names robot joint {robot!r} more than once")
            renamed[spec] = robot
            robots.add(robot)
        return renamed

    def _check_controller(self, commanded: list[str]) -> None:
        given = self.controller_joints
        unknown = [n for n in given if n not in self.robot_names]
        if unknown:
            raise JointMapError(f"controller_joints {unknown} are not joints of the spec (robot names "
                                f"{self.robot_names}; rename spec joints with joint_name_map)")
        twice = sorted({n for n in given if given.count(n) > 1})
        if twice:
            raise JointMapError(f"controller_joints lists {twice} more than once")
        if self.gripper_name in given:
            raise JointMapError(f"controller_joints includes the gripper {self.gripper_name!r}, which has its own "
                                "gripper_command_topic")
        if len(given) != len(commanded):
            missing = [n for n in commanded if n not in given]
            raise JointMapError(f"controller_joints has {len(given)} joints, the arm controller takes "
                                f"{len(commanded)}: missing {missing}")

    def arm_command(self, command: np.ndarray) -> np.ndarray:
        """A spec-order command -> the arm controller's values, in controller_joints order."""
        return np.asarray(command, dtype=np.float64)[self.controller_index]

    def gripper_command(self, command: np.ndarray) -> float | None:
        """The gripper's target when it has its own controller, else None."""
        return float(command[-1]) if self.gripper_name is not None else None
