"""launch/stacking.launch.py and `pac-ros launch` start the same graph with the same file."""
import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from pac_ros.nodes.graph import DRIVERS, graph
from pac_ros.nodes.launcher import parse_overrides

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "stacking.launch.py"


def test_launch_file_builds_its_nodes_from_the_shared_graph():
    tree = ast.parse(LAUNCH.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "graph"]
    assert calls and isinstance(calls[0].args[0], ast.Constant) and calls[0].args[0].value == "stacking"
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "pac_ros.nodes.graph"]
    assert imports, "the launch file must take its node list from pac_ros.nodes.graph"


def test_parameter_file_configures_every_node_of_the_graph():
    for driver in DRIVERS:
        entries, params, driven = graph("stacking", driver)
        data = yaml.safe_load(params.read_text())
        names = {e.name for e in entries}
        assert names <= set(data), f"nodes without parameters: {names - set(data)}"
        for entry in entries:
            assert "ros__parameters" in data[entry.name]
            entry.node_class()  # the in-process launcher can import every node


def test_real_launch_description_matches_where_launch_ros_exists():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros has no pip wheel; checked on a ROS 2 install")
    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("stacking_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        action.visit(context)
    opaque = description.entities[-1]
    nodes = opaque.execute(context)
    entries, params, driven = graph("stacking", "policy")
    assert [n.node_executable for n in nodes] == [e.executable for e in entries]


def test_override_parsing():
    assert parse_overrides(["recorder.dataset=a/b", "expert.quality=poor"]) == {
        "recorder": ["dataset:=a/b"], "expert": ["quality:=poor"]}
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_overrides(["dataset=a"])
