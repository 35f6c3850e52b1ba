"""The rosbag2/MCAP layout export and import share: message types, type registration and
what our exporter records in a bag (ROS-free).

Messages are serialised to CDR by ``rosbags``; the package's own types (``msg/*.msg``) are
registered from their text at run time, so no generated ROS interfaces are needed. The
topics are the live robot's (``pac_ros/topics.py``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from pac_ros.paths import share_file

TYPESTORE = Stores.ROS2_KILTED  # the ROS 2 distribution of requirements-ros.txt
CUSTOM_DATA_KEY = "pac_ros.export"
PACKAGE_MSG = "pac_ros/msg/{}"

T_IMAGE = "sensor_msgs/msg/Image"
T_JOINTS = "sensor_msgs/msg/JointState"
T_F64ARRAY = "std_msgs/msg/Float64MultiArray"
T_F32 = "std_msgs/msg/Float32"
T_BOOL = "std_msgs/msg/Bool"
T_STRING = "std_msgs/msg/String"
T_POSES = "geometry_msgs/msg/PoseArray"
T_EVENT = PACKAGE_MSG.format("EpisodeEvent")


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


# ---- what a bag holds ----------------------------------------------------------------------
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
    export = export_info(bag)
    return {
        "path": str(bag),
        "message_count": count,
        "start_ns": start,
        "end_ns": end,
        "duration_s": 0.0 if start is None else (end - start) * 1e-9,
        "topics": topics,
        "export": export,
    }


def export_info(bag: Path) -> dict[str, Any] | None:
    """Our exporter's record in the bag's ``custom_data`` (``pac_ros.export``), or None."""
    meta_path = bag / "metadata.yaml"
    if not meta_path.is_file():
        return None
    info = yaml.safe_load(meta_path.read_text()) or {}
    custom = (info.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
    return json.loads(custom[CUSTOM_DATA_KEY]) if custom.get(CUSTOM_DATA_KEY) else None

