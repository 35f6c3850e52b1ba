"""The package's dependency rules, read from the source (nothing is imported).

Every import counts, at module level or inside a function, and so does every "pac_ros.module[:name]"
string (modules loaded with importlib); imports are followed transitively, package __init__ files
included (importing a.b.c runs a and a.b first).
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DYNAMIC = re.compile(r"pac_ros(\.\w+)+(:\w+)?")
ROS_PACKAGES = ("rclpy", "rosbag2_py", "launch", "launch_ros", "cv_bridge", "message_filters")
ROS_INTERFACES = ("msg", "srv", "action")  # e.g. sensor_msgs.msg, pac_ros.msg

ROS_FREE_CORE = ("spec", "sim", "data", "model", "learning", "control", "policy", "checkpoint", "kinematics",
                 "cameras", "perception", "paths", "jsonfile", "topics", "config_loader")
FOUNDATION = ("spec", "sim", "data", "model", "kinematics", "cameras", "perception", "checkpoint", "paths",
              "jsonfile", "topics", "config_loader")
APPLICATION = ("control", "policy", "learning", "nodes", "cli", "experiment")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((ROOT / "pac_ros").rglob("*.py"))}


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imports_in(source: str, package: str, known: set[str] | dict = MODULES) -> set[str]:
    """Absolute names of every module ``source`` imports, wherever the statement is; ``package`` is
    the package relative imports start from; ``known``: our modules (``from p import m`` imports p.m)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DYNAMIC.fullmatch(node.value):
            found.add(node.value.split(":")[0])
    return {m for f in found for m in _with_parents(f)}


@lru_cache(maxsize=None)
def direct_imports(name: str) -> frozenset[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return frozenset(imports_in(path.read_text(), package))


@lru_cache(maxsize=None)
def closure(name: str) -> frozenset[str]:
    """Every module, ours and others', that importing ``name`` may run."""
    seen: set[str] = set()
    todo = [m for m in _with_parents(name) if m in MODULES]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(direct_imports(m) - seen if m in MODULES else ())
    return frozenset(seen - {name})


def modules_of(layers: tuple[str, ...]) -> list[str]:
    names = [m for m in MODULES if any(m == f"pac_ros.{x}" or m.startswith(f"pac_ros.{x}.") for x in layers)]
    missing = [x for x in layers if not any(m == f"pac_ros.{x}" or m.startswith(f"pac_ros.{x}.") for m in names)]
    assert not missing, f"no module pac_ros.{missing[0]}: update the layer lists of this test"
    return names


def violations(layers: tuple[str, ...], forbidden) -> dict[str, list[str]]:
    """{module of ``layers``: the modules it reaches for which ``forbidden(name)`` holds}."""
    found = {m: sorted(d for d in closure(m) if forbidden(d)) for m in modules_of(layers)}
    return {m: bad for m, bad in found.items() if bad}


def under(*prefixes: str):
    return lambda name: any(name == p or name.startswith(p + ".") for p in prefixes)


def is_ros(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in ROS_PACKAGES or any(p in ROS_INTERFACES for p in parts[1:])


def test_the_ros_free_core_never_reaches_ros_or_the_nodes():
    assert violations(ROS_FREE_CORE, lambda d: is_ros(d) or under("pac_ros.nodes")(d)) == {}


def test_policy_and_nodes_load_checkpoints_without_the_training_code():
    assert violations(("policy", "nodes"), under("pac_ros.learning")) == {}


def test_control_and_policy_do_not_depend_on_the_simulated_task():
    assert violations(("control", "policy"), under("pac_ros.sim")) == {}


def test_foundation_layers_do_not_reach_up():
    assert violations(FOUNDATION, under(*(f"pac_ros.{x}" for x in APPLICATION))) == {}


def test_the_import_reader_sees_relative_lazy_and_importlib_imports():
    source = '''
import numpy as np
from . import spec
from ..model.config import PACConfig
def later():
    import rclpy.node
    from pac_ros.learning import Learner
TARGETS = {"x": "pac_ros.nodes.graph:NodeEntry"}
'''
    known = {"pac_ros.sim.spec"}
    assert imports_in(source, "pac_ros.sim", known) == {
        "numpy", "pac_ros", "pac_ros.sim", "pac_ros.sim.spec", "pac_ros.model", "pac_ros.model.config", "rclpy",
        "rclpy.node", "pac_ros.learning", "pac_ros.nodes", "pac_ros.nodes.graph"}
    assert is_ros("rclpy.node") and is_ros("sensor_msgs.msg") and is_ros("pac_ros.msg") and not is_ros("rosbags")
    # on the real tree: a lazy import and a package __init__ count
    assert "pac_ros.kinematics" in direct_imports("pac_ros.control")  # imported inside a property
    assert {"pac_ros.sim", "pac_ros.sim.expert"} <= closure("pac_ros.sim.env")  # sim/__init__ imports the expert
    assert "rclpy" in closure("pac_ros.nodes.policy")
