"""Export dataset episodes as a rosbag2 directory with MCAP storage, and import such a
recording back into a dataset (ROS-free).

The bag replays the episodes on the topics the live robot uses (``pac_ros/nodes/common.py``),
so ``ros2 bag play``, ``ros2 bag info``, Foxglove and ``rosbags`` can read it. Messages are
serialised to CDR by ``rosbags``; the package's own types (``msg/*.msg``) are registered from
their text at run time, so no generated ROS interfaces are needed.

Per episode, for row ``t`` of ``T`` (stamp ``s_t``; bag log time = header stamp = ``s_t``):

- ``/pac/episode_events`` ``pac_ros/msg/EpisodeEvent`` START at the first row; STOP then
  COMMIT at the last row (``episode_index``, ``instruction``, ``source``; ``detail`` is JSON).
- ``/instruction`` ``std_msgs/msg/String`` at the first row and wherever the instruction
  changes (offered latched, like the live topic).
- ``/sim/block_poses`` ``geometry_msgs/msg/PoseArray`` (frame ``world``), when the dataset
  has block poses.
- ``/camera/<name>/image_raw`` ``sensor_msgs/msg/Image`` per spec camera (frame
  ``<name>_camera_optical_frame`` as the bridge publishes it, encoding = the spec's).
- ``/joint_states`` ``sensor_msgs/msg/JointState`` (names = spec joint order).
- ``/reward`` ``std_msgs/msg/Float32`` r_{t-1} and ``/task_success`` ``std_msgs/msg/Bool`` for
  every row t >= 1, after that row's observation: the sim publishes the reward and success
  of a step after the observation it led to, so the recorder's pairing rule assigns them
  back to row t-1. ``/task_success`` is true only at the last row of a successful episode.
- ``/arm_controller/commands`` ``std_msgs/msg/Float64MultiArray`` and
  ``<commander>/command`` ``sensor_msgs/msg/JointState`` (stamp = the observation's stamp)
  for every row but the last (the last row's action is a hold command, never a transition).

Timeline: episodes are written back to back in the order asked. With ``timeline="auto"``
(default) recorded stamps are kept, except that an episode starting at or before the end of
the previous exported one (e.g. ``pac-ros collect`` data, whose sim clock restarts at 0 every
episode) is shifted, all its stamps alike, to start ``EPISODE_GAP_S`` after it. The shift is
recorded in the START event's detail and in the bag's ``custom_data``
(``pac_ros.export``). ``timeline="recorded"`` never shifts (overlapping episodes then
interleave on playback).

The bag is written to a hidden sibling directory and renamed into place when complete, so
``out_dir`` never holds a half-written bag (a killed rosbags writer leaves an unreadable one).

``import_mcap`` goes the other way for any rosbag2 recording of these topics (ours or
``ros2 bag record``'s): it replays the bag through the live recorder's ``RecorderCore``
(pac_ros/data/recording.py), so steps are paired and episodes cut as when recording live.
Rules and what is carried: docs/dataset.md, "MCAP import".
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from pac_ros.data.convert import ConversionReport, select_episodes
from pac_ros.data.format import POSE_NAMES, DatasetError, fsync_dir
from pac_ros.data.messages import stamp_seconds
from pac_ros.data.reader import Dataset, Episode
from pac_ros.data.recording import FinishedEpisode, RecorderCore, commit_episode
from pac_ros.data.writer import DatasetWriter
from pac_ros.paths import share_file
from pac_ros.spec import Spec
from pac_ros.topics import (BLOCK_POSES, CAMERA_FRAME, CAMERA_TOPIC, COMMANDS, EPISODE_EVENTS, INSTRUCTION,
                            JOINT_STATES, REWARD, STATUS, SUCCESS)

DEFAULT_COMMANDER = "/recorder_export"

BLOCK_FRAME = "world"
EPISODE_GAP_S = 1.0  # gap between episodes that had to be shifted (timeline="auto")
TYPESTORE = Stores.ROS2_KILTED  # the ROS 2 distribution of requirements-ros.txt
CUSTOM_DATA_KEY = "pac_ros.export"
PACKAGE_MSG = "pac_ros/msg/{}"

_T_IMAGE = "sensor_msgs/msg/Image"
_T_JOINTS = "sensor_msgs/msg/JointState"
_T_F64ARRAY = "std_msgs/msg/Float64MultiArray"
_T_F32 = "std_msgs/msg/Float32"
_T_BOOL = "std_msgs/msg/Bool"
_T_STRING = "std_msgs/msg/String"
_T_POSES = "geometry_msgs/msg/PoseArray"
_T_EVENT = PACKAGE_MSG.format("EpisodeEvent")

_ZERO = QosTime(0, 0)  # rmw "unspecified" (= infinite / default)
_LATCHED_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                   _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)


# ---- types ---------------------------------------------------------------------------------
def package_msg_files() -> list[Path]:
    """The package's ``msg/*.msg`` files (source tree, ament install or pip share/)."""
    folder = share_file("msg", "EpisodeEvent.msg").parent
    return sorted(folder.glob("*.msg"))


