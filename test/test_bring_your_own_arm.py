"""docs/bring_your_own_arm.md's examples are valid: the spec loads, the controller lists the spec's
joints in order, every node parameter it sets is one the nodes declare, the training config loads."""
import ast
import re
from pathlib import Path

import yaml

from pac_ros.learning.config import TrainConfig
from pac_ros.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "bring_your_own_arm.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def yaml_block(first_line_comment: str) -> dict:
    found = [b for b in blocks("yaml") if b.startswith(f"# {first_line_comment}")]
    assert len(found) == 1, first_line_comment
    return yaml.safe_load(found[0])


def controller() -> dict:
    found = [yaml.safe_load(b) for b in blocks("yaml") if b.startswith("controller_manager:")]
    assert len(found) == 1
    return found[0]


def declared_parameters(*modules: str) -> set[str]:
    """Names passed to declare_parameter (or its alias p) in these source files; f-strings
    like f"camera_topics.{cam}" give their constant prefix followed by '*'."""
    names = set()
    for module in modules:
        for call in ast.walk(ast.parse((ROOT / module).read_text())):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            func = call.func
            if not (getattr(func, "id", None) == "p" or getattr(func, "attr", None) == "declare_parameter"):
                continue
            arg = call.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                names.add(arg.values[0].value + "*")
    return names | {"use_sim_time"}


def flatten(params: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in params.items():
        out += flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return out


def guide_spec(tmp_path) -> Spec:
    assert blocks("yaml")[0].startswith("# my_arm_spec.yaml")
    (tmp_path / "spec.yaml").write_text(blocks("yaml")[0])
    return Spec.load(tmp_path / "spec.yaml")


def test_guide_spec_controller_and_parameters_fit_together(tmp_path):
    spec = guide_spec(tmp_path)
    assert spec.action_dim == 7 and spec.camera_names == ["front", "wrist"]

    forward = controller()["pac_forward_controller"]["ros__parameters"]
    assert forward["joints"] == spec.joint_names, "the controller's joints must be in spec order"

    params = yaml_block("my_arm.yaml")
    nodes = {"policy": ("pac_ros/nodes/policy_params.py", "pac_ros/nodes/common.py"),
             "recorder": ("pac_ros/nodes/recorder.py", "pac_ros/nodes/common.py")}
    assert set(params) == set(nodes)
    for node, sources in nodes.items():
        declared = declared_parameters(*sources)
        for name in flatten(params[node]["ros__parameters"]):
            assert name in declared or any(d.endswith("*") and name.startswith(d[:-1]) for d in declared), (
                f"{node}: the guide sets {name!r}, which the node does not declare")
        cameras = params[node]["ros__parameters"]["camera_topics"]
        assert sorted(cameras) == sorted(spec.camera_names)
        assert params[node]["ros__parameters"]["spec_file"].endswith("my_arm_spec.yaml")
    assert params["policy"]["ros__parameters"]["command_topic"] == "/pac_forward_controller/commands"


def test_guide_training_config_and_scripted_controller(tmp_path):
    cfg = TrainConfig.from_dict(yaml_block("my_train.yaml"))
    assert cfg.model_config().obs_mode == "pixels" and cfg.learner.alpha(10**6) == 1.0
    script = blocks("python")
    assert len(script) == 1
    tree = ast.parse(script[0])  # it is valid Python
    joints = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id == "JOINTS")
    assert [e.value for e in joints.elts] == guide_spec(tmp_path).joint_names
    assert '"/teleop/command"' in script[0], "the robot graph's teleop driver records teleop/command"


def test_robot_graph_template_sets_only_declared_parameters():
    template = yaml.safe_load((ROOT / "config" / "robot_nodes.yaml").read_text())
    for node, module in (("policy", "policy_params"), ("recorder", "recorder")):
        declared = declared_parameters(f"pac_ros/nodes/{module}.py", "pac_ros/nodes/common.py")
        for name in flatten(template[node]["ros__parameters"]):
            assert name in declared, f"config/robot_nodes.yaml: {node}.{name} is not a parameter of the node"
