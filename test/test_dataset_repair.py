"""`pac-ros dataset repair`: mends what crashes and edits leave, idempotently, never deleting an episode."""
import json
import shutil

import numpy as np

from pac_ros.cli import main
from pac_ros.data import Dataset
from pac_ros.data.repair import repair


def index_lines(root):
    return [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]


def same_episodes(a, b):
    da, db = Dataset(a), Dataset(b)
    assert len(da) == len(db)
    for i in range(len(da)):
        ea, eb = da.load_episode(i), db.load_episode(i)
        assert np.array_equal(ea.actions, eb.actions) and ea.instructions == eb.instructions
        assert all(np.array_equal(ea.images[c], eb.images[c]) for c in ea.images)


def test_clean_dataset_needs_nothing(collected_copy, capsys):
    report = repair(collected_copy)
    assert report.ok and report.actions == [] and not report.rebuilt_index
    assert main(["dataset", "repair", str(collected_copy)]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_torn_line_temp_file_and_orphan(collected_copy, collected):
    with open(collected_copy / "meta" / "episodes.jsonl", "ab") as f:
        f.write(b'{"episode_index": 4, "tas')
    (collected_copy / "data" / "chunk-000" / ".episode_000004.parquet.1.2.tmp").write_bytes(b"half written")
    orphan = collected_copy / "data" / "chunk-000" / "episode_000009.parquet"
    shutil.copy(collected_copy / "data" / "chunk-000" / "episode_000001.parquet", orphan)
    report = repair(collected_copy)
    text = "\n".join(report.actions)
    assert report.ok, report.validation.problems
    assert "torn last line" in text and "temp file" in text and "episode_000009" in text
    assert any(p.name.startswith("episode_000009.parquet") for p in (collected_copy / "quarantine").iterdir())
    same_episodes(collected_copy, collected)
    assert repair(collected_copy).actions == []  # idempotent


def test_lost_index_is_rebuilt_exactly(collected_copy, collected):
    (collected_copy / "meta" / "episodes.jsonl").unlink()
    (collected_copy / "meta" / "tasks.jsonl").unlink()
    report = repair(collected_copy)
    assert report.rebuilt_index and report.ok, report.validation.problems
    assert index_lines(collected_copy) == index_lines(collected)
    assert (collected_copy / "meta" / "tasks.jsonl").read_text() == (collected / "meta" / "tasks.jsonl").read_text()
    same_episodes(collected_copy, collected)
    assert repair(collected_copy).actions == []


def test_corrupted_index_is_rebuilt_and_kept(collected_copy, collected):
    lines = (collected_copy / "meta" / "episodes.jsonl").read_text().splitlines()
    lines[1] = "{garbage"
    (collected_copy / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    report = repair(collected_copy)
    assert report.rebuilt_index and report.ok
    assert index_lines(collected_copy) == index_lines(collected)
    assert list((collected_copy / "meta").glob("episodes.jsonl.replaced-*"))  # the damaged file is kept


def test_gap_quarantines_later_episodes_without_deleting_them(collected_copy):
    (collected_copy / "data" / "chunk-000" / "episode_000002.parquet").unlink()
    report = repair(collected_copy, rebuild=True)
    assert report.ok and len(Dataset(collected_copy)) == 2
    kept = [p.name for p in (collected_copy / "quarantine").iterdir()]
    assert any(n.startswith("episode_000003.parquet") for n in kept)
    assert "follows a gap at episode 2" in "\n".join(report.actions)


def test_a_changed_episode_is_reported_not_hidden(collected_copy, capsys):
    f = collected_copy / index_lines(collected_copy)[0]["file"]
    f.write_bytes(f.read_bytes()[:-5])
    assert main(["dataset", "repair", str(collected_copy)]) == 1
    assert "sha256" in capsys.readouterr().out


def test_commit_interrupted_before_its_index_line_is_recovered(collected_copy, collected):
    lines = (collected_copy / "meta" / "episodes.jsonl").read_text().splitlines()
    (collected_copy / "meta" / "episodes.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # file written, line not
    report = repair(collected_copy)
    assert report.ok and "recovered episode(s) 3..3" in "\n".join(report.actions)
    assert index_lines(collected_copy) == index_lines(collected) and not (collected_copy / "quarantine").exists()
    assert repair(collected_copy).actions == []
