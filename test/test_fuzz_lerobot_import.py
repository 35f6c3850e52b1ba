"""`pac-ros dataset import --format lerobot` on untrusted input: mutated datasets (test/lerobot_fuzz*.py).

Every import either succeeds with an output that validates, or raises a PacRosError with a message and
leaves nothing at --out; never another exception, a hang, excess memory, a write outside --out or a read
outside the dataset. A seeded sample here; bench/fuzz_lerobot_import.py runs the same generator longer.
Below it, one regression test per distinct failure the fuzzer found in the importer.
"""
from __future__ import annotations

import collections
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from lerobot_fuzz import _bomb_png, _set_column, base_case, case_rng, edit_info, edit_table, make_case
from lerobot_fuzz_bases import bases
from lerobot_fuzz_run import fresh, materialize, run_case

SAMPLE = 250  # cases of seed 0 run here (30 to 50 a second)
TIME_LIMIT = 10.0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A case directory, in memory where /dev/shm allows (the import fsyncs every episode)."""
    bases()  # built once, outside any case's time limit
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        with tempfile.TemporaryDirectory(prefix="lerobot-fuzz-", dir="/dev/shm") as tmp:
            yield Path(tmp) / "case"
    else:
        yield tmp_path_factory.mktemp("fuzz") / "case"


def outcome_of(case, work):
    fresh(work)
    return run_case(case, work, TIME_LIMIT)


@pytest.mark.parametrize("name", ["ours-v3", "ours-v3-video", "foreign-v3", "foreign-v21"])
def test_every_base_imports_clean(work, name):
    outcome = outcome_of(base_case(name), work)
    assert outcome.kind == "clean", outcome.detail


def test_mutated_imports_are_clean_or_clearly_refused(work):
    counts: collections.Counter[str] = collections.Counter()
    failures = []
    for k in range(SAMPLE):
        case = make_case(case_rng(0, k))
        outcome = outcome_of(case, work)
        counts[outcome.kind] += 1
        if outcome.failed:
            failures.append(f"case {k} ({case.describe()}): {outcome.kind}: {outcome.detail}")
    assert not failures, "\n".join(failures)
    assert counts["clean"] >= SAMPLE // 10 and counts["refused"] >= SAMPLE // 2, counts  # both sides exercised


def test_the_generator_is_deterministic():
    a, b = make_case(case_rng(3, 17)), make_case(case_rng(3, 17))
    assert (a.base, a.files, a.links, a.mutations) == (b.base, b.files, b.links, b.mutations)


# ---- regressions: each a failure the fuzzer found, now a refusal naming the file and field ---------------
def _data(case):
    return sorted(p for p in case.files if p.startswith("data/"))[0]


def _info(key, value):
    return lambda case: edit_info(case, lambda info: info.__setitem__(key, value))


def _feature(key, field, value):
    return lambda case: edit_info(case, lambda info: info["features"][key].__setitem__(field, value))


def _column(path_of, name, values_of):
    def edit(case):
        edit_table(case, path_of(case), lambda t: _set_column(t, name, values_of(t.column(name).to_pylist())))
    return edit


def _episodes_meta(case):
    return "meta/episodes/chunk-000/file-000.parquet"


def _set_file(path, data):
    return lambda case: case.files.__setitem__(path, data)


def _replace_first(values, value):
    return [value] + values[1:]


def _without_image_column(case):
    edit_table(case, _data(case), lambda t: t.drop_columns(["observation.images.grey"]))


def _bad_pandas_metadata(case):
    edit_table(case, "meta/tasks.parquet", lambda t: t.replace_schema_metadata({b"pandas": b"{not json"}))


def _self_link(case):
    del case.files["meta/tasks.parquet"]
    case.links["meta/tasks.parquet"] = "src/meta/tasks.parquet"


def _link_out(rel):
    def edit(case):
        del case.files[rel]
        case.links[rel] = f"outside/{rel}"
        case.escapes = True
    return edit


def _bomb(case):
    path = _data(case)
    edit_table(case, path, lambda t: _set_column(t, "observation.images.top", _replace_first(
        t.column("observation.images.top").to_pylist(), {"bytes": _bomb_png(), "path": None})))


def _values_bomb(case):
    """One row of observation.state holds 5 million values: a few kB on disk, found from the footer."""
    def change(t):
        rows = t.column("observation.state").to_pylist()
        lengths = [len(r) for r in rows]
        lengths[0] = 5_000_000
        values = np.zeros(sum(lengths), np.float32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        i = t.schema.get_field_index("observation.state")
        return t.set_column(i, "observation.state", pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)))
    edit_table(case, _data(case), change)


def _unknown_codec(case):
    """The video's sample entry names a codec no decoder knows (the fuzzer found it by flipping a bit)."""
    path = next(p for p in case.files if p.endswith(".mp4"))
    case.files[path] = case.files[path].replace(b"avc1", b"zzz1").replace(b"FFV1", b"zzz1")


