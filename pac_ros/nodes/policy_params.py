"""The policy node's parameters: each with its descriptor, and when a change applies.

``RUNTIME`` ones apply at the next tick (``checkpoint``: a background reload when configured);
``autostart``, ``status_topic`` and ``spec_file`` are read-only; every other is read at configure,
so a change is accepted only while the node is unconfigured (docs/nodes.md).
"""
from __future__ import annotations

from rclpy.parameter import Parameter

from pac_ros.nodes import common
from pac_ros.nodes.common import describe
from pac_ros.nodes.outputs import INTERFACES

HOLD_MODES = ("last_command", "current_position")
CHOICES = {"hold": HOLD_MODES, "command_interface": tuple(INTERFACES), "image_transport": common.IMAGE_TRANSPORTS}
STALENESS = ("staleness.image", "staleness.joint_states", "staleness.block_poses")
RUNTIME = ("checkpoint", "hold", "accept_latched_instruction") + STALENESS  # the others apply at configure


def check_choice(name: str, value) -> None:
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"parameter {name} must be one of {CHOICES[name]}, got {value!r}")


def declare_parameters(node) -> list[str]:
    """Declare every parameter with its descriptor; returns those read at configure."""
    period = node.spec.control_period
    before = set(node.list_parameters([], 0).names)
    p = node.declare_parameter
    p("autostart", False, describe("configure and activate at start-up (the sim graph); else wait for "
                                   "`ros2 lifecycle set`", read_only=True))
    p("status_topic", common.STATUS, describe("DiagnosticStatus topic the recorder reads", read_only=True))
    def stale(kind: str):
        return describe(f"s: a {kind} input stamped older (or further ahead of the clock) makes the node hold",
                        float_range=(0.001, 60.0))

    p("staleness.image", 2.5 * period, stale("camera"))
    p("staleness.joint_states", 2.5 * period, stale("joint state"))
    p("staleness.block_poses", 2.5 * period, stale("block poses"))
    p("checkpoint", "", describe("a checkpoint or training run directory; a change while configured "
                                 "loads it in the background and swaps it in"))
    p("hold", "last_command", describe("hold target: the last command (a gripper keeps its grip) or the "
                                       "measured position", constraints=f"one of {HOLD_MODES}"))
    p("accept_latched_instruction", False, describe("act on an instruction published before activation "
                                                    "(transient local), e.g. the sim's episode instruction"))
    p("device", "auto", describe("auto (cuda if present, else cpu) | cpu | cuda[:N]"))
    p("threads", 1, describe("torch CPU threads (0: one per core; slower when other processes are busy)",
                             int_range=(0, 1024)))
    p("decoding", "auto", describe("auto (the checkpoint's own) | greedy | mean | sample | q_filter"))
    p("precision", "fp32", describe("fp32 | bf16 (autocast)"))
    p("temperature", 1.0, describe("sample and q_filter decoding: softmax temperature of the action bins",
                                   float_range=(1e-3, 100.0)))
    p("n_candidates", 16, describe("q_filter decoding: greedy + n-1 samples scored by the critic",
                                   int_range=(1, 1024)))
    p("cuda_graph", True, describe("on CUDA with greedy/mean decoding: replay one captured graph per tick"))
    p("command_interface", "forward", describe(
        "forward: Float64MultiArray (forward_command_controller); trajectory: JointTrajectory "
        "(joint_trajectory_controller)", constraints=f"one of {tuple(INTERFACES)}"))
    p("command_topic", "", describe(f"'' = {common.COMMANDS} (forward) or {common.TRAJECTORY} (trajectory)"))
    p("gripper_command_topic", "", describe("'' = the gripper is in the arm command; else its target goes "
                                            "alone here (Float64MultiArray)"))
    p("controller_joints", Parameter.Type.STRING_ARRAY, describe(
        "the arm controller's joints (robot names) in its order; unset = the spec's order"))
    p("joint_name_map", Parameter.Type.STRING_ARRAY, describe(
        "'robot_name:spec_name' per renamed joint: /joint_states in, commands out use robot names"))
    p("joint_states_topic", common.JOINT_STATES, describe("sensor_msgs/JointState of the robot"))
    p("instruction_topic", common.INSTRUCTION, describe("std_msgs/String, transient local"))
    p("block_poses_topic", common.BLOCK_POSES, describe("geometry_msgs/PoseArray (features models)"))
    common.camera_topics(node, node.spec)
    common.image_transport(node)
    declared = set(node.list_parameters([], 0).names) - before
    return sorted(declared - set(RUNTIME) - {"autostart", "status_topic"})
