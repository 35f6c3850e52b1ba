"""`pac-ros dataset filter | merge | split`: copies read back identical; specs must match."""
import dataclasses

import numpy as np
import pytest

from pac_ros.cli import main
from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data.select import select, split_indices, write_selection
from pac_ros.data.validate import validate


def assert_same(a: Dataset, i: int, b: Dataset, j: int) -> None:
    ea, eb = a.load_episode(i), b.load_episode(j)
    for name in ("timestamp", "joint_positions", "actions", "rewards", "is_terminal", "features"):
        assert np.array_equal(getattr(ea, name), getattr(eb, name)), name
    assert ea.instructions == eb.instructions
    assert all(np.array_equal(ea.images[c], eb.images[c]) for c in ea.images)
    for key in ("success", "return", "source", "seed", "metadata", "length"):
        assert a.episodes[i][key] == b.episodes[j][key], key


def test_filter_copies_the_matching_episodes_exactly(collected, tmp_path):
    src = Dataset(collected)
    wins = select(src, success=True)
    assert wins == [e["episode_index"] for e in src.episodes if e["success"]]
    assert main(["dataset", "filter", str(collected), "--out", str(tmp_path / "f"), "--outcome", "failure"]) == 0
    fails = select(src, success=False)
    out = Dataset(tmp_path / "f")
    assert len(out) == len(fails) and validate(out.root).ok
    for j, i in enumerate(fails):
        assert_same(src, i, out, j)
    assert select(src, start=1, stop=3) == [1, 2]
    assert select(src, instruction=src.episodes[0]["instruction"].upper())[0] == 0


def test_merge_appends_in_order_and_shares_tasks(collected, tmp_path):
    src = Dataset(collected)
    assert write_selection(tmp_path / "m", [(src, [0, 1, 2, 3]), (src, [3, 0])]) == 6
    out = Dataset(tmp_path / "m")
    assert validate(out.root).ok and len(out.tasks) == len(set(out.tasks)) == len(src.tasks)
    for j, i in enumerate([0, 1, 2, 3, 3, 0]):
        assert_same(src, i, out, j)


def test_merge_refuses_another_spec_or_a_used_directory(collected, tmp_path):
    src = Dataset(collected)
    other_spec = dataclasses.replace(src.spec, name="another_robot")
    DatasetWriter(tmp_path / "other", other_spec, features=True).close()
    with pytest.raises(DatasetError, match="cannot merge"):
        write_selection(tmp_path / "m", [(src, [0]), (Dataset(tmp_path / "other"), [])])
    with pytest.raises(DatasetError, match="not empty"):
        write_selection(tmp_path / "other", [(src, [0])])


def test_split_is_disjoint_complete_and_seeded(collected, tmp_path):
    train, val = split_indices(10, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10)) and (train, val) == split_indices(10, 0.2, 3)
    assert split_indices(2, 0.01)[1] and split_indices(2, 0.99)[0]  # one episode each side at least
    args = ["dataset", "split", str(collected), "--train", str(tmp_path / "t"), "--val", str(tmp_path / "v"),
            "--val-fraction", "0.25"]
    assert main(args) == 0
    assert len(Dataset(tmp_path / "t")) == 3 and len(Dataset(tmp_path / "v")) == 1
