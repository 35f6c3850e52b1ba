"""The MCAP import takes its bag as untrusted input: mutated bags either import cleanly (the output
validates) or are refused with a DatasetError that names the problem, and nothing is written on a
refusal. The generator and the property are in mcap_fuzz.py, shared with bench/fuzz_mcap_import.py
(the long run); below them, one regression test per distinct failure the fuzzer found or the
checks were built for."""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import mcap_fuzz
import numpy as np
import pytest
import yaml
from mcap_fuzz import SPEC, STORE, BagContent, run_case

from pac_ros.data import DatasetError, mcap_check
from pac_ros.data.mcap import import_mcap

FUZZ_CASES = 80  # a few seconds; bench/fuzz_mcap_import.py runs 10,000 and more


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return mcap_fuzz.write_seed_bags(tmp_path_factory.mktemp("seeds"))


def case_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def refused(bag: Path, out: Path, match: str) -> str:
    """Import ``bag``; it must be refused with ``match`` in the message and leave nothing behind."""
    parent = set(os.listdir(out.parent))
    with pytest.raises(DatasetError, match=match) as info:
        import_mcap(bag, out, SPEC)
    assert not out.exists() and set(os.listdir(out.parent)) == parent
    return str(info.value)


def rewritten(seed: Path, folder: Path, change) -> Path:
    """The seed bag with its content changed by ``change(content)``, written again."""
    content = BagContent.read(seed, compress=False)
    change(content)
    content.write(folder / "bag")
    return folder / "bag"


def edit_messages(content: BagContent, topic: str, edit, which=None) -> None:
    """Deserialise the messages on ``topic`` (all, or the indices in ``which``), ``edit(msg)``, serialise."""
    n = 0
    for m in content.messages:
        conn = content.conns[m[0]]
        if conn.topic != topic:
            continue
        if which is None or n in which:
            msg = STORE.deserialize_cdr(m[2], conn.msgtype)
            edit(msg)
            m[2] = bytes(STORE.serialize_cdr(msg, conn.msgtype))
        n += 1


def test_seed_bags_import_cleanly(seeds, tmp_path):
    for name, bag in seeds.items():
        outcome = run_case(bag, case_folder(tmp_path, name) / "out")
        assert outcome.kind == "clean", (name, outcome)


def test_fuzzed_bags_import_cleanly_or_are_refused_clearly(seeds, tmp_path):
    kinds = {kind: 0 for kind in mcap_fuzz.KINDS}
    failures = []
    for number in range(FUZZ_CASES):
        folder = case_folder(tmp_path, f"case{number}")
        bag, done = mcap_fuzz.make_case(seeds, number, folder)
        outcome = run_case(bag, folder / "out", seconds=20.0, watch=folder)
        kinds[outcome.kind] += 1
        if outcome.kind in mcap_fuzz.FAILURES:
            failures.append(f"case {number} ({'; '.join(done)}): {outcome.kind}: {outcome.detail}")
    assert not failures, "\n\n".join(failures)
    assert kinds["clean"] >= FUZZ_CASES // 10 and kinds["refused"] >= FUZZ_CASES // 2, kinds


def test_make_case_is_deterministic(seeds, tmp_path):
    a, done_a = mcap_fuzz.make_case(seeds, 7, case_folder(tmp_path, "a"))
    b, done_b = mcap_fuzz.make_case(seeds, 7, case_folder(tmp_path, "b"))
    assert done_a == done_b
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        if p.name != "metadata.yaml":  # it names the bag's folder
            assert p.read_bytes() == (b / p.name).read_bytes()


# ---- regressions: each a failure the fuzzer found before the checks -----------------------------
def test_custom_data_that_is_not_an_object_is_refused(seeds, tmp_path):
    """Was an AttributeError ('list' object has no attribute 'get')."""
    for i, text in enumerate(["[1, 2]", "{", json.dumps({"commander_topic": 5})]):
        folder = case_folder(tmp_path, f"c{i}")
        bag = rewritten(seeds["plain"], folder, lambda c: c.custom.update({"pac_ros.export": text}))
        refused(bag, folder / "out", r"custom_data\.pac_ros\.export: not our exporter's record")


