"""A rosbag2 directory checked as untrusted input before ``rosbags`` reads it (ROS-free).

``check_bag`` reads ``metadata.yaml`` (size-limited, safe YAML) and checks what the import and
``rosbags`` take from it: the storage files are plain names of regular files inside the bag, the
topics' names, types, serialisation (CDR) and counts are well formed, and no per-file or
per-message compression (rosbags would decompress those without a size limit; MCAP chunk
compression is fine). Each MCAP file is then walked record by record: every declared length must
fit in what holds it, a chunk must decompress to exactly its declared size (at most
``MAX_CHUNK_BYTES``), a message record may hold at most ``MAX_MESSAGE_BYTES``, schema encodings
must be ones rosbags knows and the summary's chunk index must point at the chunks found. So no
length read from the file makes anything allocate more than the file or a limit allows. Problems
raise ``DatasetError`` naming the file, the record (offset) or topic, and the field.
"""
from __future__ import annotations

import json
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml
from lz4.frame import LZ4FrameDecompressor
from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import storage_mcap
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.store import Typestore

from pac_ros.data.format import DatasetError
from pac_ros.data.mcap_layout import CUSTOM_DATA_KEY
from pac_ros.data.messages import MAX_IMAGE_BYTES

MAX_METADATA_BYTES = 4 * 1024 * 1024
MAX_CHUNK_BYTES = 256 * 1024 * 1024  # uncompressed; rosbags holds one chunk at a time per file
MAX_MESSAGE_BYTES = MAX_IMAGE_BYTES + 1024 * 1024  # the largest image we convert, plus its header
MCAP_MAGIC = b"\x89MCAP0\r\n"
SCHEMA_ENCODINGS = ("ros2msg", "ros2idl", "omgidl", "")  # what rosbags reads
COMPRESSIONS = ("", "zstd", "lz4")
_FOOTER = 37  # opcode, length, summary start, summary offset start, crc, magic

OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_CHUNK_INDEX = 1, 2, 3, 4, 5, 6, 8


@dataclass
class CheckedBag:
    """What check_bag read: the topics metadata.yaml declares and our exporter's record."""

    topics: dict[str, dict[str, Any]]  # name -> {"type": str, "count": int}
    export: dict[str, Any]  # our exporter's custom data (empty if another tool wrote the bag)
    storage: str
    files: list[Path] = field(default_factory=list)


