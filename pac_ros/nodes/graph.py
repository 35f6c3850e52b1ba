"""The node graphs that launch/*.launch.py and `pac-ros launch` both start.

One list per graph, so the ROS launch file and the in-process launcher cannot drift:
each entry names the executable (`ros2 run pac_ros <executable>`), the node name
(its key in the parameter file) and the class the in-process launcher instantiates.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from pac_ros.paths import share_file


@dataclass(frozen=True)
class NodeEntry:
    executable: str
    name: str
    target: str  # "module:Class"

    def node_class(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


BRIDGE = NodeEntry("mujoco_bridge", "mujoco_bridge", "pac_ros.nodes.mujoco_bridge:MujocoBridge")
EXPERT = NodeEntry("expert", "expert", "pac_ros.nodes.expert:ExpertNode")
RECORDER = NodeEntry("recorder", "recorder", "pac_ros.nodes.recorder:Recorder")

POLICY = NodeEntry("policy", "policy", "pac_ros.nodes.policy:PolicyNode")


@dataclass(frozen=True)
class Driver:
    """Who commands the robot, and the recorder parameters that follow from it."""

    node: NodeEntry
    recorder: dict


DRIVERS = {
    "expert": Driver(EXPERT, {"command_state_topic": "/expert/command", "source": "expert"}),
    "policy": Driver(POLICY, {"command_state_topic": "/policy/command", "source": "policy"}),
}
GRAPHS = {"stacking": "stacking.yaml"}


def graph(name: str = "stacking", driver: str = "expert") -> tuple[list[NodeEntry], Path, dict[str, dict]]:
    """(nodes, parameter file, per-node parameters set by the driver choice) of a graph."""
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; graphs: {sorted(GRAPHS)}")
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; drivers: {sorted(DRIVERS)}")
    chosen = DRIVERS[driver]
    return [BRIDGE, chosen.node, RECORDER], share_file("config", GRAPHS[name]), {RECORDER.name: chosen.recorder}


def configured(name: str, node: str, param: str):
    """A node parameter's value in the graph's parameter file (config/<graph>.yaml)."""
    import yaml

    params_file = share_file("config", GRAPHS[name])
    try:
        return yaml.safe_load(params_file.read_text())[node]["ros__parameters"][param]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{params_file}: no {node}.{param}") from exc
