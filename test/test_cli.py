"""The pac-ros command end to end on tiny inputs."""
import numpy as np
import pytest

from pac_ros.cli import main
from pac_ros.collect import MIXES, pick_quality
from pac_ros.data import Dataset
from pac_ros.spec import default_spec


def test_collect_then_export_mcap(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["collect", "--out", str(out), "--episodes", "2", "--quality", "perfect", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "success rate:     100.0% (2/2)" in text and "bytes/step" in text
    ds = Dataset(out, default_spec())
    assert len(ds) == 2 and all(m["source"] == "expert" and m["seed"] in (3, 4) for m in ds.episodes)
    assert ds.episodes[0]["metadata"]["quality"] == "perfect"
    episode = ds.load_episode(0)
    assert episode.is_terminal[-1] and episode.rewards.sum() == 1.0

    bag = tmp_path / "bag"
    assert main(["dataset", "export", str(out), "--format", "mcap", "--out", str(bag)]) == 0
    assert (bag / "metadata.yaml").is_file()
    assert main(["dataset", "export", str(out), "--out", str(bag)]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err


def test_collect_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["collect", "--out", str(tmp_path / "x"), "--quality", "superb"])
    assert main(["collect", "--out", str(tmp_path / "x"), "--episodes", "0"]) == 2


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_blend_draws_presets_by_weight(mix):
    assert sum(MIXES[mix].values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    draws = [pick_quality(mix, rng) for _ in range(4000)]
    for name, weight in MIXES[mix].items():
        assert abs(draws.count(name) / len(draws) - weight) < 0.03
