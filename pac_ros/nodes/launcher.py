"""In-process launcher: a node graph on one rclpy executor, for machines without `ros2`.

`pac-ros launch stacking|robot` starts the nodes that launch/<graph>.launch.py starts, with
the same parameter file, parsed by the same rcl parser (``--params-file``), and the same launch
arguments (driver, use_sim_time, params_file, checkpoint, namespace). A managed (lifecycle)
node configures and activates itself when its ``autostart`` parameter is true, as under
`ros2 launch`; one that fails to is an error here.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from pac_ros.nodes.common import init_ros
from pac_ros.nodes.graph import node_parameters


def parse_overrides(items: list[str]) -> dict[str, list[str]]:
    """['recorder.dataset=out/x', ...] -> {'recorder': ['dataset:=out/x']}."""
    per_node: dict[str, list[str]] = defaultdict(list)
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise ValueError(f"parameter override {item!r} must look like NODE.PARAM=VALUE")
        per_node[node].append(f"{param}:={value}")
    return dict(per_node)


class GraphRunner:
    """Create the graph's nodes (rclpy must be initialised) and spin them."""

    def __init__(self, name: str = "stacking", driver: str = "policy", overrides: list[str] = (),
                 params_file: str | Path | None = None, use_sim_time: bool | str | None = None,
                 checkpoint: str = "", namespace: str = ""):
        entries, default_params, driven = node_parameters(name, driver, use_sim_time, checkpoint)
        self.params_file = Path(params_file) if params_file else default_params
        if not self.params_file.is_file():
            raise FileNotFoundError(f"parameter file {self.params_file} does not exist")
        driven_items = [f"{node}.{k}={str(v).lower() if isinstance(v, bool) else v}"
                        for node, params in driven.items() for k, v in params.items()]
        extra = parse_overrides(driven_items + list(overrides))  # the user's overrides come last and win
        unknown = sorted(set(extra) - {e.name for e in entries})
        if unknown:
            raise ValueError(f"overrides for node(s) {unknown} not in graph {name!r}: "
                             f"{[e.name for e in entries]}")
        self.nodes = {}
        self.executor = SingleThreadedExecutor()
        try:
            for entry in entries:
                args = ["--ros-args", "--params-file", str(self.params_file)]
                if namespace:
                    args += ["-r", f"__ns:=/{namespace.strip('/')}"]
                for item in extra.get(entry.name, []):
                    args += ["-p", item]
                node = entry.node_class()(cli_args=args)
                self.nodes[entry.name] = node
                self.executor.add_node(node)
                if getattr(node, "start_error", None) is not None:  # a managed node whose autostart failed
                    raise node.start_error
        except BaseException:
            self.close()
            raise

    def spin(self, until=lambda: False, timeout: float | None = None) -> bool:
        """Spin until ``until()`` is true (returns True) or ``timeout`` s pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            self.executor.remove_node(node)
            node.destroy_node()
        self.nodes.clear()
        self.executor.shutdown()


def launch(name: str, driver: str, overrides: list[str], episodes: int | None, duration: float | None,
           params_file: str | None = None, use_sim_time: bool | str | None = None, checkpoint: str = "",
           namespace: str = "") -> int:
    init_ros()
    runner = None
    try:
        runner = GraphRunner(name, driver, overrides, params_file, use_sim_time, checkpoint, namespace)
        recorder = runner.nodes.get("recorder")

        def done() -> bool:
            return episodes is not None and recorder is not None and len(recorder.committed) >= episodes

        finished = runner.spin(until=done, timeout=duration)
        if recorder is not None:
            if finished:
                recorder.abandon(f"{episodes} episode(s) recorded")
            recorder.flush()
            print(f"recorded {len(recorder.committed)} episode(s) into {recorder.dataset_path}"
                  + ("" if finished else f" (stopped after {duration} s)"))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if runner is not None:
            runner.close()
        rclpy.try_shutdown()
    return 0
