"""Mutated rosbag2/MCAP bags for the import's fuzz suite (test_fuzz_mcap_import.py) and its long run
(bench/fuzz_mcap_import.py): the one generator and the one property check both use.

A case is made from its number alone (``make_case(seeds, number, folder)``), so any case either run
reports is reproduced exactly. It starts from a small valid bag our exporter wrote (plain or
zstd-compressed chunks) and applies one to three mutations at three levels: the messages (fields,
stamps, log times, types, topics, schema text), the MCAP bytes (truncation, flipped bytes, record and
chunk lengths, encodings) and metadata.yaml (counts, types, file paths, compression, custom data).

``run_case`` imports one case and classifies the outcome: ``clean`` (the output validates), ``refused``
(a ``DatasetError`` with a message, nothing written), or a failure: ``crash`` (any other exception, an
output that does not validate, a refusal that left output), ``hang`` (past the time limit), ``memory``
(the process's peak memory grew past a limit), ``outside`` (a file changed outside the output).
"""
from __future__ import annotations

import copy
import json
import os
import random
import resource
import shutil
import signal
import struct
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from fuzz_tree import snapshot
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from pac_ros.data import DatasetError, DatasetWriter
from pac_ros.data.mcap import export_mcap, import_mcap, make_typestore
from pac_ros.data.validate import validate
from pac_ros.spec import Spec, default_spec

KINDS = ("clean", "refused", "crash", "hang", "memory", "outside")
FAILURES = ("crash", "hang", "memory", "outside")
MEMORY_LIMIT_BYTES = 1 << 30  # growth of the process's peak RSS one case may cause
MAGIC = b"\x89MCAP0\r\n"


def tiny_spec() -> Spec:
    d = copy.deepcopy(default_spec().to_dict())
    d["cameras"] = [{"name": "front", "width": 12, "height": 8, "encoding": "rgb8"}]
    return Spec.from_dict(d)


SPEC = tiny_spec()
STORE = make_typestore()
T = STORE.types


# ---- the seed bags ------------------------------------------------------------------------------
def write_seed_bags(root: Path, spec: Spec = SPEC) -> dict[str, Path]:
    """Two episodes of four steps (block poses, one 12x8 camera) exported plain and zstd-compressed."""
    rng = np.random.default_rng(0)
    src = root / "src"
    instr = spec.instructions()
    with DatasetWriter(src, spec, features=True) as w:
        for e in range(2):
            ep = w.begin_episode(instr[e], source="expert", seed=e)
            for t in range(4):
                ep.add_step(timestamp=t * spec.control_period, joint_positions=rng.uniform(spec.lower, spec.upper),
                            images={c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
                            action=rng.uniform(spec.lower, spec.upper), reward=0.5 if t < 3 else 0.0,
                            features=rng.normal(size=spec.feature_dim))
            w.commit(ep, terminal=e == 0)
    return {"plain": export_mcap(src, root / "plain"), "zstd": export_mcap(src, root / "zstd", compress=True)}


# ---- a bag's content, to mutate and write again --------------------------------------------------
@dataclass
class Conn:
    topic: str
    msgtype: str
    msgdef: str
    digest: str
    serialization_format: str = "cdr"


@dataclass
class BagContent:
    conns: list[Conn]
    messages: list[list[Any]]  # [connection index, log ns, raw CDR bytes]
    custom: dict[str, str] = field(default_factory=dict)
    compress: bool = False

    @classmethod
    def read(cls, bag: Path, compress: bool) -> "BagContent":
        with Reader(bag) as reader:
            conns = [Conn(c.topic, c.msgtype, c.msgdef.data, c.digest or "RIHS01_" + "0" * 64)
                     for c in reader.connections]
            index = {c.id: i for i, c in enumerate(reader.connections)}
            messages = [[index[c.id], ns, bytes(raw)] for c, ns, raw in reader.messages()]
            custom = dict(reader.storage.metadata.custom or {})
        return cls(conns, messages, custom, compress)

    def write(self, bag: Path) -> None:
        writer = Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        if self.compress:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        with writer:
            for key, value in self.custom.items():
                writer.set_custom_data(key, value)
            done = {}
            handles = []
            for c in self.conns:
                key = (c.topic, c.msgtype, c.serialization_format)
                if key not in done:  # rosbags refuses a repeated (topic, type, format)
                    done[key] = writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef, rihs01=c.digest,
                                                      serialization_format=c.serialization_format)
                handles.append(done[key])
            for i, ns, raw in self.messages:
                writer.write(handles[i], ns, raw)

    def topic_indices(self, rng: random.Random, topic_part: str = "") -> list[int]:
        return [i for i, m in enumerate(self.messages) if topic_part in self.conns[m[0]].topic]


