"""`pac-ros dataset repair`: mends what crashes and edits leave, idempotently, never deleting an episode."""
import json
import shutil

import numpy as np
import pytest

from pac_ros.cli import main
from pac_ros.data import Dataset
from pac_ros.data.repair import repair


@pytest.fixture
def clean(collected):
    return collected


@pytest.fixture
def ds(collected_copy):
    return collected_copy


def index_lines(root):
    return [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]


def same_episodes(a, b):
    da, db = Dataset(a), Dataset(b)
    assert len(da) == len(db)
    for i in range(len(da)):
        ea, eb = da.load_episode(i), db.load_episode(i)
        assert np.array_equal(ea.actions, eb.actions) and ea.instructions == eb.instructions
        assert all(np.array_equal(ea.images[c], eb.images[c]) for c in ea.images)


def test_clean_dataset_needs_nothing(ds, capsys):
    report = repair(ds)
    assert report.ok and report.actions == [] and not report.rebuilt_index
    assert main(["dataset", "repair", str(ds)]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_torn_line_temp_file_and_orphan(ds, clean):
    with open(ds / "meta" / "episodes.jsonl", "ab") as f:
        f.write(b'{"episode_index": 4, "tas')
    (ds / "data" / "chunk-000" / ".episode_000004.parquet.1.2.tmp").write_bytes(b"half written")
    orphan = ds / "data" / "chunk-000" / "episode_000009.parquet"
    shutil.copy(ds / "data" / "chunk-000" / "episode_000001.parquet", orphan)
    report = repair(ds)
    text = "\n".join(report.actions)
    assert report.ok, report.validation.problems
    assert "torn last line" in text and "temp file" in text and "episode_000009" in text
    assert any(p.name.startswith("episode_000009.parquet") for p in (ds / "quarantine").iterdir())
    same_episodes(ds, clean)
    assert repair(ds).actions == []  # idempotent


def test_lost_index_is_rebuilt_exactly(ds, clean):
    (ds / "meta" / "episodes.jsonl").unlink()
    (ds / "meta" / "tasks.jsonl").unlink()
    report = repair(ds)
    assert report.rebuilt_index and report.ok, report.validation.problems
    assert index_lines(ds) == index_lines(clean)
    assert (ds / "meta" / "tasks.jsonl").read_text() == (clean / "meta" / "tasks.jsonl").read_text()
    same_episodes(ds, clean)
    assert repair(ds).actions == []


def test_corrupted_index_is_rebuilt_and_kept(ds, clean):
    lines = (ds / "meta" / "episodes.jsonl").read_text().splitlines()
    lines[1] = "{garbage"
    (ds / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    report = repair(ds)
    assert report.rebuilt_index and report.ok
    assert index_lines(ds) == index_lines(clean)
    assert list((ds / "meta").glob("episodes.jsonl.replaced-*"))  # the damaged file is kept


def test_gap_quarantines_later_episodes_without_deleting_them(ds):
    (ds / "data" / "chunk-000" / "episode_000002.parquet").unlink()
    report = repair(ds, rebuild=True)
    assert report.ok and len(Dataset(ds)) == 2
    kept = [p.name for p in (ds / "quarantine").iterdir()]
    assert any(n.startswith("episode_000003.parquet") for n in kept)
    assert "follows a gap at episode 2" in "\n".join(report.actions)


def test_a_changed_episode_is_reported_not_hidden(ds, capsys):
    f = ds / index_lines(ds)[0]["file"]
    f.write_bytes(f.read_bytes()[:-5])
    assert main(["dataset", "repair", str(ds)]) == 1
    assert "sha256" in capsys.readouterr().out


def test_commit_interrupted_before_its_index_line_is_recovered(ds, clean):
    lines = (ds / "meta" / "episodes.jsonl").read_text().splitlines()
    (ds / "meta" / "episodes.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # file written, line not
    report = repair(ds)
    assert report.ok and "recovered episode(s) 3..3" in "\n".join(report.actions)
    assert index_lines(ds) == index_lines(clean) and not (ds / "quarantine").exists()
    assert repair(ds).actions == []