def make_typestore() -> Typestore:
    """A rosbags typestore: the ROS 2 standard types plus ``pac_ros/msg/*`` from msg/."""
    store = get_typestore(TYPESTORE)
    types: dict[str, Any] = {}
    for path in package_msg_files():
        types.update(get_types_from_msg(path.read_text(), PACKAGE_MSG.format(path.stem)))
    store.register(types)
    return store


# ---- export --------------------------------------------------------------------------------
def export_mcap(
    dataset_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    episodes: Sequence[int] | None = None,
    commander: str = DEFAULT_COMMANDER,
    *,
    timeline: str = "auto",
    compress: bool = False,
) -> Path:
    """Write episodes of a dataset (default all) into one new rosbag2/MCAP directory.

    ``commander`` names the node whose stamped commands are replayed on
    ``<commander>/command``. ``compress`` zstd-compresses the MCAP chunks (readable by
    ``ros2 bag``, Foxglove and rosbags). Returns ``out_dir``.

    Raises ``FileExistsError`` if ``out_dir`` exists, ``DatasetError`` for a missing, empty
    or unreadable dataset, ``IndexError``/``ValueError`` for a bad episode selection.
    """
    root = Path(dataset_root)
    out = Path(out_dir)
    if timeline not in ("auto", "recorded"):
        raise ValueError(f"timeline must be 'auto' or 'recorded', got {timeline!r}")
    command_topic = _command_topic(commander)
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out}: already exists; refusing to overwrite (choose a new --out)")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset directory")
    ds = Dataset(root)
    selected = select_episodes(ds, episodes)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: parent directory of the output does not exist")

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        bag = staging / out.name  # rosbags names the .mcap after its directory
        _write_bag(ds, selected, bag, command_topic, timeline, compress)
        _fsync_tree(bag)
        if out.exists() or out.is_symlink():
            raise FileExistsError(f"{out}: appeared while exporting; the export is discarded")
        os.rename(bag, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _command_topic(commander: str) -> str:
    name = commander.strip().rstrip("/")
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"commander must be a node name such as '/recorder_export', got {commander!r}")
    return (name if name.startswith("/") else "/" + name) + "/command"


def _stamps_ns(e: Episode, where: str) -> np.ndarray:
    ns = np.round(e.timestamp.astype(np.float64) * 1e9).astype(np.int64)
    if len(ns) and ns[0] < 0:
        raise DatasetError(f"{where}: negative stamp {e.timestamp[0]} s cannot be a bag time")
    return ns