def _float_frame_index(case):
    edit_table(case, _data(case), lambda t: _set_column(t, "frame_index", [float("nan")] * t.num_rows))


def _one_row_less(case):
    edit_table(case, _data(case), lambda t: t.slice(0, t.num_rows - 1))


def _video_size(case):
    edit_info(case, lambda info: info["features"]["observation.images.top"].__setitem__("shape", [16, 20, 3]))


def _strings_episode_index(case):
    edit_table(case, _episodes_meta(case), lambda t: _set_column(
        t, "episode_index", [str(v) for v in t.column("episode_index").to_pylist()]))


REGRESSIONS = [
    # (id, base, edit, expected message)
    ("json-nested-too-deep", "foreign-v21", _set_file("meta/info.json", b"[" * 100000 + b"]" * 100000),
     r"info\.json: cannot read LeRobot dataset info: maximum recursion depth"),
    ("episodes-meta-not-parquet", "ours-v3", _set_file("meta/episodes/chunk-000/file-000.parquet", b"garbage"),
     r"meta/episodes/chunk-000/file-000\.parquet: not a readable parquet file"),
    ("episodes-meta-empty", "foreign-v3", _set_file("meta/episodes/chunk-000/file-000.parquet", b""),
     r"file-000\.parquet: not a readable parquet file"),
    ("episodes-meta-a-directory", "ours-v3", _set_file("meta/episodes/chunk-000/file-000.parquet", None),
     r"file-000\.parquet: not a readable parquet file: .*is a directory"),
    ("template-huge-width", "ours-v3", _info("data_path", "data/{chunk_index:0999999999d}/{file_index}.parquet"),
     r"info\.json: data_path .*field \{chunk_index:0999999999d\} is not allowed"),
    ("template-huge-fill", "ours-v3-video", _info("video_path", "videos/{video_key:%^99999999}/x.mp4"),
     r"info\.json: video_path .*field \{video_key:%\^99999999\} is not allowed"),
    ("template-nul", "ours-v3", _info("data_path", "data/chunk-000/file-000.parquet\x00.txt"),
     r"info\.json: data_path .*NUL character"),
    ("symlink-loop", "ours-v3", _self_link, r"meta/tasks\.parquet.*cannot be resolved"),
    ("info-symlinked-out", "foreign-v21", _link_out("meta/info.json"),
     r"meta/info\.json: the path 'meta/info\.json' leads outside the dataset"),
    ("episodes-meta-symlinked-out", "ours-v3", _link_out("meta/episodes/chunk-000/file-000.parquet"),
     r"meta/episodes: the path .* leads outside the dataset"),
    ("pandas-metadata-not-json", "foreign-v3", _bad_pandas_metadata, None),  # the 'task' column is read
    ("feature-shape-null", "foreign-v21", _feature("observation.state", "shape", None),
     r"info\.json: features\['observation\.state'\]: shape None: expected a list"),
    ("image-shape-huge", "foreign-v21", _feature("observation.images.top", "shape", [100000, 100000, 3]),
     r"features\['observation\.images\.top'\]: shape size 100000: expected an integer in \[1, 4096\]"),
    ("names-100000-long", "foreign-v21", _feature("action", "names", [f"j{i}" for i in range(100000)]),
     r"action: 100000 names for shape \[7\]"),
    ("image-column-missing", "ours-v3", _without_image_column,
     r"file-000\.parquet: episode 0: column 'observation\.images\.grey' missing"),
    ("episode-index-strings", "foreign-v3", _strings_episode_index,
     r"meta/episodes: episode record 0: episode_index '0': expected an integer"),
    ("episode-index-mixed", "foreign-v21", _set_file("meta/episodes.jsonl", b'{"episode_index": "1", "length": 4}\n'
                                                     b'{"episode_index": 0, "length": 3}\n'),
     r"episodes\.jsonl: episode record 0: episode_index '1': expected an integer"),
    ("from-timestamp-string", "ours-v3-video", _column(_episodes_meta, "videos/observation.images.top/from_timestamp",
                                                       lambda v: ["x"] * len(v)),
     r"from_timestamp 'x': expected seconds"),
    ("dropped-not-an-integer", "ours-v3", _column(_episodes_meta, "pac_ros/dropped", lambda v: ["[0.0]"] * len(v)),
     r"episode 0: pac_ros/dropped '\[0\.0\]': expected an integer"),
    ("metadata-not-an-object", "ours-v3", _column(_episodes_meta, "pac_ros/metadata", lambda v: ["1000"] * len(v)),
     r"episode 0: pac_ros/metadata '1000': expected a JSON object"),
    ("state-out-of-limits", "foreign-v21", _column(_data, "observation.state",
                                                   lambda v: _replace_first(v, [50.0] * 7)),
     r"episode_000000\.parquet: episode 0: observation\.state outside the spec's joint limits"),
    ("action-out-of-limits", "ours-v3", _column(_data, "action", lambda v: _replace_first(v, [-50.0] * 7)),
     r"file-000\.parquet: episode 0: action outside the spec's joint limits"),
    ("png-bomb", "foreign-v21", _bomb, r"observation\.images\.top\[0\]: image shape \(9000, 9000, 3\)"),
    ("list-values-bomb", "foreign-v21", _values_bomb,
     r"episode_000000\.parquet: 50000[0-9]+ values in 4 rows, more than 65536 a row"),
    ("frame-index-float-nan", "foreign-v21", _float_frame_index,
     r"column 'frame_index' has type double, expected int values"),
    ("length-is-not-the-row-count", "ours-v3", _one_row_less,
     r"file-000\.parquet: 3 rows, but .*meta/episodes gives its episodes 4 frames in all"),
    ("total-frames-lies", "foreign-v21", _info("total_frames", 8),
     r"info\.json: total_frames 8, but the episodes' lengths in .*episodes\.jsonl sum to 7"),
    ("total-tasks-lies", "foreign-v3", _info("total_tasks", 3),
     r"info\.json: total_tasks 3, but .*meta/tasks\.parquet has 2 task\(s\)"),
    ("total-episodes-lies", "ours-v3", _info("total_episodes", 10 ** 12),
     r"info\.json: total_episodes 1000000000000: expected an integer in \[1, 10000000\]"),
    ("video-codec-unknown", "ours-v3-video", _unknown_codec,
     r"file-000\.mp4: episode 0: observation\.images\.top: no decoder for its video stream"),
    ("video-not-the-declared-size", "ours-v3-video", _video_size,
     r"file-000\.mp4: episode 0: observation\.images\.top: the video is 10x8, its feature's shape in info\.json "
     r"says 20x16"),
]