# ---- message-level mutations ---------------------------------------------------------------------
BAD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 3.5e38, 1e-310]
BIG_U32 = [0, 1, 2**31 - 1, 2**32 - 1, 65536, 1_000_000]


def _mutate_fields(rng: random.Random, msgtype: str, msg: Any) -> str:
    """Change one field of a deserialised message in place; returns what it did."""
    if hasattr(msg, "header") and rng.random() < 0.3:
        stamp = msg.header.stamp
        choice = rng.choice(["neg", "max", "nanosec", "zero"])
        if choice == "neg":
            stamp.sec = -rng.randint(1, 2**31)
        elif choice == "max":
            stamp.sec = 2**31 - 1
        elif choice == "nanosec":
            stamp.nanosec = rng.choice([1_000_000_000, 2**32 - 1])
        else:
            stamp.sec, stamp.nanosec = 0, 0
        return f"header.stamp {choice}"
    if msgtype.endswith("JointState"):
        msg.position = np.array(msg.position)  # deserialised arrays are read-only views
        n = len(msg.position)
        choice = rng.choice(["value", "names", "length", "dup"])
        if choice == "value" and n:
            msg.position[rng.randrange(n)] = rng.choice(BAD_FLOATS)
        elif choice == "names":
            msg.name = [rng.choice(["", "nope", "x" * 1000]) for _ in msg.name]
        elif choice == "length":
            msg.position = np.resize(msg.position, max(0, n + rng.choice([-1, 1, 100])))
        else:
            msg.name = list(msg.name[:1]) * len(msg.name)
        return f"JointState {choice}"
    if msgtype.endswith("/Image"):
        choice = rng.choice(["width", "height", "step", "data", "encoding", "endian"])
        if choice in ("width", "height", "step"):
            setattr(msg, choice, rng.choice(BIG_U32))
        elif choice == "data":
            msg.data = msg.data[: rng.randrange(len(msg.data) + 1)] if rng.random() < 0.7 else np.concatenate(
                [msg.data, np.zeros(rng.randrange(1, 100), np.uint8)])
        elif choice == "encoding":
            msg.encoding = rng.choice(["", "16UC1", "32FC1", "bgr8", "mono8", "rgba8", "yuv422", "rgb8\x00x"])
        else:
            msg.is_bigendian = rng.choice([1, 255])
        return f"Image {choice}"
    if msgtype.endswith("PoseArray"):
        if rng.random() < 0.5 and msg.poses:
            msg.poses[rng.randrange(len(msg.poses))].position.x = rng.choice(BAD_FLOATS)
        else:
            msg.poses = msg.poses[: rng.randrange(len(msg.poses) + 1)]
        return "PoseArray"
    if msgtype.endswith("EpisodeEvent"):
        choice = rng.choice(["detail", "event", "index", "text"])
        if choice == "detail":
            msg.detail = rng.choice([
                "{", "[" * 100_000 + "]" * 100_000, "[1]", "null", "terminal", "truncated",
                json.dumps({"stamp_offset_s": "x"}), '{"stamp_offset_s": NaN}', '{"stamp_offset_s": 1e400}',
                json.dumps({"stamp_offset_s": [1]}), json.dumps({"stamp_offset_s": 1e300}),
                json.dumps({"stamp_offset_s": -1e9}), json.dumps({"seed": "x", "stamp_offset_s": 0}),
                json.dumps({"seed": 2**80}), json.dumps({"seed": 1.5}), json.dumps({"checkpoint": {"a": 1}}),
                json.dumps({"checkpoint": 7}), json.dumps({"length": "x"}), '{"seed": NaN}'])
        elif choice == "event":
            msg.event = rng.choice([0, 1, 2, 3, 4, 200, 255])
        elif choice == "index":
            msg.episode_index = rng.choice([2**32 - 1, 0, 7])
        else:
            setattr(msg, rng.choice(["source", "instruction"]), rng.choice(["", " ", "x" * 100_000, "é\u202e"]))
        return f"EpisodeEvent {choice}"
    if msgtype.endswith("Float32"):
        msg.data = rng.choice(BAD_FLOATS)
        return "Float32"
    if msgtype.endswith("String"):
        msg.data = rng.choice(["", "   ", "x" * 200_000, "\u202e\x00", "stack the red block"])
        return "String"
    return "no field change"


