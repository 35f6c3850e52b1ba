"""`pac-ros dataset stats`: meta/stats.json is right, goes stale on append, and training uses it."""
import numpy as np
import torch

from pac_ros.cli import main
from pac_ros.data import Dataset, DatasetWriter
from pac_ros.data.stats import load_stats, write_stats
from pac_ros.learning.data import TransitionStore
from pac_ros.learning.train import set_input_statistics
from pac_ros.model import PACModel, preset


def test_stats_match_the_rows(collected_copy, capsys):
    ds = Dataset(collected_copy)
    assert main(["dataset", "stats", str(collected_copy)]) == 0 and "observation.state" in capsys.readouterr().out
    stats = load_stats(ds)
    q = np.concatenate([ds.load_episode(i, images=False).joint_positions for i in range(len(ds))]).astype(np.float64)
    s = stats["features"]["observation.state"]
    assert s["count"] == len(q) == ds.total_steps
    assert np.allclose(s["mean"], q.mean(0)) and np.allclose(s["std"], q.std(0, ddof=1))
    assert np.allclose(s["min"], q.min(0)) and np.allclose(s["q50"], np.median(q, 0))
    assert set(stats["features"]) == {"observation.state", "action", "next.reward", "observation.environment_state"}


def test_stale_after_append_and_training_uses_fresh_ones(collected, collected_copy):
    write_stats(Dataset(collected_copy))
    cfg = preset("tiny", obs_mode="features")
    ds = Dataset(collected_copy)
    store = TransitionStore(ds, cfg, 0.99, log=lambda *_: None)
    from_file, from_rows = PACModel(cfg, ds.spec), PACModel(cfg, ds.spec)
    said = []
    set_input_statistics(from_file, ds, store, None, said.append)
    set_input_statistics(from_rows, ds, store, 2, said.append)  # a subset: never the file
    assert said == [f"input statistics from {ds.root}/meta/stats.json"]
    for name in ("joint_loc", "joint_scale", "feature_loc", "feature_scale"):
        assert torch.allclose(getattr(from_file, name), getattr(from_rows, name), atol=1e-6), name

    with DatasetWriter(collected_copy, ds.spec) as w:
        w.copy_episode(Dataset(collected), 0)
    assert load_stats(Dataset(collected_copy)) is None
