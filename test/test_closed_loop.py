"""End to end: the stacking graph with the shipped model runs episodes and the recorder keeps them."""
import numpy as np
import pytest

pytest.importorskip("rclpy")

from conftest import ros_domain_id  # noqa: E402

from pac_ros.data import Dataset  # noqa: E402
from pac_ros.nodes.closed_loop import run_closed_loop  # noqa: E402
from pac_ros.paths import share_file  # noqa: E402
from pac_ros.spec import default_spec  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pac_tiny_pixels", "pac_tiny_suboptimal", "pac_tiny_stacking"])
def test_shipped_model_closes_the_loop_and_is_recorded(tmp_path, model):
    shipped = share_file("models", model)
    seen = []
    # the node's decoding is auto: each model's own (mean / greedy, from its meta.json)
    episodes = run_closed_loop(tmp_path / "ds", 2, "policy", str(shipped), seed=300_000, on_episode=seen.append,
                               timeout=300, domain_id=ros_domain_id())
    assert len(episodes) == 2 and [m["episode_index"] for m in seen] == [0, 1]
    spec = default_spec()
    ds = Dataset(tmp_path / "ds", spec)
    for meta in episodes:
        assert meta["source"] == "policy" and meta["checkpoint"].startswith(f"{model}@")
        assert meta["dropped"] == 0 and 2 <= meta["length"] <= spec.max_episode_steps + 1
        episode = ds.load_episode(meta["episode_index"])
        commands = episode.actions[:-1]
        assert np.all(np.isfinite(commands))
        assert np.all(commands >= spec.lower - 1e-6) and np.all(commands <= spec.upper + 1e-6)
        assert np.all(np.abs(commands - episode.joint_positions[:-1]) <= spec.max_step + 1e-5)
        assert episode.is_last[-1] and episode.is_terminal[-1] == bool(meta["success"])