def mutate_fields(rng: random.Random, content: BagContent) -> str:
    if not content.messages:
        return "fields: no messages"
    picks = rng.sample(range(len(content.messages)), min(len(content.messages), rng.choice([1, 1, 2, 5])))
    done = []
    for i in picks:
        conn = content.conns[content.messages[i][0]]
        try:
            msg = STORE.deserialize_cdr(content.messages[i][2], conn.msgtype)
        except Exception:  # already garbled by an earlier mutation, or a type the store lacks
            continue
        what = _mutate_fields(rng, conn.msgtype, msg)
        try:
            content.messages[i][2] = bytes(STORE.serialize_cdr(msg, conn.msgtype))
        except (OverflowError, ValueError, struct.error):  # e.g. 1e308 in a float32 field: no such message
            continue
        done.append(f"{conn.topic}: {what}")
    return "fields " + "; ".join(done)


OTHER_TYPES = ["std_msgs/msg/String", "std_msgs/msg/Float32", "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image",
               "geometry_msgs/msg/PoseArray", "pac_ros/msg/EpisodeEvent", "std_msgs/msg/Bool", "foo_msgs/msg/Bar",
               "sensor_msgs/msg/CompressedImage", "not a type", ""]


def retype(rng: random.Random, content: BagContent) -> str:
    conn = rng.choice(content.conns)
    new = rng.choice(OTHER_TYPES)
    old, conn.msgtype = conn.msgtype, new
    if new in STORE.fielddefs and rng.random() < 0.7:
        conn.msgdef = STORE.generate_msgdef(new, ros_version=2)[0]
    return f"retype {conn.topic} {old} -> {new!r}"


def swap_topics(rng: random.Random, content: BagContent) -> str:
    a, b = rng.sample(content.conns, 2)
    a.topic, b.topic = b.topic, a.topic
    return f"swap topics {a.topic} <-> {b.topic}"


def rename_topic(rng: random.Random, content: BagContent) -> str:
    conn = rng.choice(content.conns)
    old, conn.topic = conn.topic, rng.choice(["/joint_states", "/x/command", "/../../etc", "/" + "a" * 300, "/é"])
    return f"rename topic {old} -> {conn.topic}"


def schema_text(rng: random.Random, content: BagContent) -> str:
    conn = rng.choice(content.conns)
    lines = conn.msgdef.splitlines()
    choice = rng.choice(["empty", "garbage", "drop", "retype", "rename", "idl", "unknown"])
    if choice == "empty":
        conn.msgdef = ""
    elif choice == "garbage":
        conn.msgdef = rng.choice(["%%%", "float64[ x", "int32 a\nint32 a", "\x00" * 10, "=" * 80 + "\nMSG: "])
    elif choice == "drop" and lines:
        del lines[rng.randrange(len(lines))]
        conn.msgdef = "\n".join(lines)
    elif choice == "retype":
        conn.msgdef = conn.msgdef.replace("float64", "float32", 1).replace("uint32", "uint8", 1)
    elif choice == "rename" and lines:
        i = rng.randrange(len(lines))
        lines[i] = lines[i] + "_renamed" if lines[i].strip() and not lines[i].startswith(("=", "MSG")) else lines[i]
        conn.msgdef = "\n".join(lines)
    elif choice == "idl":
        conn.msgdef = "=" * 80 + "\nIDL: x\nmodule x { struct y { long z; }; };"
    else:
        conn.msgdef = "foo_msgs/Bar thing\n" + conn.msgdef
    return f"schema {conn.topic} {choice}"


def serialization(rng: random.Random, content: BagContent) -> str:
    conn = rng.choice(content.conns)
    conn.serialization_format = rng.choice(["ros1", "json", "CDR", ""])
    return f"serialization {conn.topic} {conn.serialization_format!r}"


