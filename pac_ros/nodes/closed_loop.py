"""The stacking graph run for N episodes in this process: the demo and `pac-ros eval --ros`.

Bridge (lock-step) + driver (PAC policy or expert) + recorder, episodes back to back
from seed ``seed``; what the recorder commits is the result, so the figures come from
exactly the data that a retraining round would read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from rclpy.logging import LoggingSeverity

from pac_ros.data import Dataset
from pac_ros.nodes.common import init_ros
from pac_ros.nodes.launcher import GraphRunner


def run_closed_loop(dataset: str | Path, episodes: int, driver: str = "policy", checkpoint: str | None = None,
                    seed: int = 0, overrides: list[str] = (), on_episode: Callable[[dict], None] | None = None,
                    timeout: float | None = None, quiet: bool = True, domain_id: int | None = None) -> list[dict]:
    """Record ``episodes`` episodes into ``dataset``; returns their index lines."""
    import rclpy

    params = [f"recorder.dataset={dataset}", f"mujoco_bridge.seed={seed}"]
    if driver == "expert":
        params.append(f"expert.seed={seed}")
    if checkpoint is not None:
        params.append(f"policy.checkpoint={checkpoint}")
    init_ros(domain_id=domain_id)
    runner = None
    try:
        runner = GraphRunner("stacking", driver, params + list(overrides))
        if quiet:
            for node in runner.nodes.values():
                node.get_logger().set_level(LoggingSeverity.WARN)
        recorder = runner.nodes["recorder"]
        first = recorder.num_episodes
        reported = 0

        def done() -> bool:
            nonlocal reported
            while reported < len(recorder.committed):
                if on_episode is not None:
                    index = recorder.committed[reported]
                    on_episode(Dataset(dataset).episodes[index])
                reported += 1
            return len(recorder.committed) >= episodes

        finished = runner.spin(until=done, timeout=timeout)
        recorder.abandon("enough episodes")
        recorder.flush()
        done()
        if not finished:
            raise TimeoutError(f"only {len(recorder.committed)} of {episodes} episodes within {timeout} s")
    finally:
        if runner is not None:
            runner.close()
        rclpy.try_shutdown()
    return Dataset(dataset).episodes[first:first + episodes]
