"""`pac-ros dataset info`: a summary from the index that agrees with the episodes."""
import json

import numpy as np

from pac_ros.cli import main
from pac_ros.data import Dataset
from pac_ros.data.info import format_summary, summarize


def test_summary_agrees_with_the_episodes(collected, capsys):
    root = collected
    ds = Dataset(root)
    s = summarize(ds)
    loaded = [ds.load_episode(i, images=False) for i in range(len(ds))]
    assert s["episodes"] == 4 and s["steps"] == sum(len(e.timestamp) for e in loaded)
    assert s["successes"] == sum(bool(e["success"]) for e in ds.episodes)
    assert sum(v["episodes"] for v in s["sources"].values()) == 4
    assert all(k.startswith("expert (") for k in s["sources"])  # expert quality shown
    assert sum(s["instructions"].values()) == 4
    assert s["length"]["max"] == max(len(e.timestamp) for e in loaded)
    assert np.isclose(s["return"]["mean"], np.mean([e.rewards[:-1].sum() for e in loaded]))
    assert s["cameras"] == {"front": "64x64 rgb8", "wrist": "64x64 rgb8"} and s["bytes"] == ds.size_bytes()
    assert any(line.startswith("success:") for line in format_summary(s))
    assert s["fingerprint"] == ds.fingerprint() and s["episodes_without_content_digest"] == 0
    assert f"fingerprint:   {ds.fingerprint()} (" in "\n".join(format_summary(s))

    assert main(["dataset", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == s["steps"]


def test_info_on_a_non_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path)]) == 2
    assert "not a pac_ros dataset" in capsys.readouterr().err