@pytest.mark.parametrize("name, base, edit, message", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_regression(work, name, base, edit, message):
    case = base_case(base)
    edit(case)
    outcome = outcome_of(case, work)
    if message is None:
        assert outcome.kind == "clean", outcome.detail
    else:
        assert outcome.kind == "refused", f"{outcome.kind}: {outcome.detail}"
        assert re.search(message, outcome.detail), outcome.detail


def test_refusal_leaves_no_output_and_touches_nothing_else(work):
    case = base_case("ours-v3")
    _column(_data, "action", lambda v: _replace_first(v, [np.nan] * 7))(case)
    outcome = outcome_of(case, work)  # run_case compares the whole case directory before and after
    assert outcome.kind == "refused" and "action[0]" in outcome.detail, outcome.detail
    assert not (work / "out").exists()
    assert sorted(p.name for p in work.iterdir()) == ["outside", "src"]


def test_truncated_data_file_is_refused(work):
    case = base_case("foreign-v3")
    path = _data(case)
    case.files[path] = case.files[path][: len(case.files[path]) // 2]
    outcome = outcome_of(case, work)
    assert outcome.kind == "refused" and path in outcome.detail, outcome.detail


def test_cli_refusal_is_an_error_line_and_exit_2(work, capsys):
    from pac_ros.cli import main

    case = base_case("foreign-v21")
    _info("data_path", "../{OUT}/data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")(case)
    fresh(work)
    src = materialize(case, work)
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(case.spec.to_dict()))
    assert main(["dataset", "import", str(src), "--format", "lerobot", "--out", str(work / "out"),
                 "--spec", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "info.json: data_path" in err and "must be a path inside the dataset" in err
    assert "Traceback" not in err and not (work / "out").exists()
