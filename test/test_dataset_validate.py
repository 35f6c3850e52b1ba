"""`pac-ros dataset validate`: a collected dataset passes; each kind of damage is named."""
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.cli import main
from pac_ros.data.validate import validate


def episode_file(root, i=1):
    return root / json.loads((root / "meta" / "episodes.jsonl").read_text().splitlines()[i])["file"]


def rewrite(root, i, edit):
    """Edit one column of episode i and re-hash it in the index, so only the edit is wrong."""
    import hashlib

    f = episode_file(root, i)
    table = pq.read_table(f)
    table = edit(table)
    pq.write_table(table, f)
    lines = (root / "meta" / "episodes.jsonl").read_text().splitlines()
    rec = json.loads(lines[i])
    rec["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    lines[i] = json.dumps(rec)
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")


def set_column(name, fn):
    def edit(table):
        col = table.column(name)
        values = fn(col.to_pylist())
        return table.set_column(table.schema.get_field_index(name), name, pa.array(values, type=col.type))
    return edit


def test_clean_dataset_passes(collected, capsys):
    report = validate(collected)
    assert report.ok and report.episodes == 4 and report.steps > 0, report.problems
    assert validate(collected, strict=True).problems == []  # a recording passes the strict checks too
    assert main(["dataset", "validate", str(collected)]) == 0
    assert "OK" in capsys.readouterr().out


def test_changed_file_is_named(collected_copy, capsys):
    f = episode_file(collected_copy)
    f.write_bytes(f.read_bytes()[:-7])
    report = validate(collected_copy)
    assert len(report.problems) == 1 and str(f) in report.problems[0] and "sha256" in report.problems[0]
    assert main(["dataset", "validate", str(collected_copy)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out


def test_backwards_stamps_nan_and_out_of_limit(collected_copy):
    rewrite(collected_copy, 0, set_column("timestamp", lambda v: [v[0], v[0]] + v[2:]))
    rewrite(collected_copy, 1, set_column("action", lambda v: [[float("nan")] * len(v[0])] + v[1:]))
    rewrite(collected_copy, 2, set_column("observation.state", lambda v: v[:-1] + [[9.0] * len(v[0])]))
    problems = "\n".join(validate(collected_copy, images=False).problems)
    assert "timestamp not strictly increasing at row 1" in problems
    assert "action not finite in 1 row(s), first row 0" in problems
    assert "observation.state outside the spec's joint limits" in problems


def test_flags_return_and_rlds_rows(collected_copy):
    rewrite(collected_copy, 0, set_column("next.reward", lambda v: [5.0] + v[1:]))
    rewrite(collected_copy, 1, set_column("is_last", lambda v: [True] * len(v)))
    problems = "\n".join(validate(collected_copy, images=False).problems)
    assert "index return" in problems and "is_last must be true at the final row only" in problems


def test_orphans_and_torn_index_line(collected_copy):
    (collected_copy / "data" / "chunk-000" / "episode_000099.parquet.tmp-1").write_bytes(b"half")
    with open(collected_copy / "meta" / "episodes.jsonl", "ab") as f:
        f.write(b'{"episode_index": 3, "len')
    problems = validate(collected_copy, images=False).problems
    assert any("orphan file" in p and "episode_000099" in p for p in problems)
    assert any("torn last line" in p for p in problems)


def test_not_a_dataset(tmp_path):
    report = validate(tmp_path)
    assert not report.ok and "not a pac_ros dataset" in report.problems[0]
    assert report.episodes == 0 and report.steps == 0
