"""Export dataset episodes as a rosbag2 directory with MCAP storage (ROS-free).

The bag replays the episodes on the topics the live robot uses (``pac_ros/topics.py``),
so ``ros2 bag play``, ``ros2 bag info``, Foxglove and ``rosbags`` can read it. Messages are
serialised to CDR by ``rosbags`` with the types of mcap_layout.py (the ROS 2 standard ones
plus the package's ``msg/*.msg``), so no generated ROS interfaces are needed.

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
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from pac_ros.data.conversion_report import select_episodes
from pac_ros.data.format import POSE_NAMES, DatasetError, fsync_dir
from pac_ros.data.mcap_layout import (
    CUSTOM_DATA_KEY,
    T_BOOL,
    T_EVENT,
    T_F32,
    T_F64ARRAY,
    T_IMAGE,
    T_JOINTS,
    T_POSES,
    T_STRING,
    make_typestore,
)
from pac_ros.data.reader import Dataset, Episode
from pac_ros.topics import (
    BLOCK_POSES,
    CAMERA_FRAME,
    CAMERA_TOPIC,
    COMMANDS,
    EPISODE_EVENTS,
    INSTRUCTION,
    JOINT_STATES,
    REWARD,
    SUCCESS,
)

DEFAULT_COMMANDER = "/recorder_export"

BLOCK_FRAME = "world"
EPISODE_GAP_S = 1.0  # gap between episodes that had to be shifted (timeline="auto")

_ZERO = QosTime(0, 0)  # rmw "unspecified" (= infinite / default)
_LATCHED_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                   _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)


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
    EpisodeEvent = T[T_EVENT]
    cam_topics = {c.name: CAMERA_TOPIC.format(name=c.name) for c in cams}

    writer = Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    if compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    exported: list[dict[str, Any]] = []
    with writer:
        w = _BagWriter(writer, store)
        w.add(EPISODE_EVENTS, T_EVENT)
        w.add(INSTRUCTION, T_STRING, [_LATCHED_QOS])
        if ds.has_features:
            w.add(BLOCK_POSES, T_POSES)
        for c in cams:
            w.add(cam_topics[c.name], T_IMAGE)
        w.add(JOINT_STATES, T_JOINTS)
        w.add(REWARD, T_F32)
        w.add(SUCCESS, T_BOOL)
        w.add(COMMANDS, T_F64ARRAY)
        w.add(command_topic, T_JOINTS)

        def event(ns: int, kind: int, meta: dict, instruction: str, detail: dict | str) -> None:
            w.write(EPISODE_EVENTS, ns, EpisodeEvent(
                header=w.header(ns), event=kind, episode_index=int(meta["episode_index"]),
                instruction=instruction, source=str(meta.get("source") or ""),
                detail=detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)))

        def joint_state(ns: int, values: np.ndarray) -> Any:
            return T[T_JOINTS](header=w.header(ns), name=list(names),
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
                    w.write(INSTRUCTION, s, T[T_STRING](data=instr))
                # the observation o_t
                if e.features is not None:
                    poses = [_pose(T, row) for row in e.features[t].astype(np.float64).reshape(-1, len(POSE_NAMES))]
                    w.write(BLOCK_POSES, s, T[T_POSES](header=w.header(s, BLOCK_FRAME), poses=poses))
                for c in cams:
                    img = e.images[c.name][t]
                    w.write(cam_topics[c.name], s, T[T_IMAGE](
                        header=w.header(s, CAMERA_FRAME.format(name=c.name)), height=c.height, width=c.width,
                        encoding=c.encoding, is_bigendian=0, step=c.width * c.channels,
                        data=np.ascontiguousarray(img, np.uint8).reshape(-1)))
                w.write(JOINT_STATES, s, joint_state(s, e.joint_positions[t]))
                # reward and success of the transition that led to o_t
                if t >= 1:
                    w.write(REWARD, s, T[T_F32](data=float(e.rewards[t - 1])))
                    w.write(SUCCESS, s, T[T_BOOL](data=success and t == n - 1))
                # the command computed from o_t (the last row's hold command is not replayed)
                if t < n - 1:
                    action = e.actions[t].astype(np.float64)
                    w.write(COMMANDS, s, T[T_F64ARRAY](
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

