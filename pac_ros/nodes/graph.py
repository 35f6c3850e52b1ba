"""The node graphs that launch/*.launch.py and `pac-ros launch` both start.

One table, so the ROS launch files and the in-process launcher cannot drift: each graph
names its parameter file, the nodes it always starts, who may drive the robot, and the
default of ``use_sim_time``. Each node entry names the executable (`ros2 run pac_ros
<executable>`), the node name (its key in the parameter file) and the class the in-process
launcher instantiates. ``node_parameters`` turns the launch arguments (driver, use_sim_time,
checkpoint) into per-node parameters that override the file.
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
    clock_source: bool = False  # publishes /clock, so it never runs on sim time itself

    def node_class(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


BRIDGE = NodeEntry("mujoco_bridge", "mujoco_bridge", "pac_ros.nodes.mujoco_bridge:MujocoBridge", clock_source=True)
EXPERT = NodeEntry("expert", "expert", "pac_ros.nodes.expert:ExpertNode")
RECORDER = NodeEntry("recorder", "recorder", "pac_ros.nodes.recorder:Recorder")
POLICY = NodeEntry("policy", "policy", "pac_ros.nodes.policy:PolicyNode")


@dataclass(frozen=True)
class Driver:
    """Who commands the robot (None: something outside the graph, e.g. teleop), and the recorder
    parameters that follow from it."""

    node: NodeEntry | None
    recorder: dict


@dataclass(frozen=True)
class Graph:
    params: str  # file name in config/
    robot: tuple[NodeEntry, ...]  # started before the driver: the robot's side (sim bridge), if any
    drivers: dict[str, Driver]
    use_sim_time: bool  # the launch argument's default


POLICY_DRIVER = Driver(POLICY, {"command_state_topic": "policy/command", "source": "policy"})
GRAPHS = {
    "stacking": Graph("stacking.yaml", (BRIDGE,), {
        "policy": POLICY_DRIVER,
        "expert": Driver(EXPERT, {"command_state_topic": "expert/command", "source": "expert"}),
    }, use_sim_time=True),  # MuJoCo bridge + driver + recorder
    "robot": Graph("robot_nodes.yaml", (), {
        "policy": POLICY_DRIVER,
        "teleop": Driver(None, {"command_state_topic": "teleop/command", "source": "teleop"}),
    }, use_sim_time=False),  # next to a real robot's drivers: driver + recorder
}
def _graph(name: str) -> Graph:
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; graphs: {sorted(GRAPHS)}")
    return GRAPHS[name]


def _driver(name: str, driver: str) -> Driver:
    drivers = _graph(name).drivers
    if driver not in drivers:
        raise ValueError(f"unknown driver {driver!r} for graph {name!r}; drivers: {sorted(drivers)}")
    return drivers[driver]


def params_file(name: str) -> Path:
    """The graph's parameter file (config/<file> of the source tree or install)."""
    return share_file("config", _graph(name).params)


def graph(name: str = "stacking", driver: str = "policy") -> tuple[list[NodeEntry], Path, dict[str, dict]]:
    """(nodes, parameter file, per-node parameters set by the driver choice) of a graph."""
    chosen = _driver(name, driver)
    nodes = [*_graph(name).robot, *([chosen.node] if chosen.node else []), RECORDER]
    return nodes, params_file(name), {RECORDER.name: dict(chosen.recorder)}


def parse_bool(value: str | bool, what: str = "use_sim_time") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return text == "true"


def node_parameters(name: str, driver: str, use_sim_time: bool | str | None = None,
                    checkpoint: str = "") -> tuple[list[NodeEntry], Path, dict[str, dict]]:
    """``graph`` plus the launch arguments as per-node parameters (they override the file):
    ``use_sim_time`` on every node but the clock source (None: the graph's default), and a
    non-empty ``checkpoint`` on the policy."""
    nodes, params, per_node = graph(name, driver)
    sim_time = _graph(name).use_sim_time if use_sim_time in (None, "") else parse_bool(use_sim_time)
    for entry in nodes:
        extra = per_node.setdefault(entry.name, {})
        if not entry.clock_source:
            extra["use_sim_time"] = sim_time
        if entry is POLICY and checkpoint:
            extra["checkpoint"] = str(checkpoint)
    return nodes, params, per_node


def configured(name: str, node: str, param: str):
    """A node parameter's value in the graph's parameter file (config/<graph>.yaml)."""
    import yaml

    path = params_file(name)
    try:
        return yaml.safe_load(path.read_text())[node]["ros__parameters"][param]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no {node}.{param}") from exc
