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

DRIVERS = {"expert": EXPERT}
GRAPHS = {"stacking": "stacking.yaml"}


def graph(name: str = "stacking", driver: str = "expert") -> tuple[list[NodeEntry], Path]:
    """(nodes, parameter file) of a graph; ``driver`` is who commands the robot."""
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; graphs: {sorted(GRAPHS)}")
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}; drivers: {sorted(DRIVERS)}")
    return [BRIDGE, DRIVERS[driver], RECORDER], share_file("config", GRAPHS[name])
