"""The spec's joints under a robot's names and in its controller's order (ROS-free)."""
import numpy as np
import pytest

from pac_ros.joint_map import JointMap, JointMapError
from pac_ros.spec import default_spec

SPEC = default_spec()
UR = [f"{n}_joint" for n in ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")]
UR_MAP = [f"{robot}:{spec}" for robot, spec in zip(UR, SPEC.joint_names)]


def test_default_is_the_spec_itself():
    joints = JointMap(SPEC.joint_names)
    assert joints.robot_names == joints.controller_joints == SPEC.joint_names
    command = np.arange(SPEC.action_dim, dtype=float)
    assert np.array_equal(joints.arm_command(command), command) and joints.gripper_command(command) is None


def test_renamed_reordered_and_a_separate_gripper():
    controller = [UR[i] for i in (3, 0, 5, 1, 4, 2)]
    joints = JointMap(SPEC.joint_names, UR_MAP + ["finger_joint:gripper"], controller, separate_gripper=True)
    assert joints.robot_names == UR + ["finger_joint"] and joints.gripper_name == "finger_joint"
    command = np.arange(SPEC.action_dim, dtype=float)
    assert joints.arm_command(command).tolist() == [3, 0, 5, 1, 4, 2] and joints.gripper_command(command) == 6
    # a partial map: the others keep their spec names
    assert JointMap(SPEC.joint_names, ["pan:shoulder_pan"]).robot_names == ["pan"] + SPEC.joint_names[1:]


@pytest.mark.parametrize("name_map, controller, gripper, match", [
    (["shoulder_pan_joint"], (), False, "must look like 'robot_name:spec_name'"),
    (["a:not_a_joint"], (), False, "the spec has no joint 'not_a_joint'"),
    (["a:elbow", "b:elbow"], (), False, "spec joint 'elbow' more than once"),
    (["a:elbow", "a:wrist_1"], (), False, "robot joint 'a' more than once"),
    (["wrist_1:elbow"], (), False, r"robot joint\(s\) \['wrist_1'\] would stand for more than one"),
    ([], SPEC.joint_names[:-1], False, r"has 6 joints, the arm controller takes 7: missing \['gripper'\]"),
    ([], SPEC.joint_names + ["conveyor"], False, r"\['conveyor'\] are not joints of the spec"),
    ([], SPEC.joint_names[:-2] + ["elbow", "gripper"], False, r"lists \['elbow'\] more than once"),
    ([], SPEC.joint_names, True, "includes the gripper 'gripper', which has its own gripper_command_topic"),
    (UR_MAP, SPEC.joint_names, False, "are not joints of the spec"),  # controller_joints take robot names
])
def test_bad_maps_name_the_problem(name_map, controller, gripper, match):
    with pytest.raises(JointMapError, match=match):
        JointMap(SPEC.joint_names, name_map, controller, separate_gripper=gripper)