def log_times(rng: random.Random, content: BagContent) -> str:
    msgs = content.messages
    choice = rng.choice(["reverse", "shuffle", "zero", "huge", "max", "same"])
    if choice == "reverse":
        times = [m[1] for m in msgs][::-1]
        for m, t in zip(msgs, times):
            m[1] = t
    elif choice == "shuffle":
        times = [m[1] for m in msgs]
        rng.shuffle(times)
        for m, t in zip(msgs, times):
            m[1] = t
    else:
        for m in rng.sample(msgs, max(1, len(msgs) // rng.choice([1, 4, 40]))):
            m[1] = {"zero": 0, "huge": 2**63 + rng.randrange(2**20), "max": 2**64 - 1, "same": msgs[0][1]}[choice]
    return f"log times {choice}"


def stamps(rng: random.Random, content: BagContent) -> str:
    """Header stamps of one topic (or all) reversed, negative or far off."""
    choice = rng.choice(["reverse", "negative", "future", "shift"])
    topic = rng.choice([c.topic for c in content.conns])
    rows = [m for m in content.messages if rng.random() < 0.5 or content.conns[m[0]].topic == topic]
    decoded = []
    for m in rows:
        conn = content.conns[m[0]]
        try:
            msg = STORE.deserialize_cdr(m[2], conn.msgtype)
        except Exception:
            continue
        if hasattr(msg, "header"):
            decoded.append((m, conn.msgtype, msg))
    secs = [(msg.header.stamp.sec, msg.header.stamp.nanosec) for *_, msg in decoded]
    if choice == "reverse":
        secs = secs[::-1]
    elif choice == "negative":
        secs = [(-s - 1, n) for s, n in secs]
    elif choice == "future":
        secs = [(s + rng.choice([10**6, 2**30, 2**31 - 1 - s]), n) for s, n in secs]
    else:
        secs = [(s + rng.randint(-5, 5), n) for s, n in secs]
    for (m, msgtype, msg), (s, n) in zip(decoded, secs):
        msg.header.stamp.sec = max(-(2**31), min(2**31 - 1, s))
        msg.header.stamp.nanosec = n
        try:
            m[2] = bytes(STORE.serialize_cdr(msg, msgtype))
        except (OverflowError, ValueError, struct.error):
            continue
    return f"stamps {choice} ({len(decoded)} messages)"


def drop_or_repeat(rng: random.Random, content: BagContent) -> str:
    choice = rng.choice(["drop_topic", "drop_some", "repeat"])
    if choice == "drop_topic":
        victim = rng.randrange(len(content.conns))
        content.messages = [m for m in content.messages if m[0] != victim]
        return f"drop all of {content.conns[victim].topic}"
    if choice == "drop_some":
        content.messages = [m for m in content.messages if rng.random() > 0.2]
        return "drop 20% of messages"
    extra = [list(m) for m in rng.sample(content.messages, min(len(content.messages), 10))]
    content.messages.extend(extra)
    content.messages.sort(key=lambda m: m[1])
    return "repeat 10 messages"


def garble_raw(rng: random.Random, content: BagContent) -> str:
    m = rng.choice(content.messages)
    raw = bytearray(m[2])
    choice = rng.choice(["truncate", "flip", "extend", "length"])
    if choice == "truncate":
        raw = raw[: rng.randrange(len(raw) + 1)]
    elif choice == "flip" and raw:
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif choice == "extend":
        raw += bytes(rng.randrange(1, 64))
    elif len(raw) >= 12:  # a sequence or string length in the body declared huge
        pos = rng.randrange(4, len(raw) - 3) & ~3
        raw[pos:pos + 4] = struct.pack("<I", rng.choice([2**31, 2**32 - 1, 10**7]))
    m[2] = bytes(raw)
    return f"raw {content.conns[m[0]].topic} {choice}"


CONTENT_MUTATIONS: list[Callable[[random.Random, BagContent], str]] = [
    mutate_fields, mutate_fields, mutate_fields, retype, swap_topics, rename_topic, schema_text, serialization,
    log_times, stamps, stamps, drop_or_repeat, garble_raw, garble_raw]


# ---- byte-level mutations of the .mcap file ------------------------------------------------------
def record_offsets(data: bytes) -> list[int]:
    """Offsets of the top-level records of a well-formed MCAP file (opcode byte, then a uint64 length)."""
    out, pos = [], len(MAGIC)
    while pos + 9 <= len(data) - len(MAGIC):
        out.append(pos)
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        pos += 9 + length
    return out


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    buf = bytearray(data)
    choice = rng.choice(["truncate", "flip", "flip", "record_length", "chunk_sizes", "zero", "insert", "strings"])
    if choice == "truncate":
        cut = rng.randrange(len(buf))
        return bytes(buf[:cut]), f"truncate at {cut} of {len(buf)}"
    if choice == "flip":
        n = rng.choice([1, 1, 2, 8, 64])
        for _ in range(n):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return bytes(buf), f"flip {n} bits"
    offsets = record_offsets(data)
    if choice == "record_length" and offsets:
        pos = rng.choice(offsets)
        size = rng.choice([2**63 - 1, 2**64 - 1, 2**40, 2 * len(buf), len(buf), 0, 1, 21, 39])
        struct.pack_into("<Q", buf, pos + 1, size)
        return bytes(buf), f"record (op {buf[pos]:#x}) at {pos} length -> {size}"
    chunks = [p for p in offsets if buf[p] == 0x06]
    if choice == "chunk_sizes" and chunks:
        pos = rng.choice(chunks)
        which = rng.choice(["uncompressed", "compressed", "start_time"])
        size = rng.choice([2**63 - 1, 2**40, 0, 1, 10**9])
        if which == "uncompressed":
            struct.pack_into("<Q", buf, pos + 9 + 16, size)
        elif which == "start_time":
            struct.pack_into("<Q", buf, pos + 9, size)
        else:
            (clen,) = struct.unpack_from("<I", buf, pos + 9 + 28)
            struct.pack_into("<Q", buf, pos + 9 + 32 + clen, size)
        return bytes(buf), f"chunk at {pos} {which} -> {size}"
    if choice == "zero":
        start = rng.randrange(len(buf))
        end = min(len(buf), start + rng.choice([1, 8, 64, 4096]))
        buf[start:end] = bytes(end - start)
        return bytes(buf), f"zero {start}:{end}"
    if choice == "insert":
        start = rng.randrange(len(buf))
        piece = buf[start:start + rng.choice([1, 9, 100, 1000])]
        return bytes(buf[:start] + piece + buf[start:]), f"repeat {len(piece)} bytes at {start}"
    old, new = rng.choice([(b"ros2msg", b"ros2xyz"), (b"ros2msg", b"ros2idl"), (b"cdr", b"xdr"), (b"zstd", b"lz4\x00"),
                           (b"ros2", b"ros1"), (b"sensor_msgs/msg/JointState", b"sensor_msgs/msg/JointStatf")])
    count = data.count(old)
    if not count:
        return bytes(buf), f"no {old!r} to replace"
    nth = rng.randrange(count)
    pos = -1
    for _ in range(nth + 1):
        pos = data.index(old, pos + 1)
    buf[pos:pos + len(old)] = new
    return bytes(buf), f"replace {old!r} #{nth} with {new!r}"


# ---- metadata.yaml mutations ---------------------------------------------------------------------
def mutate_metadata(rng: random.Random, bag: Path) -> str:
    path = bag / "metadata.yaml"
    info = yaml.safe_load(path.read_text())
    meta = info["rosbag2_bagfile_information"]
    topics = meta["topics_with_message_count"]
    choice = rng.choice(["count", "total", "type", "paths", "fifo", "compression", "garbage", "custom", "version",
                         "deep"])
    if choice == "count":
        t = rng.choice(topics)
        t["message_count"] = rng.choice([0, t["message_count"] + 1, max(0, t["message_count"] - 1), 2**63])
        what = f"{t['topic_metadata']['name']} count -> {t['message_count']}"
    elif choice == "total":
        meta["message_count"] = rng.choice([0, 1, 2**64])
        what = f"total -> {meta['message_count']}"
    elif choice == "type":
        t = rng.choice(topics)
        t["topic_metadata"]["type"] = rng.choice(OTHER_TYPES)
        what = f"{t['topic_metadata']['name']} type -> {t['topic_metadata']['type']!r}"
    elif choice == "paths":
        meta["relative_file_paths"] = rng.choice([["../plain/plain.mcap"], ["/dev/zero"], [], ["nope.mcap"],
                                                  meta["relative_file_paths"] * 2, [".."], [""], [5]])
        what = f"paths -> {meta['relative_file_paths']}"
    elif choice == "fifo":
        os.mkfifo(bag / "pipe.mcap")
        meta["relative_file_paths"] = ["pipe.mcap"]
        what = "a FIFO as the storage file"
    elif choice == "compression":
        meta["compression_mode"], meta["compression_format"] = rng.choice([("file", "zstd"), ("message", "zstd"),
                                                                           ("storage", "zstd"), ("file", "lz4")])
        what = f"compression {meta['compression_mode']}/{meta['compression_format']}"
    elif choice == "garbage":
        text = path.read_text()
        path.write_text(rng.choice([text[: rng.randrange(len(text))], "{", "- 1\n- 2", "", "\t\x00"]))
        return "metadata garbage"
    elif choice == "custom":
        meta.setdefault("custom_data", {})["pac_ros.export"] = rng.choice([
            "{", "[1, 2]", "null", json.dumps({"commander_topic": 5}), json.dumps({"commander_topic": "/joint_states"}),
            json.dumps({"commander_topic": "/nope/command"}), json.dumps({"commander_topic": None})])
        what = f"custom -> {meta['custom_data']['pac_ros.export']}"
    elif choice == "version":
        meta["version"] = rng.choice([10, "x", None, -1])
        what = f"version -> {meta['version']!r}"
    else:
        path.write_text("a: " + "[" * 50_000 + "]" * 50_000)
        return "metadata deeply nested"
    path.write_text(yaml.safe_dump(info))
    return f"metadata {what}"


# ---- one case --------------------------------------------------------------------------------------
def make_case(seeds: dict[str, Path], number: int, folder: Path) -> tuple[Path, list[str]]:
    """Case ``number``: a mutated copy of a seed bag at ``folder/bag``, and what was done to it."""
    rng = random.Random(number)
    name = rng.choice(sorted(seeds))
    bag = folder / "bag"
    done = [f"seed {name}"]
    level = rng.random()
    if level < 0.45:
        content = BagContent.read(seeds[name], compress=name == "zstd")
        for _ in range(rng.choice([1, 1, 2, 3])):
            done.append(rng.choice(CONTENT_MUTATIONS)(rng, content))
        content.write(bag)
    else:
        shutil.copytree(seeds[name], bag)
    if level >= 0.45 and level < 0.85 or rng.random() < 0.1:
        mcap = bag / f"{seeds[name].name}.mcap" if (bag / f"{seeds[name].name}.mcap").exists() else bag / "bag.mcap"
        data = mcap.read_bytes()
        for _ in range(rng.choice([1, 1, 2])):
            data, what = mutate_bytes(rng, data)
            done.append(what)
        mcap.write_bytes(data)
    if level >= 0.85 or rng.random() < 0.1:
        done.append(mutate_metadata(rng, bag))
    return bag, done


class Hang(BaseException):
    """The case ran past its time limit (a BaseException, so no ``except Exception`` swallows it)."""


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@dataclass
class Outcome:
    kind: str
    detail: str


def run_case(bag: Path, out: Path, spec: Spec = SPEC, seconds: float = 20.0, watch: Path | None = None) -> Outcome:
    """Import ``bag`` into ``out`` and check the property (module docstring). ``watch``: the folder
    (default: ``out``'s parent) where nothing but ``out`` may change. Python's temporary folder is
    pointed into it for the import, so temporary files count as writes outside too."""
    watch = watch or out.parent
    private_tmp = watch / "tmp"
    private_tmp.mkdir(exist_ok=True)
    before = snapshot(watch, out)
    peak = peak_rss_bytes()
    saved_tmp, tempfile.tempdir = tempfile.tempdir, str(private_tmp)
    try:
        with time_limit(seconds):
            try:
                report = import_mcap(bag, out, spec)
            except DatasetError as exc:
                outcome = Outcome("refused", str(exc))
            else:
                checked = validate(out)
                outcome = Outcome("clean", f"{report.episodes} episodes") if checked.ok else Outcome(
                    "crash", f"the output does not validate: {checked.problems[:3]}")
    except Hang as exc:
        outcome = Outcome("hang", str(exc))
    except Exception:
        outcome = Outcome("crash", traceback.format_exc(limit=-6))
    finally:
        tempfile.tempdir = saved_tmp
    if outcome.kind == "refused" and (not outcome.detail.strip() or out.exists()):
        outcome = Outcome("crash", f"refusal left {out} behind or said nothing: {outcome.detail!r}")
    changed = _diff(before, snapshot(watch, out))
    if changed and outcome.kind != "hang":  # a hang may be stopped part-way, its staging folder left
        outcome = Outcome("outside", f"changed outside {out}: {changed[:5]} ({outcome.kind}: {outcome.detail[:200]})")
    if peak_rss_bytes() - peak > MEMORY_LIMIT_BYTES:
        outcome = Outcome("memory", f"peak RSS grew by {(peak_rss_bytes() - peak) >> 20} MiB ({outcome.kind})")
    return outcome


def _diff(a: dict, b: dict) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
