"""launch/*.launch.py and `pac-ros launch` start the same graphs, from the same files, with the
same arguments. `launch`/`launch_ros` are not installable from pip, so the launch files are
checked by their syntax tree and by running them against recording stand-ins of those modules."""
import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from pac_ros.cli import build_parser
from pac_ros.nodes.graph import GRAPHS, graph, node_parameters, parse_bool
from pac_ros.nodes.launcher import parse_overrides

ROOT = Path(__file__).resolve().parent.parent
ARGUMENTS = ["driver", "use_sim_time", "params_file", "checkpoint", "namespace"]


def launch_file(name: str) -> Path:
    return ROOT / "launch" / f"{name}.launch.py"


def declared_arguments(path: Path) -> dict[str, str]:
    """DeclareLaunchArgument(name, default_value=...) calls of a launch file, in order."""
    found = {}
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            default = next(k.value for k in call.keywords if k.arg == "default_value")
            found[call.args[0].value] = default.value
    return found


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_launch_files_declare_the_same_arguments_with_the_graphs_defaults(name):
    path = launch_file(name)
    assert path.exists(), f"graph {name!r} has no launch file"
    sim_time = "true" if GRAPHS[name].use_sim_time else "false"
    assert declared_arguments(path) == {"driver": "policy", "use_sim_time": sim_time, "params_file": "",
                                        "checkpoint": "", "namespace": ""}
    tree = ast.parse(path.read_text())
    graph_const = [n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "GRAPH"]
    assert graph_const == [name]
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "pac_ros.nodes.graph"]
    assert [a.name for n in imports for a in n.names] == ["node_parameters"], "node list must come from graph.py"
    # the CLI's `launch` takes every launch argument too
    options = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["launch"]._actions}
    assert set(ARGUMENTS) <= options


def test_graph_node_lists_and_parameters():
    nodes, params, per_node = node_parameters("stacking", "policy")
    assert [e.executable for e in nodes] == ["mujoco_bridge", "policy", "recorder"]
    assert params.name == "stacking.yaml"
    assert per_node == {"mujoco_bridge": {}, "policy": {"use_sim_time": True},
                        "recorder": {"use_sim_time": True, "command_state_topic": "policy/command", "source": "policy"}}
    nodes, _, per_node = node_parameters("stacking", "expert", "false", "runs/x")
    assert [e.executable for e in nodes] == ["mujoco_bridge", "expert", "recorder"]
    assert per_node["expert"] == {"use_sim_time": False} and "checkpoint" not in str(per_node)
    assert per_node["recorder"]["command_state_topic"] == "expert/command"

    nodes, params, per_node = node_parameters("robot", "policy", checkpoint="runs/arm/checkpoints/step_1000")
    assert [e.executable for e in nodes] == ["policy", "recorder"], "no bridge on a real robot"
    assert params.name == "robot_nodes.yaml"
    assert per_node["policy"] == {"use_sim_time": False, "checkpoint": "runs/arm/checkpoints/step_1000"}
    assert per_node["recorder"] == {"use_sim_time": False, "command_state_topic": "policy/command",
                                    "source": "policy"}
    nodes, _, per_node = node_parameters("robot", "teleop", True)
    assert [e.executable for e in nodes] == ["recorder"]
    assert per_node["recorder"] == {"use_sim_time": True, "command_state_topic": "teleop/command",
                                    "source": "teleop"}

    with pytest.raises(ValueError, match="unknown driver 'expert' for graph 'robot'"):
        graph("robot", "expert")
    with pytest.raises(ValueError, match="unknown graph 'moon'"):
        graph("moon")
    with pytest.raises(ValueError, match="use_sim_time must be true or false"):
        node_parameters("robot", "policy", "yes")
    assert parse_bool("True") is True and parse_bool(False) is False


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_parameter_file_configures_every_node_of_the_graph(name):
    for driver in GRAPHS[name].drivers:
        entries, params, _ = graph(name, driver)
        data = yaml.safe_load(params.read_text())
        assert {e.name for e in entries} <= set(data), f"{params}: nodes without parameters"
        for entry in entries:
            node_params = data[entry.name]["ros__parameters"]
            assert "use_sim_time" not in node_params, "use_sim_time is the launch argument's"
            entry.node_class()  # the in-process launcher can import every node