class _BagWriter:
    """Connections and message constructors over one open rosbags Writer."""

    def __init__(self, writer: Writer, store: Typestore):
        self.writer = writer
        self.store = store
        self.conns: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.T = store.types

    def add(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> None:
        self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store,
                                                       offered_qos_profiles=list(qos))
        self.types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, ns: int, msg: Any) -> None:
        data = self.store.serialize_cdr(msg, self.types[topic])
        self.writer.write(self.conns[topic], int(ns), data)
        self.counts[topic] += 1

    def header(self, ns: int, frame_id: str = "") -> Any:
        T = self.T
        stamp = T["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _write_bag(ds: Dataset, selected: list[int], bag: Path, command_topic: str, timeline: str,
               compress: bool) -> None:
    spec = ds.spec
    store = make_typestore()
    T = store.types
    cams = list(spec.cameras)
    names = spec.joint_names
    empty = np.zeros(0, np.float64)
    EpisodeEvent = T[_T_EVENT]
    cam_topics = {c.name: CAMERA_TOPIC.format(name=c.name) for c in cams}

    writer = Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    if compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    exported: list[dict[str, Any]] = []
    with writer:
        w = _BagWriter(writer, store)
        w.add(EPISODE_EVENTS, _T_EVENT)
        w.add(INSTRUCTION, _T_STRING, [_LATCHED_QOS])
        if ds.has_features:
            w.add(BLOCK_POSES, _T_POSES)
        for c in cams:
            w.add(cam_topics[c.name], _T_IMAGE)
        w.add(JOINT_STATES, _T_JOINTS)
        w.add(REWARD, _T_F32)
        w.add(SUCCESS, _T_BOOL)
        w.add(COMMANDS, _T_F64ARRAY)
        w.add(command_topic, _T_JOINTS)

        def event(ns: int, kind: int, meta: dict, instruction: str, detail: dict | str) -> None:
            w.write(EPISODE_EVENTS, ns, EpisodeEvent(
                header=w.header(ns), event=kind, episode_index=int(meta["episode_index"]),
                instruction=instruction, source=str(meta.get("source") or ""),
                detail=detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)))

        def joint_state(ns: int, values: np.ndarray) -> Any:
            return T[_T_JOINTS](header=w.header(ns), name=list(names),
                                position=np.asarray(values, np.float64), velocity=empty, effort=empty)

        prev_end: int | None = None
        for i in selected:
            e = ds.load_episode(i, images=True)
            meta = e.meta
            where = f"{ds.root}: episode {i}"
            ns = _stamps_ns(e, where)
            offset = 0
            if timeline == "auto" and prev_end is not None and ns[0] <= prev_end:
                offset = prev_end + int(round(EPISODE_GAP_S * 1e9)) - int(ns[0])
            ns = ns + offset
            prev_end = int(ns[-1])
            n = len(e)
            success = bool(meta.get("success"))
            exported.append({"episode_index": i, "length": n, "stamp_offset_ns": offset,
                             "start_ns": int(ns[0]), "end_ns": int(ns[-1])})
            for t in range(n):
                s = int(ns[t])
                instr = e.instructions[t]
                if t == 0:
                    event(s, EpisodeEvent.START, meta, instr, {
                        "seed": meta.get("seed"), "checkpoint": meta.get("checkpoint"),
                        "stamp_offset_s": offset * 1e-9, "length": n})
                if t == 0 or instr != e.instructions[t - 1]:
                    w.write(INSTRUCTION, s, T[_T_STRING](data=instr))
                # the observation o_t
                if e.features is not None:
                    poses = [_pose(T, row) for row in e.features[t].astype(np.float64).reshape(-1, len(POSE_NAMES))]
                    w.write(BLOCK_POSES, s, T[_T_POSES](header=w.header(s, BLOCK_FRAME), poses=poses))
                for c in cams:
                    img = e.images[c.name][t]
                    w.write(cam_topics[c.name], s, T[_T_IMAGE](
                        header=w.header(s, CAMERA_FRAME.format(name=c.name)), height=c.height, width=c.width,
                        encoding=c.encoding, is_bigendian=0, step=c.width * c.channels,
                        data=np.ascontiguousarray(img, np.uint8).reshape(-1)))
                w.write(JOINT_STATES, s, joint_state(s, e.joint_positions[t]))
                # reward and success of the transition that led to o_t
                if t >= 1:
                    w.write(REWARD, s, T[_T_F32](data=float(e.rewards[t - 1])))
                    w.write(SUCCESS, s, T[_T_BOOL](data=success and t == n - 1))
                # the command computed from o_t (the last row's hold command is not replayed)
                if t < n - 1:
                    action = e.actions[t].astype(np.float64)
                    w.write(COMMANDS, s, T[_T_F64ARRAY](
                        layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=action))
                    w.write(command_topic, s, joint_state(s, action))
                else:
                    event(s, EpisodeEvent.STOP, meta, instr,
                          "terminal" if bool(e.is_terminal[t]) else "truncated")
                    event(s, EpisodeEvent.COMMIT, meta, e.instruction, {
                        k: meta.get(k) for k in ("length", "success", "terminal", "return", "dropped",
                                                 "sha256", "recorded_at")})
        writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps({
            "dataset": str(ds.root.resolve()),
            "dataset_fingerprint": ds.fingerprint(),
            "spec": spec.to_dict(),
            "spec_fingerprint": spec.fingerprint(),
            "timeline": timeline,
            "commander_topic": command_topic,
            "episodes": exported,
        }, sort_keys=True))