def check_bag(bag: Path) -> CheckedBag:
    """Check a rosbag2 directory or a bare .mcap file (module docstring); DatasetError naming the problem."""
    meta_path = bag / "metadata.yaml"
    if _regular(bag) and bag.suffix == ".mcap":  # a bare MCAP file, without its directory
        check_mcap_file(bag)
        return CheckedBag({}, {}, "mcap", [bag])
    if not bag.is_dir():
        raise DatasetError(f"{bag}: not a rosbag2 directory (nor an .mcap file)")
    if not _regular(meta_path):
        raise DatasetError(f"{bag}: not a readable rosbag2 bag: it has no metadata.yaml")
    size = meta_path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise DatasetError(f"{meta_path}: {size} bytes, over the {MAX_METADATA_BYTES}-byte limit for bag metadata")
    try:
        info = yaml.safe_load(meta_path.read_bytes().decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise DatasetError(f"{meta_path}: not valid YAML: {str(exc)[:300]}") from None
    meta = info.get("rosbag2_bagfile_information") if isinstance(info, dict) else None
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: no rosbag2_bagfile_information mapping")
    where = f"{meta_path}: rosbag2_bagfile_information"
    version = meta.get("version")
    if not _int(version) or not 1 <= version <= 9:
        raise DatasetError(f"{where}.version: {version!r} is not a rosbag2 version this reader knows (1 to 9)")
    storage = meta.get("storage_identifier")
    if storage not in ("mcap", "sqlite3"):
        raise DatasetError(f"{where}.storage_identifier: {storage!r}; expected 'mcap' or 'sqlite3'")
    mode = str(meta.get("compression_mode") or "").lower()
    if mode not in ("", "none", "storage"):  # storage: MCAP chunk compression, which check_mcap_file bounds
        raise DatasetError(f"{where}.compression_mode: {meta.get('compression_mode')!r}: per-file or per-message "
                           "compression is not read; decompress the bag first (ros2 bag convert), or record it "
                           "with MCAP chunk compression")
    files = _storage_files(bag, meta.get("relative_file_paths"), f"{where}.relative_file_paths")
    topics = _topics(meta.get("topics_with_message_count"), f"{where}.topics_with_message_count")
    for name in ("message_count",):
        if not _int(meta.get(name)) or meta[name] < 0:
            raise DatasetError(f"{where}.{name}: {meta.get(name)!r} is not a count")
    export = _export_info(meta.get("custom_data"), f"{where}.custom_data")
    if storage == "mcap":
        for path in files:
            check_mcap_file(path)
    return CheckedBag(topics, export, storage, files)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _storage_files(bag: Path, names: Any, where: str) -> list[Path]:
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{where}: {names!r}; expected a list of file names")
    files = []
    root = bag.resolve()
    for name in names:
        # rosbags opens bag / the name's last part, so only a plain name inside the bag is accepted
        if not isinstance(name, str) or not name or PurePath(name).name != name or name in (".", ".."):
            raise DatasetError(f"{where}: {name!r} is not a file name inside the bag directory")
        path = bag / name
        if not _regular(path) or root not in path.resolve().parents:
            raise DatasetError(f"{where}: {path} is missing, not a regular file or outside the bag directory")
        files.append(path)
    if len(set(files)) != len(files):
        raise DatasetError(f"{where}: a file is named more than once: {names}")
    return files


def _topics(entries: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: expected a list, got {type(entries).__name__}")
    topics: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        meta = entry.get("topic_metadata") if isinstance(entry, dict) else None
        if not isinstance(meta, dict):
            raise DatasetError(f"{where}[{i}]: no topic_metadata mapping")
        name, msgtype, fmt = meta.get("name"), meta.get("type"), meta.get("serialization_format")
        count = entry.get("message_count")
        if not isinstance(name, str) or not name.startswith("/"):
            raise DatasetError(f"{where}[{i}].topic_metadata.name: {name!r} is not a topic name")
        if not isinstance(msgtype, str) or msgtype.count("/") != 2:
            raise DatasetError(f"{where}[{i}] ({name}).topic_metadata.type: {msgtype!r} is not a ROS 2 message type "
                               "(package/msg/Name)")
        if fmt != "cdr":
            raise DatasetError(f"{where}[{i}] ({name}).topic_metadata.serialization_format: {fmt!r}; only cdr is read")
        if not _int(count) or count < 0:
            raise DatasetError(f"{where}[{i}] ({name}).message_count: {count!r} is not a count")
        if name in topics and topics[name]["type"] != msgtype:
            msgtype = None  # several types on one topic: the import names it
        topics[name] = {"type": msgtype, "count": count + topics.get(name, {}).get("count", 0)}
    return topics


def _export_info(custom: Any, where: str) -> dict[str, Any]:
    if custom is None:
        return {}
    if not isinstance(custom, dict):
        raise DatasetError(f"{where}: expected a mapping, got {type(custom).__name__}")
    text = custom.get(CUSTOM_DATA_KEY)
    if text is None:
        return {}
    try:
        export = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        export = None
    if not isinstance(export, dict) or not isinstance(export.get("commander_topic", ""), str):
        raise DatasetError(f"{where}.{CUSTOM_DATA_KEY}: not our exporter's record (a JSON object whose "
                           f"commander_topic is a topic name): {str(text)[:200]!r}")
    return export


# ---- MCAP files, record by record --------------------------------------------------------------------
class _Records:
    """Reads one MCAP file's records, every length checked against what holds it."""

    def __init__(self, path: Path, f: Any, size: int):
        self.path = path
        self.f = f
        self.size = size
        self.channels: dict[int, str] = {}  # channel id -> topic
        self.chunks: dict[int, tuple[int, str, int, int]] = {}  # offset -> (record length, compression, sizes)

    def fail(self, offset: int, what: str) -> DatasetError:
        return DatasetError(f"{self.path}: record at byte {offset}: {what}")

    def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise self.fail(offset, f"{n} bytes declared, beyond the file's end ({self.size} bytes)")
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail(offset, f"the file ended after {len(data)} of {n} bytes")
        return data

    def walk(self, start: int, end: int, data: bytes | None = None, base: int = 0) -> None:
        """Check the records from ``start`` to ``end``: of the file, or of a chunk's ``data``."""
        pos = start
        while pos < end:
            if end - pos < 9:
                raise self.fail(base + pos, f"{end - pos} bytes left where a record needs at least 9")
            head = data[pos:pos + 9] if data is not None else self.read_at(pos, 9)
            op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
            if length > end - pos - 9:
                raise self.fail(base + pos, f"opcode {op:#04x} declares {length} bytes; only {end - pos - 9} remain")
            if op == OP_MESSAGE:
                cid = data[pos + 9:pos + 11] if data is not None else self.read_at(pos + 9, min(2, length))
                self.message(base + pos, length, struct.unpack("<H", cid)[0] if len(cid) == 2 else None)
            elif op in (OP_SCHEMA, OP_CHANNEL, OP_CHUNK, OP_CHUNK_INDEX):
                body = data[pos + 9:pos + 9 + length] if data is not None else None
                if op == OP_CHUNK:
                    if data is not None:
                        raise self.fail(base + pos, "a chunk inside a chunk")
                    self.chunk(pos, length)
                else:
                    body = body if body is not None else self.read_at(pos + 9, length)
                    {OP_SCHEMA: self.schema, OP_CHANNEL: self.channel, OP_CHUNK_INDEX: self.chunk_index}[op](
                        base + pos, body)
            pos += 9 + length

    def message(self, offset: int, length: int, cid: int | None) -> None:
        if length < 22:
            raise self.fail(offset, f"message record of {length} bytes; its header alone has 22")
        if length - 22 > MAX_MESSAGE_BYTES:
            topic = self.channels.get(cid, f"channel {cid}")
            raise self.fail(offset, f"a message on {topic} of {length - 22} bytes, over the "
                                    f"{MAX_MESSAGE_BYTES}-byte limit")

    def schema(self, offset: int, body: bytes) -> None:
        fields = _strings(body, 2, 3, self.fail, offset, "schema")
        if fields[1] not in SCHEMA_ENCODINGS:
            raise self.fail(offset, f"schema {fields[0]!r}: encoding {fields[1]!r} is not one of {SCHEMA_ENCODINGS}")

    def channel(self, offset: int, body: bytes) -> None:
        if len(body) < 4:
            raise self.fail(offset, "channel record too short")
        topic, encoding = _strings(body, 4, 2, self.fail, offset, "channel")
        if encoding != "cdr":
            raise self.fail(offset, f"channel {topic}: message encoding {encoding!r}; only cdr is read")
        (cid,) = struct.unpack_from("<H", body, 0)
        self.channels[cid] = topic

    def chunk(self, pos: int, length: int) -> None:
        if length > MAX_CHUNK_BYTES + 4096:
            raise self.fail(pos, f"chunk record of {length} bytes, over the {MAX_CHUNK_BYTES}-byte chunk limit")
        body = self.read_at(pos + 9, length)
        if length < 40:
            raise self.fail(pos, f"chunk record of {length} bytes; its fields alone need 40")
        (uncompressed,) = struct.unpack_from("<Q", body, 16)
        compression, after = _string(body, 28, self.fail, pos, "chunk compression")
        if after + 8 > len(body):
            raise self.fail(pos, "chunk record too short for its compressed size")
        (compressed,) = struct.unpack_from("<Q", body, after)
        held = len(body) - after - 8
        if compressed != held:
            raise self.fail(pos, f"chunk declares {compressed} compressed bytes; its record holds {held}")
        if compression not in COMPRESSIONS:
            raise self.fail(pos, f"chunk compression {compression!r} is not one of {COMPRESSIONS}")
        if uncompressed > MAX_CHUNK_BYTES:
            raise self.fail(pos, f"chunk of {uncompressed} bytes uncompressed, over the {MAX_CHUNK_BYTES}-byte limit")
        content = _decompress(body[after + 8:], compression, uncompressed)
        if content is None or len(content) != uncompressed:
            raise self.fail(pos, f"chunk does not decompress ({compression or 'uncompressed'}) to its declared "
                                 f"{uncompressed} bytes")
        self.chunks[pos] = (length, compression, compressed, uncompressed)
        self.walk(0, len(content), content, base=pos)

    def chunk_index(self, offset: int, body: bytes) -> None:
        try:
            start, length = struct.unpack_from("<QQ", body, 16)
            (map_len,) = struct.unpack_from("<I", body, 32)
            after = 36 + map_len
            (index_len,) = struct.unpack_from("<Q", body, after)
            compression, after = _string(body, after + 8, self.fail, offset, "chunk index compression")
            compressed, uncompressed = struct.unpack_from("<QQ", body, after)
        except struct.error:
            raise self.fail(offset, "chunk index record too short for its fields") from None
        found = self.chunks.get(start)
        if found is None or found != (length - 9, compression, compressed, uncompressed):
            raise self.fail(offset, f"the chunk index names a chunk at byte {start} ({length} bytes, {compression!r}, "
                                    f"{compressed}/{uncompressed} bytes) that the file does not hold")
        if map_len % 10:
            raise self.fail(offset, f"chunk index message-index map of {map_len} bytes (not whole entries)")
        index_start = start + length
        for cid, where in struct.iter_unpack("<HQ", body[36:36 + map_len]):
            if not index_start <= where < index_start + index_len:
                raise self.fail(offset, f"chunk index: channel {cid}'s message index at byte {where} lies outside "
                                        f"the chunk's index records ({index_start} to {index_start + index_len})")


def _string(body: bytes, at: int, fail: Any, offset: int, what: str) -> tuple[str, int]:
    if at + 4 > len(body):
        raise fail(offset, f"{what}: record too short")
    (n,) = struct.unpack_from("<I", body, at)
    if at + 4 + n > len(body):
        raise fail(offset, f"{what}: a string of {n} bytes declared, beyond the record's end")
    try:
        return body[at + 4:at + 4 + n].decode("utf-8"), at + 4 + n
    except UnicodeDecodeError:
        raise fail(offset, f"{what}: not UTF-8 text") from None


def _strings(body: bytes, at: int, n: int, fail: Any, offset: int, what: str) -> list[str]:
    out = []
    for _ in range(n):
        text, at = _string(body, at, fail, offset, what)
        out.append(text)
    return out


def _decompress(data: bytes, compression: str, size: int) -> bytes | None:
    """Chunk bytes decompressed, but never to more than ``size`` + 1 bytes; None if they do not decompress."""
    if compression == "":
        return data
    try:
        if compression == "zstd":
            dec = storage_mcap.zstd.ZstdDecompressor()  # the zstd module rosbags decompresses with
            out = dec.decompress(data, max_length=size + 1)
            return out if dec.eof and not dec.unused_data else None
        dec = LZ4FrameDecompressor()
        out = dec.decompress(data, max_length=size + 1)
        return out if dec.eof else None
    except Exception:  # the compressors' own errors for damaged data
        return None


def check_mcap_file(path: Path) -> None:
    """Walk an MCAP file's records (module docstring); DatasetError for the first problem."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        records = _Records(path, f, size)
        if size < len(MCAP_MAGIC) * 2 + 9 + _FOOTER or records.read_at(0, 8) != MCAP_MAGIC:
            raise DatasetError(f"{path}: not an MCAP file (no MCAP magic, or too short: {size} bytes)")
        if records.read_at(size - 8, 8) != MCAP_MAGIC:
            raise DatasetError(f"{path}: no MCAP magic at the end: a truncated or damaged file")
        footer_at = size - _FOOTER
        footer = records.read_at(footer_at, _FOOTER - 8)
        if footer[0] != OP_FOOTER or struct.unpack_from("<Q", footer, 1)[0] != 20:
            raise records.fail(footer_at, "not an MCAP footer: a truncated or damaged file")
        summary_start, _ = struct.unpack_from("<QQ", footer, 9)
        head = records.read_at(8, 9)
        if head[0] != OP_HEADER:
            raise records.fail(8, "the file does not start with an MCAP header record")
        data_start = 8 + 9 + struct.unpack_from("<Q", head, 1)[0]
        data_end = summary_start or footer_at
        if not 8 + 9 <= data_start <= data_end <= footer_at:
            raise records.fail(footer_at, f"footer's summary start {summary_start} does not lie between the data "
                                          f"({data_start}) and the footer ({footer_at})")
        records.walk(data_start, data_end)
        if summary_start:
            records.walk(summary_start, footer_at)



# ---- schemas ------------------------------------------------------------------------------------------
def schema_problem(store: Typestore, msgtype: str, msgdef: MessageDefinition) -> str | None:
    """Why a bag's schema (message definition) for ``msgtype`` is not the one the import
    deserialises with, or None when it is the same (field names and types of every type it
    defines) or the bag recorded none."""
    if msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data.strip():
        return None
    try:
        if msgdef.format == MessageDefinitionFormat.MSG:
            types = get_types_from_msg(msgdef.data, msgtype)
        else:
            sep = "=" * 80 + "\n"
            parts = msgdef.data.split(sep)[1:] if msgdef.data.startswith(sep + "IDL: ") else [msgdef.data]
            types = {}
            for part in parts:
                types.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
    except Exception as exc:  # the parsers' own errors for text that is no definition
        return f"its schema does not parse: {str(exc)[:200] or type(exc).__name__}"
    if msgtype not in types:
        return f"its schema does not define {msgtype}"
    for name, (_, fields) in sorted(types.items()):
        have = store.fielddefs.get(name)
        if have is None:
            return f"its schema uses type {name}, which the import does not know"
        theirs, ours = [_field(f) for f in fields], [_field(f) for f in have[1]]
        if theirs != ours:
            i = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), min(len(theirs), len(ours)))
            a = theirs[i] if i < len(theirs) else "nothing"
            b = ours[i] if i < len(ours) else "nothing"
            return f"its schema defines {name} differently: field {i} is {a}, the import's is {b}"
    return None


def _field(f: tuple) -> str:
    return f"{_type(f[1])} {f[0].lower()}"


def _type(desc: tuple) -> str:
    kind, arg = desc
    if kind == Nodetype.BASE:
        return arg[0] + (f"<={arg[1]}" if arg[1] else "")
    if kind == Nodetype.NAME:
        return arg
    inner = _type(arg[0])
    return f"{inner}[{arg[1] or ''}]" if kind == Nodetype.ARRAY else f"{inner}[{'<=' + str(arg[1]) if arg[1] else ''}]"
