"""`pac-ros dataset validate --strict`: a clean dataset passes; each hand-made corruption a dataset from
someone else may carry is named with its file and field, and the command exits 1."""
from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pac_ros.cli import main
from pac_ros.data import DatasetWriter
from pac_ros.data import format as fmt
from pac_ros.data.reader import Dataset
from pac_ros.data.stats import write_stats
from pac_ros.data.validate import validate
from pac_ros.model.testing import small_spec

SPEC = small_spec(n_arm=2, cameras=1, size=16, blocks=3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Three short episodes (block features, one 16x16 camera) and their meta/stats.json."""
    root = tmp_path_factory.mktemp("strict") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, SPEC, features=True) as w:
        for e, T in enumerate((6, 4, 5)):
            ep = w.begin_episode(SPEC.instructions()[e], source="expert", seed=e)
            for t in range(T):
                ep.add_step(timestamp=10.0 * e + 0.1 * t, joint_positions=rng.uniform(SPEC.lower, SPEC.upper),
                            images={"cam0": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
                            action=rng.uniform(SPEC.lower, SPEC.upper), reward=float(t == T - 2),
                            features=rng.normal(size=SPEC.feature_dim))
            w.commit(ep, terminal=e != 1)
    write_stats(Dataset(root))
    return root


@pytest.fixture()
def ds(clean, tmp_path):
    return shutil.copytree(clean, tmp_path / "ds")


def lines(root):
    return [json.loads(x) for x in (root / "meta" / "episodes.jsonl").read_text().splitlines()]


def write_lines(root, recs):
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def edit_line(root, i, **changes):
    recs = lines(root)
    recs[i].update(changes)
    write_lines(root, recs)


def rewrite_file(root, i, edit, digest=True):
    """Edit episode i's parquet table, re-hash it in the index and recompute meta/stats.json, so
    only the edit is wrong (with ``digest`` False, the columns' digest is left as it was, too)."""
    f = root / lines(root)[i]["file"]
    table = edit(pq.read_table(f))
    changes = {}
    if digest:
        carried = json.loads(table.schema.metadata[fmt.EPISODE_META_KEY])
        carried[fmt.CONTENT_KEY] = changes[fmt.CONTENT_KEY] = fmt.content_digest(table)
        table = table.replace_schema_metadata({**table.schema.metadata,
                                               fmt.EPISODE_META_KEY: json.dumps(carried).encode()})
    pq.write_table(table, f)
    data = f.read_bytes()
    edit_line(root, i, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), **changes)
    write_stats(Dataset(root))


def strict(root):
    return validate(root, strict=True).problems


def only(problems, *needles):
    """The one problem, which names every needle."""
    assert len(problems) == 1, "\n".join(problems)
    assert all(n in problems[0] for n in needles), problems[0]
    return problems[0]


def test_a_clean_dataset_passes_strict(clean, capsys):
    assert strict(clean) == []
    assert main(["dataset", "validate", "--strict", str(clean)]) == 0
    assert "OK" in capsys.readouterr().out


def test_strict_never_skips_images(clean, capsys):
    assert main(["dataset", "validate", "--strict", "--no-images", str(clean)]) == 2
    assert "--strict decodes every image" in capsys.readouterr().err


# ---- the tree --------------------------------------------------------------------------------
def test_a_link_out_of_the_dataset(ds, tmp_path):
    rel = lines(ds)[1]["file"]
    f = ds / rel
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(f, outside)
    f.symlink_to(outside)
    problems = strict(ds)
    assert any(f"{f}: a link to {outside}, outside the dataset" in p for p in problems), problems
    assert any("line 2: file: 'data/chunk-000/episode_000001.parquet' is reached through a link" in p
               for p in problems), problems
    assert validate(ds).ok  # the normal check reads through the link


def test_a_linked_directory_out_of_the_dataset_and_a_link_loop(ds, tmp_path):
    (tmp_path / "other").mkdir()
    (ds / "meta" / "extra").symlink_to(tmp_path / "other")
    only(strict(ds), str(ds / "meta" / "extra"), "outside the dataset")
    (ds / "meta" / "extra").unlink()
    (ds / "loop").symlink_to(ds / "loop")
    (ds / "data" / "loop").symlink_to(ds / "data" / "loop")
    problems = strict(ds)
    assert len(problems) == 2 and all(": a link to" in p for p in problems), problems


def test_unexpected_files_and_directories_are_listed(ds, capsys):
    (ds / "meta" / ".episodes.jsonl.123.4.tmp").write_text("{")
    (ds / "meta" / "notes.txt").write_text("hi")
    (ds / "quarantine").mkdir()
    (ds / "quarantine" / "episode_000007.parquet.17").write_bytes(b"x")
    (ds / "scripts").mkdir()
    (ds / "scripts" / "run.sh").write_text("rm -rf /")
    problems = strict(ds)
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert f"{ds / 'meta' / '.episodes.jsonl.123.4.tmp'}: unexpected file, a staging leftover" in text
    assert f"{ds / 'meta' / 'notes.txt'}: unexpected file, not part of the dataset" in text
    assert f"{ds / 'quarantine'}: unexpected directory (1 file(s)), quarantined by `dataset repair`" in text
    assert f"{ds / 'scripts'}: unexpected directory (1 file(s)), not part of the dataset" in text
    assert validate(ds).ok
    assert main(["dataset", "validate", "--strict", str(ds)]) == 1
    assert "4 problem(s)" in capsys.readouterr().out


def test_a_writer_still_writing(ds):
    with DatasetWriter(ds, SPEC):
        only(strict(ds), "meta/writer.lock: held by a writer")


# ---- info and index fields ---------------------------------------------------------------------
def test_info_that_disagrees_with_the_spec(ds):
    f = ds / "meta" / "info.json"
    info = json.loads(f.read_text())
    info["fps"] = 30.0
    info["features"]["observation.images.cam0"]["shape"] = [32, 32, 3]
    info["data_path"] = "../elsewhere/{episode_index}.parquet"
    info["total_episodes"] = 99
    f.write_text(json.dumps(info))
    text = "\n".join(strict(ds))
    assert f"{f}: fps: 30.0, the spec and format say 10.0" in text
    assert f"{f}: features: " in text and f"{f}: data_path: " in text
    assert f"{f}: total_episodes: unexpected key" in text


@pytest.mark.parametrize("changes, message", [
    (dict(success="yes"), "line 1: success: expected true/false, got \"yes\""),
    (dict(seed=1.5), "line 1: seed: expected an integer or null, got 1.5"),
    (dict(duration_s=float("nan")), "line 1: duration_s: expected a finite number >= 0, got NaN"),
    (dict(metadata=[1]), "line 1: metadata: expected a mapping or null"),
    (dict(hacked=True), "line 1: hacked: unexpected key"),
    (dict(content_sha256="abc"), "line 1: content_sha256: expected a sha256 (64 hex), got \"abc\""),
    (dict(bytes=12), "line 1: bytes: 12, "),
    (dict(start_stamp=3.0), "line 1: start_stamp: 3.0, "),
    (dict(end_stamp=9.0), "line 1: end_stamp: 9.0, "),
    (dict(tasks=["put the red block on the green block", "x"]), "line 1: tasks: "),
    (dict(terminal=False), "line 1: terminal: false, "),
    (dict(achieved_rate_hz=100.0), "line 1: achieved_rate_hz: 100.0, "),
], ids=["success_str", "seed_float", "duration_nan", "metadata_list", "unknown_key", "digest_str", "bytes",
        "start_stamp", "end_stamp", "tasks", "terminal", "rate"])
def test_index_line_fields_typed_and_as_on_disk(ds, changes, message):
    edit_line(ds, 0, **changes)
    write_stats(Dataset(ds))  # a label or digest is part of the fingerprint the stats are keyed by
    problems = [p for p in strict(ds) if "differs from the line" not in p]  # the normal edited-line check
    only(problems, str(ds / "meta" / "episodes.jsonl"), message)


def test_a_missing_index_field(ds):
    recs = lines(ds)
    del recs[2]["recorded_at"]
    write_lines(ds, recs)
    only([p for p in strict(ds) if "differs from the line" not in p], "line 3: recorded_at: missing")


def test_an_episode_at_another_path(ds):
    recs = lines(ds)
    old = ds / recs[1]["file"]
    (ds / "data" / "chunk-007").mkdir()
    new = "data/chunk-007/episode_000001.parquet"
    shutil.move(old, ds / new)
    recs[1]["file"] = new
    write_lines(ds, recs)
    text = "\n".join(strict(ds))
    assert "line 2: file: 'data/chunk-007/episode_000001.parquet', the episode's path is " \
           "'data/chunk-000/episode_000001.parquet'" in text


def test_row_numbering_and_index_from(ds):
    rewrite_file(ds, 1, lambda t: t.set_column(t.schema.get_field_index("index"), "index",
                                               pa.array(np.arange(len(t)) + 100, pa.int64())))
    edit_line(ds, 2, index_from=3)
    text = "\n".join(strict(ds))
    assert "episode_000001.parquet: index is not 6..9" in text
    assert "line 3: index_from: 3, the earlier episodes' lengths sum to 10" in text


def test_columns_that_no_longer_match_their_digest(ds):
    def nudge(t):
        i = t.schema.get_field_index("observation.environment_state")
        column = t.column(i).combine_chunks()
        values = column.flatten().to_numpy().copy()
        values[0] += 0.5
        return t.set_column(i, "observation.environment_state",
                            pa.FixedSizeListArray.from_arrays(pa.array(values), column.type.list_size))
    rewrite_file(ds, 1, nudge, digest=False)
    only(strict(ds), "line 2: content_sha256: ", "episode_000001.parquet digest to ")


def test_a_column_of_another_type(ds):
    def widen(t):
        i = t.schema.get_field_index("next.reward")
        return t.set_column(i, "next.reward", t.column(i).cast(pa.float64()))
    rewrite_file(ds, 0, widen)
    only(strict(ds), "episode_000000.parquet: column 'next.reward': type double, the schema says float")


def test_a_jpeg_image(ds):
    def jpeg(t):
        i = t.schema.get_field_index("observation.images.cam0")
        blobs = []
        for b in t.column(i).to_pylist():
            buf = io.BytesIO()
            Image.open(io.BytesIO(b)).save(buf, format="JPEG", quality=100)
            blobs.append(buf.getvalue())
        return t.set_column(i, "observation.images.cam0", pa.array(blobs, pa.binary()))
    rewrite_file(ds, 2, jpeg)
    only(strict(ds), "episode_000002.parquet: observation.images.cam0: 5 image(s) not PNG (lossless), first row 0")


def test_an_image_of_another_shape_is_found_even_when_asked_to_skip_images(ds):
    def small(t):
        i = t.schema.get_field_index("observation.images.cam0")
        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
        blobs = t.column(i).to_pylist()
        blobs[2] = buf.getvalue()
        return t.set_column(i, "observation.images.cam0", pa.array(blobs, pa.binary()))
    rewrite_file(ds, 0, small)
    assert validate(ds, images=False).ok
    only(strict(ds), "observation.images.cam0[2]: image shape (8, 8, 3), the spec's camera 'cam0' is (16, 16, 3)")


def test_duplicated_tasks(ds):
    f = ds / "meta" / "tasks.jsonl"
    first = json.loads(f.read_text().splitlines()[0])
    with open(f, "a") as fh:
        fh.write(json.dumps({"task_index": 3, "task": first["task"]}) + "\n")
    only(strict(ds), f"{f}: line 4: task {first['task']!r} duplicates line 1")


# ---- stored statistics -------------------------------------------------------------------------
def test_stats_that_do_not_match_the_episodes(ds):
    f = ds / "meta" / "stats.json"
    stats = json.loads(f.read_text())
    stats["features"]["action"]["mean"][0] += 0.5
    stats["features"]["observation.state"]["std"][1] = float("nan")
    f.write_text(json.dumps(stats))
    text = "\n".join(strict(ds))
    assert f"{f}: features.action.mean: " in text and "differs from the recomputed" in text
    assert f"{f}: features.observation.state.std: " in text
    stats = json.loads(f.read_text())
    stats["steps"] = 3
    f.write_text(json.dumps(stats))
    assert f"{f}: steps: 3, the episodes give 15" in "\n".join(strict(ds))


def test_stats_of_other_episodes(ds):
    f = ds / "meta" / "stats.json"
    stats = json.loads(f.read_text())
    stats["fingerprint"] = "0" * 16
    f.write_text(json.dumps(stats))
    only(strict(ds), f"{f}: fingerprint: ")


def test_normal_checks_still_run_in_strict(ds):
    rewrite_file(ds, 1, lambda t: t.set_column(t.schema.get_field_index("action"), "action", pa.array(
        [[9.0] * 3] + t.column("action").to_pylist()[1:], t.schema.field("action").type)))
    only(strict(ds), "episode_000001.parquet: action outside the spec's joint limits in 1 row(s), first row 0")