def _pose(T: dict, row: np.ndarray) -> Any:
    """x y z qw qx qy qz -> geometry_msgs/Pose."""
    return T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=float(row[0]), y=float(row[1]), z=float(row[2])),
        orientation=T["geometry_msgs/msg/Quaternion"](
            x=float(row[4]), y=float(row[5]), z=float(row[6]), w=float(row[3])))


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(path)


# ---- reading back ----------------------------------------------------------------------------
def read_mcap_topics(bag_dir: str | os.PathLike) -> dict[str, int]:
    """Topic -> message count of a rosbag2 directory (from its metadata)."""
    with Reader(Path(bag_dir)) as reader:
        return {topic: info.msgcount for topic, info in reader.topics.items()}


def describe_bag(bag_dir: str | os.PathLike) -> dict[str, Any]:
    """A summary for ``pac-ros`` to print: topics (type, count), time span, export info."""
    bag = Path(bag_dir)
    with Reader(bag) as reader:
        count = reader.message_count
        start = reader.start_time if count else None
        end = reader.end_time - 1 if count else None  # rosbags' end_time is exclusive
        topics = {topic: {"type": info.msgtype, "count": info.msgcount}
                  for topic, info in sorted(reader.topics.items())}
    export = _export_info(bag)
    return {
        "path": str(bag),
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_s": 0.0 if start is None else (end - start) * 1e-9,
        "topics": topics,
        "export": export,
    }