class Recorded:
    """Stand-in for a launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def run_launch_file(path: Path, monkeypatch, **arguments) -> list[dict]:
    """Execute a launch file with recording stand-ins of launch/launch_ros; the Node kwargs it
    creates for ``arguments`` (declared defaults for the rest)."""
    fake = {name: types.ModuleType(name) for name in ("launch", "launch.actions", "launch.substitutions",
                                                      "launch_ros", "launch_ros.actions")}
    fake["launch"].LaunchDescription = lambda entities: entities
    fake["launch.actions"].DeclareLaunchArgument = Recorded
    fake["launch.actions"].OpaqueFunction = Recorded
    fake["launch.substitutions"].LaunchConfiguration = lambda name: types.SimpleNamespace(
        perform=lambda context: context[name])
    fake["launch_ros.actions"].Node = Recorded
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    *declared, opaque = module.generate_launch_description()
    context = {d.args[0]: d.kwargs["default_value"] for d in declared}
    context.update(arguments)
    return [node.kwargs for node in opaque.kwargs["function"](context)]


def test_stacking_launch_file_starts_the_graph(monkeypatch):
    nodes = run_launch_file(launch_file("stacking"), monkeypatch)
    entries, params, per_node = node_parameters("stacking", "policy")
    assert [n["executable"] for n in nodes] == [e.executable for e in entries]
    assert [n["name"] for n in nodes] == [e.name for e in entries]
    assert all(n["package"] == "pac_ros" and n["namespace"] == "" for n in nodes)
    assert [n["parameters"] for n in nodes] == [[str(params), per_node[e.name]] for e in entries]

    nodes = run_launch_file(launch_file("stacking"), monkeypatch, driver="expert", use_sim_time="false",
                            params_file="/tmp/mine.yaml", namespace="cell2")
    assert [n["executable"] for n in nodes] == ["mujoco_bridge", "expert", "recorder"]
    assert all(n["namespace"] == "cell2" and n["parameters"][0] == "/tmp/mine.yaml" for n in nodes)
    assert [n["parameters"][1].get("use_sim_time") for n in nodes] == [None, False, False]


def test_robot_launch_file_starts_policy_and_recorder_without_a_bridge(monkeypatch):
    nodes = run_launch_file(launch_file("robot"), monkeypatch, checkpoint="runs/arm", namespace="arm1")
    assert [n["executable"] for n in nodes] == ["policy", "recorder"]
    policy, recorder = (n["parameters"][1] for n in nodes)
    assert policy == {"use_sim_time": False, "checkpoint": "runs/arm"}
    assert recorder["command_state_topic"] == "policy/command" and recorder["use_sim_time"] is False
    assert nodes[0]["parameters"][0].endswith("config/robot_nodes.yaml")
    assert [n["executable"] for n in run_launch_file(launch_file("robot"), monkeypatch, driver="teleop")] == [
        "recorder"]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_real_launch_description_matches_where_launch_ros_exists(name):
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installable from pip; checked on a ROS 2 install")
    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location(f"{name}_launch", launch_file(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        action.visit(context)
    nodes = description.entities[-1].execute(context)
    entries, _, _ = graph(name, "policy")
    assert [n.node_executable for n in nodes] == [e.executable for e in entries]


def test_robot_graph_in_process_takes_the_launch_arguments(ros, tmp_path):
    from pac_ros.nodes.launcher import GraphRunner

    runner = GraphRunner("robot", "policy", [f"recorder.dataset={tmp_path / 'ds'}", "policy.device=cpu"],
                         checkpoint="models/pac_tiny_suboptimal", namespace="arm1")
    try:
        policy, recorder = runner.nodes["policy"], runner.nodes["recorder"]
        assert not policy.get_parameter("use_sim_time").value and not recorder.get_parameter("use_sim_time").value
        assert policy.get_namespace() == "/arm1"
        assert policy.lifecycle_state == "unconfigured"  # the robot graph waits for the operator to arm it
        policy.trigger_configure()
        assert policy.lifecycle_state == "inactive" and policy.model_id.startswith("pac_tiny_suboptimal@")
        published = {name for name, _ in policy.get_publisher_names_and_types_by_node("policy", "/arm1")}
        assert {"/arm1/arm_controller/commands", "/arm1/policy/command", "/arm1/pac/status"} <= published
        subscribed = {name for name, _ in recorder.get_subscriber_names_and_types_by_node("recorder", "/arm1")}
        assert {"/arm1/joint_states", "/arm1/policy/command", "/arm1/camera/front/image_raw"} <= subscribed
    finally:
        runner.close()
    with pytest.raises(ValueError, match="unknown driver"):
        GraphRunner("robot", "expert")


def test_override_parsing():
    assert parse_overrides(["recorder.dataset=a/b", "expert.quality=poor"]) == {
        "recorder": ["dataset:=a/b"], "expert": ["quality:=poor"]}
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_overrides(["dataset=a"])