def test_a_fifo_as_storage_file_is_refused_without_waiting(seeds, tmp_path):
    """Was a hang: rosbags opened the named FIFO and waited for a writer."""
    bag = tmp_path / "bag"
    shutil.copytree(seeds["plain"], bag)
    os.mkfifo(bag / "pipe.mcap")
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    for paths, match in [(["pipe.mcap"], "missing, not a regular file or outside the bag"),
                         (["../plain/plain.mcap"], "is not a file name inside the bag directory"),
                         (["/dev/zero"], "is not a file name inside the bag directory")]:
        info["rosbag2_bagfile_information"]["relative_file_paths"] = paths
        (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
        refused(bag, tmp_path / "out", r"relative_file_paths: .*" + match)


@pytest.mark.parametrize("detail, field", [
    ('{"stamp_offset_s": NaN}', "stamp_offset_s"), ('{"stamp_offset_s": "x"}', "stamp_offset_s"),
    ('{"stamp_offset_s": -5.0}', "stamp_offset_s"), ('{"stamp_offset_s": 1e300}', "stamp_offset_s"),
    ('{"seed": "x"}', "seed"), ('{"seed": 1.5}', "seed"), ('{"seed": 1e400}', "seed"),
    ('{"seed": 100000000000000000000000}', "seed"), ('{"checkpoint": {"a": 1}}', "checkpoint")])
def test_start_event_detail_is_checked(seeds, tmp_path, detail, field):
    """A NaN time shift came out as 'reading the bag failed: cannot convert float NaN to integer' (the
    replay's own ValueError passed off as a damaged file); a seed or checkpoint of another type went
    into the index unchecked. Now each is refused naming the event field."""
    START = STORE.types["pac_ros/msg/EpisodeEvent"].START

    def edit(msg):
        if msg.event == START:
            msg.detail = detail

    bag = rewritten(seeds["plain"], tmp_path, lambda c: edit_messages(c, "/pac/episode_events", edit))
    refused(bag, tmp_path / "out", rf"/pac/episode_events START of episode 0: detail\.{field} is")


def test_deeply_nested_json_or_yaml_is_a_clear_error(seeds, tmp_path):
    """Nested past the recursion limit: JSON in an event detail is no detail (not a RecursionError);
    metadata.yaml is refused as invalid YAML, naming the file."""
    STOP = STORE.types["pac_ros/msg/EpisodeEvent"].STOP

    def edit(msg):
        if msg.event == STOP:
            msg.detail = "[" * 100_000 + "]" * 100_000

    bag = rewritten(seeds["plain"], case_folder(tmp_path, "a"), lambda c: edit_messages(c, "/pac/episode_events", edit))
    assert import_mcap(bag, tmp_path / "a" / "out", SPEC).episodes == 2

    folder = case_folder(tmp_path, "b")
    bag = rewritten(seeds["plain"], folder, lambda c: None)
    (bag / "metadata.yaml").write_text("a: " + "[" * 5_000 + "]" * 5_000)
    refused(bag, folder / "out", r"metadata\.yaml: not valid YAML")


# ---- the checks of declared lengths, schemas, counts and stamps ----------------------------------
def record_offsets(bag: Path, opcode: int) -> tuple[Path, bytearray, list[int]]:
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    return mcap, data, [p for p in mcap_fuzz.record_offsets(bytes(data)) if data[p] == opcode]


@pytest.mark.parametrize("length", [2**63 - 1, 2**40, 10**9])
def test_huge_declared_record_length_is_refused_before_reading(seeds, tmp_path, length):
    bag = rewritten(seeds["plain"], tmp_path, lambda c: None)
    mcap, data, chunks = record_offsets(bag, mcap_check.OP_CHUNK)
    struct.pack_into("<Q", data, chunks[0] + 1, length)
    mcap.write_bytes(data)
    refused(bag, tmp_path / "out", rf"{mcap.name}: record at byte {chunks[0]}: "
                                   rf"(opcode 0x06 declares {length} bytes|chunk record of {length} bytes, over)")


def test_chunk_that_decompresses_past_its_declared_size_is_refused(seeds, tmp_path):
    """A zstd chunk declared smaller than it decompresses to (a decompression bomb's shape)."""
    bag = tmp_path / "bag"
    shutil.copytree(seeds["zstd"], bag)
    mcap, data, chunks = record_offsets(bag, mcap_check.OP_CHUNK)
    struct.pack_into("<Q", data, chunks[0] + 9 + 16, 100)
    mcap.write_bytes(data)
    refused(bag, tmp_path / "out", r"chunk does not decompress \(zstd\) to its declared 100 bytes")


def test_message_over_the_size_limit_is_refused(seeds, tmp_path, monkeypatch):
    monkeypatch.setattr(mcap_check, "MAX_MESSAGE_BYTES", 200)  # the camera's images are bigger
    refused(seeds["plain"], tmp_path / "out", r"a message on /camera/front/image_raw of \d+ bytes, over the 200-byte")


def test_schema_that_differs_from_the_imports_is_refused(seeds, tmp_path):
    def float32_positions(content):
        conn = next(c for c in content.conns if c.topic == "/joint_states")
        conn.msgdef = conn.msgdef.replace("float64[] position", "float32[] position")

    bag = rewritten(seeds["plain"], case_folder(tmp_path, "a"), float32_positions)
    refused(bag, tmp_path / "a" / "out", r"topic /joint_states \(sensor_msgs/msg/JointState\): its schema defines "
                                         r"sensor_msgs/msg/JointState differently: field 2 is float32\[\] position, "
                                         r"the import's is float64\[\] position")

    def garbage(content):
        next(c for c in content.conns if c.topic == "/joint_states").msgdef = "float64[ x"

    bag = rewritten(seeds["plain"], case_folder(tmp_path, "b"), garbage)
    refused(bag, tmp_path / "b" / "out", r"topic /joint_states .*its schema does not parse")


def test_schema_as_ros2_bag_record_writes_it_is_accepted(seeds, tmp_path):
    """rosbag2 records the .msg text with its comments and dependencies: the same fields, accepted."""
    share = Path(__file__).resolve().parent.parent / "msg"
    sep = "\n" + "=" * 80 + "\nMSG: "
    header = "# Standard metadata\nbuiltin_interfaces/Time stamp  # the time\nstring frame_id\n"
    text = ("# joints\nstd_msgs/Header header\n\nstring[] name   # names\nfloat64[] position\nfloat64[] velocity\n"
            f"float64[] effort{sep}std_msgs/Header\n{header}{sep}builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n")
    assert share.is_dir()

    def as_recorded(content):
        for c in content.conns:
            if c.msgtype == "sensor_msgs/msg/JointState":
                c.msgdef = text

    bag = rewritten(seeds["plain"], tmp_path, as_recorded)
    assert import_mcap(bag, tmp_path / "out", SPEC).episodes == 2


def test_declared_counts_that_disagree_with_the_storage_are_refused(seeds, tmp_path):
    bag = rewritten(seeds["plain"], tmp_path, lambda c: None)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    for t in info["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/joint_states":
            t["message_count"] += 1
    (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
    refused(bag, tmp_path / "out", r"topic /joint_states: the bag's metadata declares 9 messages, its storage "
                                   r"holds 8 of type sensor_msgs/msg/JointState")


def test_metadata_type_other_than_the_storages_is_refused(seeds, tmp_path):
    """metadata.yaml says JointState, the MCAP channel says String: rosbags would skip the messages."""
    def retype(content):
        next(c for c in content.conns if c.topic == "/joint_states").msgtype = "std_msgs/msg/String"

    bag = rewritten(seeds["plain"], tmp_path, retype)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    for t in info["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/joint_states":
            t["topic_metadata"]["type"] = "sensor_msgs/msg/JointState"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
    refused(bag, tmp_path / "out", r"topic /joint_states: the bag's metadata declares 8 messages, its storage holds 0")


def test_per_file_or_per_message_compression_is_refused(seeds, tmp_path):
    bag = rewritten(seeds["plain"], tmp_path, lambda c: None)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    info["rosbag2_bagfile_information"].update(compression_mode="file", compression_format="zstd")
    (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
    refused(bag, tmp_path / "out", r"compression_mode: 'file': per-file or per-message compression is not read")


def test_invalid_header_stamps_are_skipped_and_reported(seeds, tmp_path):
    """A negative stamp or nanoseconds past a second: that message is skipped, like an undecodable one,
    and the report says how many; a topic with no usable message is refused."""
    def bad(msg):
        msg.header.stamp.sec = -3

    bag = rewritten(seeds["plain"], case_folder(tmp_path, "a"),
                    lambda c: edit_messages(c, "/sim/block_poses", bad, which={5}))
    report = import_mcap(bag, tmp_path / "a" / "out", SPEC)
    assert "1 messages on /sim/block_poses had an invalid header stamp (before 1970, or nanosec >= 1e9) and were " \
           "skipped" in report.notes

    def nanosec(msg):
        msg.header.stamp.nanosec = 1_000_000_000

    bag = rewritten(seeds["plain"], case_folder(tmp_path, "b"), lambda c: edit_messages(c, "/joint_states", nanosec))
    refused(bag, tmp_path / "b" / "out", r"none of the 8 messages on /joint_states could be used: 0 could not be "
                                         r"deserialised, 8 had an invalid header stamp")


def test_bad_message_fields_are_counted_rejections(seeds, tmp_path):
    """What the live recorder rejects one message at a time stays a counted rejection in the report:
    NaN joint positions, an image whose data length disagrees with its size, an enormous image."""
    def nan(msg):
        msg.position = np.array(msg.position)
        msg.position[0] = np.nan

    def short(msg):
        msg.data = msg.data[:-1]

    def enormous(msg):
        msg.width = msg.height = 2**31 - 1

    def change(content):
        edit_messages(content, "/joint_states", nan, which={1})
        edit_messages(content, "/camera/front/image_raw", short, which={2})
        edit_messages(content, "/camera/front/image_raw", enormous, which={6})

    bag = rewritten(seeds["plain"], tmp_path, change)
    notes = "\n".join(import_mcap(bag, tmp_path / "out", SPEC).notes)
    assert "1 of 8 messages on /joint_states rejected, first: non-finite joint positions" in notes
    assert "2 of 8 messages on /camera/front/image_raw rejected, first: image data has 287 bytes, expected " \
           "height*step = 8*36 = 288" in notes


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_chunk_decompression_stops_at_the_declared_size(compression):
    """A chunk is decompressed at most one byte past its declared size, whatever it would expand to."""
    from lz4.frame import compress as lz4_compress
    from rosbags.rosbag2 import storage_mcap

    raw = bytes(10_000_000)
    data = storage_mcap.zstd.compress(raw) if compression == "zstd" else lz4_compress(raw)
    assert len(data) < 50_000  # a 200-fold expansion at least
    assert mcap_check._decompress(data, compression, len(raw)) == raw
    short = mcap_check._decompress(data, compression, 1000)
    assert short is None or len(short) <= 1001