def _export_info(bag: Path) -> dict[str, Any] | None:
    """Our exporter's record in the bag's ``custom_data`` (``pac_ros.export``), or None."""
    meta_path = bag / "metadata.yaml"
    if not meta_path.is_file():
        return None
    info = yaml.safe_load(meta_path.read_text()) or {}
    custom = (info.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
    return json.loads(custom[CUSTOM_DATA_KEY]) if custom.get(CUSTOM_DATA_KEY) else None


def iter_bag_messages(bag_dir: str | os.PathLike, topics: Iterable[str] | None = None,
                      store: Typestore | None = None) -> Iterator[tuple[str, int, Any]]:
    """(topic, log time ns, deserialised message) in log-time order (``topics`` None = all)."""
    store = store or make_typestore()
    wanted = set(topics) if topics is not None else None
    with Reader(Path(bag_dir)) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        for conn, ns, raw in reader.messages(connections=conns):
            yield conn.topic, ns, store.deserialize_cdr(raw, conn.msgtype)


# ---- import ----------------------------------------------------------------------------------
# topics the import reads: topic -> type; the command topic is found per bag
_REQUIRED = {JOINT_STATES: _T_JOINTS}
_OPTIONAL = {INSTRUCTION: _T_STRING, REWARD: _T_F32, SUCCESS: _T_BOOL, BLOCK_POSES: _T_POSES,
             EPISODE_EVENTS: _T_EVENT}
_T_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
_TERMINAL = {"terminal": True, "truncated": False}  # the STOP event's detail


def import_mcap(source: str | os.PathLike, out: str | os.PathLike, spec: Spec, *,
                command_topic: str | None = None, instruction: str | None = None) -> ConversionReport:
    """A rosbag2 recording (MCAP or sqlite3) of the standard topics -> a new dataset at ``out``.

    The bag is replayed in log-time order through ``RecorderCore``, the live recorder's own
    message handling, pairing and episode rules (docs/dataset.md, "MCAP import"). Episodes
    are bounded by ``/pac/episode_events`` START/STOP where the bag has them, else by the
    live recorder's rules (a new instruction, success, ``max_episode_steps``, the clock
    jumping back). ``command_topic`` picks the stamped command topic when the bag has
    several ``<node>/command`` JointState topics; ``instruction`` is used when the bag has
    neither episode events nor instruction messages.

    The dataset is built in a hidden sibling directory and renamed to ``out`` when complete.
    Raises ``DatasetError`` naming the bag and the problem: not a readable bag, a required
    topic missing or of another type, every message of an input rejected, no episode made,
    ``out`` not new or empty. Messages the live recorder would reject are counted in the
    report's notes.
    """
    started = time.perf_counter()
    bag = Path(source)
    out = Path(out)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise DatasetError(f"{out}: already exists and is not an empty directory; choose a new --out")
    plan = _ImportPlan(bag, spec, command_topic)
    store = make_typestore()
    if not plan.events and plan.counts.get(INSTRUCTION, 0) == 0 and not instruction:
        raise DatasetError(f"{bag}: no {EPISODE_EVENTS} and no {INSTRUCTION} messages, so nothing starts an "
                           "episode; pass the instruction to import_mcap(..., instruction=TEXT)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        built = staging / out.name
        with DatasetWriter(built, spec, features=plan.features) as writer:
            replay = _Replay(plan, spec, store, writer, instruction)
            replay.run()
        notes = replay.finish_notes()
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(built, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConversionReport(out=out, episodes=len(replay.lengths), steps=sum(replay.lengths),
                            seconds=time.perf_counter() - started, notes=notes)


class _ImportPlan:
    """Which topics of a bag the import reads, checked against what it needs (types, counts)."""

    def __init__(self, bag: Path, spec: Spec, command_topic: str | None):
        if not bag.exists():
            raise DatasetError(f"{bag}: no such rosbag2 directory")
        try:
            with Reader(bag) as reader:
                self.types = {topic: info.msgtype for topic, info in reader.topics.items()}
                self.counts = {topic: info.msgcount for topic, info in reader.topics.items()}
            self.export = _export_info(bag) or {}  # what our exporter recorded, if it wrote the bag
        except Exception as exc:  # rosbags' own errors, YAML and OS errors
            raise DatasetError(f"{bag}: not a readable rosbag2 bag: {exc}") from exc
        self.bag = bag
        self.cameras = {c.name: CAMERA_TOPIC.format(name=c.name) for c in spec.cameras}
        for topic, msgtype in {**_REQUIRED, **{t: _T_IMAGE for t in self.cameras.values()}}.items():
            self.require(topic, msgtype, "an observation input")
        for topic, msgtype in _OPTIONAL.items():
            if topic in self.types:
                self.check_type(topic, msgtype)
        self.command = self.find_command_topic(command_topic)
        self.events = self.counts.get(EPISODE_EVENTS, 0) > 0
        self.features = self.counts.get(BLOCK_POSES, 0) > 0
        self.read_topics = {JOINT_STATES, self.command, *self.cameras.values(), *_OPTIONAL}
        if self.types.get(STATUS) == _T_STATUS:
            self.read_topics.add(STATUS)

    def check_type(self, topic: str, msgtype: str) -> None:
        found = self.types[topic]
        if found != msgtype:
            what = "several message types" if found is None else f"messages of type {found}"
            raise DatasetError(f"{self.bag}: topic {topic} has {what}; the import reads {msgtype}")

    def require(self, topic: str, msgtype: str, role: str) -> None:
        if not self.counts.get(topic):
            have = ", ".join(sorted(self.types)) or "none"
            raise DatasetError(f"{self.bag}: required topic {topic} ({msgtype}, {role}) "
                               f"{'has no messages' if topic in self.types else 'is missing'}; topics: {have}")
        self.check_type(topic, msgtype)

    def find_command_topic(self, wanted: str | None) -> str:
        if wanted is None:
            wanted = self.export.get("commander_topic")  # our exporter says which it wrote
        if wanted is not None:
            self.require(wanted, _T_JOINTS, "the stamped commands")
            return wanted
        found = sorted(t for t, m in self.types.items() if t.endswith("/command") and m == _T_JOINTS
                       and self.counts.get(t))
        if len(found) == 1:
            return found[0]
        if not found:
            raise DatasetError(f"{self.bag}: no stamped command topic (<node>/command, {_T_JOINTS}, stamped with "
                               f"the observation it was computed from); topics: {', '.join(sorted(self.types))}")
        raise DatasetError(f"{self.bag}: several stamped command topics {found}; choose one with command_topic=")


class _Replay:
    """Feeds a bag's messages to a RecorderCore and commits the episodes it hands back."""

    def __init__(self, plan: _ImportPlan, spec: Spec, store: Typestore, writer: DatasetWriter,
                 instruction: str | None):
        self.plan = plan
        self.store = store
        self.writer = writer
        self.default_instruction = instruction
        self.default_source = plan.command.rsplit("/", 2)[-2] or "unknown"  # "/policy/command" -> "policy"
        events = plan.events  # with events, START/STOP alone bound episodes
        self.core = RecorderCore(spec, self._commit, features=plan.features, auto_start=not events,
                                 stop_on_success=not events, split_on_clock_jump=not events,
                                 max_steps=None if events else spec.max_episode_steps,
                                 source=self.default_source, log=self._log)
        self.clock: float | None = None  # the data's clock: the newest stamp seen (see _now)
        self.lengths: list[int] = []  # rows per committed episode
        self.reasons: Counter[str] = Counter()
        self.undecodable: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.stats: Counter[str] = Counter()
        self.episode_extra: dict[str, Any] = {}  # seed and bag episode index from the START event
        self.shifted = 0
        self.unstopped = 0

    # ---- reading ------------------------------------------------------------------
    def run(self) -> None:
        plan, core = self.plan, self.core
        cameras = {topic: name for name, topic in plan.cameras.items()}
        if not plan.events and plan.counts.get(INSTRUCTION, 0) == 0:
            core.on_instruction(self.default_instruction)
        E = self.store.types[_T_EVENT]
        try:
            with Reader(plan.bag) as reader:
                conns = [c for c in reader.connections if c.topic in plan.read_topics]
                for conn, ns, raw in reader.messages(connections=conns):
                    topic = conn.topic
                    try:
                        msg = self.store.deserialize_cdr(raw, conn.msgtype)
                    except Exception:  # truncated or garbled CDR: a message no subscriber would get
                        self.undecodable[topic] += 1
                        continue
                    if topic in cameras:
                        core.on_image(cameras[topic], msg, self._now(msg))
                    elif topic == JOINT_STATES:
                        core.on_joint_state(msg, self._now(msg))
                    elif topic == plan.command:
                        core.on_command(msg, self._now(msg))
                    elif topic == BLOCK_POSES:
                        core.on_block_poses(msg, self._now(msg))
                    elif topic == REWARD:
                        core.on_reward(float(msg.data))
                    elif topic == SUCCESS:
                        core.on_success(bool(msg.data))
                    elif topic == INSTRUCTION:
                        (core.set_instruction if plan.events else core.on_instruction)(msg.data)
                    elif topic == STATUS:
                        core.on_status(msg.hardware_id)
                    elif topic == EPISODE_EVENTS:
                        self._event(msg, E)
        except DatasetError:
            raise
        except Exception as exc:  # a damaged file part-way through
            raise DatasetError(f"{plan.bag}: reading the bag failed: {exc}") from exc
        if core.recording:
            if plan.events:
                self.unstopped += 1
            core.stop("end of the bag")

    def _now(self, msg: Any) -> float:
        """The replay's clock: the newest header stamp seen, restarted where stamps jump back
        (a bag's log times may come from another clock than its stamps)."""
        stamp = stamp_seconds(msg.header.stamp, self.core.stamp_offset_ns)
        if self.clock is None or stamp > self.clock or stamp < self.clock - RecorderCore.CLOCK_JUMP_S:
            self.clock = stamp
        return self.clock

    def _event(self, msg: Any, E: Any) -> None:
        core = self.core
        detail = _json_object(msg.detail)
        if msg.event == E.START:
            offset = int(round(float(detail.get("stamp_offset_s") or 0.0) * 1e9))
            stamp = stamp_seconds(msg.header.stamp, offset)
            newest = core.assembler.newest_stamp
            if core.recording:
                if offset == core.stamp_offset_ns and newest is not None and stamp <= newest:
                    raise DatasetError(
                        f"{self.plan.bag}: episode {msg.episode_index} starts at {stamp:.3f} s, inside the episode "
                        "before it: episodes that overlap in time interleave in a bag (one exported with "
                        "timeline='recorded'?); export them with timeline='auto'")
                self.unstopped += 1
                core.stop("START without STOP")
            self.shifted += offset != 0
            if offset != core.stamp_offset_ns or (newest is not None and stamp <= newest):
                core.restart_timeline()  # the export shifted this episode, or stamps start over
                self.clock = None
            core.stamp_offset_ns = offset
            core.source = msg.source or self.default_source
            core.checkpoint = detail.get("checkpoint") or None
            self.episode_extra = {"seed": detail.get("seed"), "bag_episode_index": int(msg.episode_index)}
            core.instruction = msg.instruction or core.instruction
            core.start()
        elif msg.event == E.STOP and core.recording:
            until = stamp_seconds(msg.header.stamp, core.stamp_offset_ns)
            core.stop(f"STOP event ({msg.detail or 'no detail'})", until=until, terminal=_TERMINAL.get(msg.detail))
        elif msg.event == E.COMMIT:
            expected = detail.get("length")
            if isinstance(expected, int) and self.lengths and expected != self.lengths[-1]:
                self.notes.append(f"bag episode {msg.episode_index}: its COMMIT event says {expected} rows, "
                                  f"the import made {self.lengths[-1]}")
        elif msg.event == E.DISCARD:
            core.abandon("DISCARD event")

    def _commit(self, episode: FinishedEpisode) -> None:
        extra = self.episode_extra
        commit_episode(self.writer, episode, seed=extra.get("seed"), metadata={"import": {
            "bag": str(self.plan.bag), "command_topic": self.plan.command,
            "bag_episode_index": extra.get("bag_episode_index")}})
        self.episode_extra = {}
        self.lengths.append(len(episode.steps) + (episode.final is not None))
        self.reasons[episode.reason.split(" (")[0]] += 1
        s = episode.stats
        self.stats.update(dropped_commands=s.dropped_commands, late_messages=s.late_messages,
                          ignored_commands=s.ignored_commands, unassigned_rewards=s.unassigned_rewards,
                          gaps=len(s.gaps))

    def _log(self, level: str, text: str) -> None:
        if level in ("warning", "error"):
            self.warnings.append(text)

    # ---- the report -----------------------------------------------------------------
    def finish_notes(self) -> list[str]:
        """Notes for the report; raises DatasetError when an input was unusable or nothing came out."""
        plan, core = self.plan, self.core
        topic_of = {"joint_states": JOINT_STATES, "command": plan.command, "block_poses": BLOCK_POSES,
                    **{f"image:{name}": topic for name, topic in plan.cameras.items()}}
        for key, topic in topic_of.items():
            received, rejected = core.received[key], core.rejections[key]
            if received and rejected == received and key != "block_poses":
                raise DatasetError(f"{plan.bag}: all {received} messages on {topic} were rejected, "
                                   f"e.g. {core.first_rejection[key]}")
        if not self.lengths:
            raise DatasetError(f"{plan.bag}: no episode could be made ({self._why_none()})")
        notes = [f"episodes bounded by {EPISODE_EVENTS} START/STOP" if plan.events else
                 f"no {EPISODE_EVENTS}: episodes cut by the live recorder's rules (new instruction, success, "
                 f"{core.spec.max_episode_steps} steps, clock jumping back, end of the bag)"]
        notes.append(f"commands from {plan.command}; episodes ended by: "
                     + ", ".join(f"{reason} {n}" for reason, n in sorted(self.reasons.items())))
        if self.shifted:
            notes.append(f"{self.shifted} episode(s) had their export time shift removed from their stamps")
        for key, topic in topic_of.items():
            if core.rejections[key]:
                notes.append(f"{core.rejections[key]} of {core.received[key]} messages on {topic} rejected, "
                             f"first: {core.first_rejection[key]}")
        for topic, n in sorted(self.undecodable.items()):
            notes.append(f"{n} messages on {topic} could not be deserialised and were skipped")
        for key, n in sorted(self.stats.items()):
            if n:
                notes.append(f"{key.replace('_', ' ')}: {n}")
        if core.empty_episodes:
            notes.append(f"{core.empty_episodes} episode(s) had no paired step and were not written")
        if self.unstopped:
            notes.append(f"{self.unstopped} episode(s) had no STOP event; each ends at its last observation")
        if self.warnings:
            notes.append(f"{len(self.warnings)} recorder warning(s), first: {self.warnings[0]}")
        unread = sorted(set(plan.types) - plan.read_topics)
        if unread:
            notes.append(f"topics not carried: {', '.join(unread)}")
        return notes + self.notes

    def _why_none(self) -> str:
        core = self.core
        why = (f"{core.received['command']} messages on {self.plan.command}, none paired with an observation "
               f"within {core.assembler.tolerance * 1000:.0f} ms of its stamp while an episode was recording")
        if self.warnings:
            why += f"; first recorder warning: {self.warnings[0]}"
        return why


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
