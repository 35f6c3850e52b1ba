"""Import a rosbag2 recording (MCAP or sqlite3) into a dataset (ROS-free).

``import_mcap`` reads any rosbag2 recording of the live robot's topics (one mcap_export.py
wrote or one ``ros2 bag record`` made): it replays the bag through the live recorder's ``RecorderCore``
(pac_ros/data/recording.py), so steps are paired and episodes cut as when recording live.
Rules and what is carried: docs/dataset.md, "MCAP import".
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rosbags.rosbag2 import Reader
from rosbags.typesys.store import Typestore

from pac_ros.data.conversion_report import ConversionReport
from pac_ros.data.format import DatasetError, fsync_dir
from pac_ros.data.mcap_check import MAX_MESSAGE_BYTES, check_bag, schema_problem
from pac_ros.data.mcap_layout import (
    T_BOOL,
    T_EVENT,
    T_F32,
    T_IMAGE,
    T_JOINTS,
    T_POSES,
    T_STRING,
    make_typestore,
)
from pac_ros.data.messages import stamp_seconds
from pac_ros.data.recording import FinishedEpisode, RecorderCore, commit_episode
from pac_ros.data.writer import DatasetWriter
from pac_ros.spec import Spec
from pac_ros.topics import (
    BLOCK_POSES,
    CAMERA_TOPIC,
    EPISODE_EVENTS,
    INSTRUCTION,
    JOINT_STATES,
    REWARD,
    STATUS,
    SUCCESS,
)

# topics the import reads: topic -> type; the command topic is found per bag
_REQUIRED = {JOINT_STATES: T_JOINTS}
_OPTIONAL = {INSTRUCTION: T_STRING, REWARD: T_F32, SUCCESS: T_BOOL, BLOCK_POSES: T_POSES,
             EPISODE_EVENTS: T_EVENT}
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
    plan.check_schemas(store)
    if not plan.events and plan.counts.get(INSTRUCTION, 0) == 0 and not instruction:
        raise DatasetError(f"{bag}: no {EPISODE_EVENTS} and no {INSTRUCTION} messages, so nothing starts an "
                           "episode; pass the instruction to import_mcap(..., instruction=TEXT)")
    created = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # removed again on a refusal
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
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConversionReport(out=out, episodes=len(replay.lengths), steps=sum(replay.lengths),
                            seconds=time.perf_counter() - started, notes=notes)


class _ImportPlan:
    """Which topics of a bag the import reads, checked against what it needs (types, counts)."""

    def __init__(self, bag: Path, spec: Spec, command_topic: str | None):
        if not bag.exists():
            raise DatasetError(f"{bag}: no such rosbag2 directory")
        checked = check_bag(bag)  # metadata.yaml and every MCAP record, before rosbags reads them
        self.export = checked.export  # what our exporter recorded, if it wrote the bag
        with _reading(bag, "not a readable rosbag2 bag"):
            with Reader(bag) as reader:
                self.types = {topic: info.msgtype for topic, info in reader.topics.items()}
                self.counts = {topic: info.msgcount for topic, info in reader.topics.items()}
                self.schemas = {topic: info.msgdef for topic, info in reader.topics.items()}
        self.bag = bag
        self.cameras = {c.name: CAMERA_TOPIC.format(name=c.name) for c in spec.cameras}
        for topic, msgtype in {**_REQUIRED, **{t: T_IMAGE for t in self.cameras.values()}}.items():
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
        self.read_topics &= set(self.types)

    def check_schemas(self, store: Typestore) -> None:
        """Each topic read must carry the definition the import deserialises with (or none)."""
        for topic in sorted(self.read_topics):
            problem = schema_problem(store, self.types[topic], self.schemas[topic])
            if problem:
                raise DatasetError(f"{self.bag}: topic {topic} ({self.types[topic]}): {problem}")

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
            self.require(wanted, T_JOINTS, "the stamped commands")
            return wanted
        found = sorted(t for t, m in self.types.items() if t.endswith("/command") and m == T_JOINTS
                       and self.counts.get(t))
        if len(found) == 1:
            return found[0]
        if not found:
            raise DatasetError(f"{self.bag}: no stamped command topic (<node>/command, {T_JOINTS}, stamped with "
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
        self.bad_stamps: Counter[str] = Counter()
        self.read: Counter[str] = Counter()  # messages read per topic
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
        E = self.store.types[T_EVENT]
        for topic, msgtype, raw in self._messages():
            self.read[topic] += 1
            if len(raw) > MAX_MESSAGE_BYTES:
                raise DatasetError(f"{plan.bag}: a message on {topic} of {len(raw)} bytes, over the "
                                   f"{MAX_MESSAGE_BYTES}-byte limit")
            try:
                msg = self.store.deserialize_cdr(raw, msgtype)
            except Exception:  # truncated or garbled CDR: a message no subscriber would get
                self.undecodable[topic] += 1
                continue
            if hasattr(msg, "header") and not _valid_stamp(msg.header.stamp):
                self.bad_stamps[topic] += 1  # before the epoch, or nanoseconds past a second
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
        for topic in sorted(plan.read_topics):
            if self.read[topic] != plan.counts[topic]:
                raise DatasetError(f"{plan.bag}: topic {topic}: the bag's metadata declares {plan.counts[topic]} "
                                   f"messages, its storage holds {self.read[topic]} of type {plan.types[topic]}")
        if core.recording:
            if plan.events:
                self.unstopped += 1
            core.stop("end of the bag")

    def _messages(self) -> Iterator[tuple[str, str, bytes]]:
        """(topic, type, raw CDR) of the topics read, in log-time order; the reader's errors
        (a file damaged past what check_bag sees) become DatasetError."""
        with _reading(self.plan.bag, "reading the bag failed"):
            with Reader(self.plan.bag) as reader:
                conns = [c for c in reader.connections if c.topic in self.plan.read_topics]
                messages = reader.messages(connections=conns)  # lazily: errors come while iterating
                for conn, _, raw in messages:
                    yield conn.topic, conn.msgtype, raw

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
            offset = self._start_offset_ns(msg, detail)
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
            core.checkpoint = self._detail(msg, detail, "checkpoint", str)
            self.episode_extra = {"seed": self._detail(msg, detail, "seed", int),
                                  "bag_episode_index": int(msg.episode_index)}
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

    def _detail(self, msg: Any, detail: dict[str, Any], key: str, kind: type) -> Any:
        """A START event's ``detail[key]``: None, or of ``kind``; else the bag is refused."""
        value = detail.get(key)
        if value is None or (isinstance(value, kind) and not isinstance(value, bool) and (
                kind is not int or -(2**63) <= value < 2**63)):
            return value
        raise DatasetError(f"{self.plan.bag}: {EPISODE_EVENTS} START of episode {msg.episode_index}: detail.{key} "
                           f"is {str(value)[:100]!r}, expected {'an int64' if kind is int else 'text'} or null")

    def _start_offset_ns(self, msg: Any, detail: dict[str, Any]) -> int:
        """The export's time shift of this episode (detail.stamp_offset_s), checked: finite,
        not negative, and no larger than a header stamp can be."""
        value = detail.get("stamp_offset_s") or 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and 0 <= value <= 2**31):
            raise DatasetError(f"{self.plan.bag}: {EPISODE_EVENTS} START of episode {msg.episode_index}: "
                               f"detail.stamp_offset_s is {str(value)[:100]!r}, expected seconds in [0, 2**31]")
        return int(round(value * 1e9))

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
            if self.read[topic] and not received and key != "block_poses":
                raise DatasetError(f"{plan.bag}: none of the {self.read[topic]} messages on {topic} could be used: "
                                   f"{self.undecodable[topic]} could not be deserialised, {self.bad_stamps[topic]} "
                                   "had an invalid header stamp")
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
        for topic, n in sorted(self.bad_stamps.items()):
            notes.append(f"{n} messages on {topic} had an invalid header stamp (before 1970, or nanosec >= 1e9) "
                         "and were skipped")
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
        skipped = sum(self.undecodable.values()) + sum(self.bad_stamps.values())
        if skipped:
            why += f"; {skipped} messages were skipped (not deserialisable, or an invalid header stamp)"
        if self.warnings:
            why += f"; first recorder warning: {self.warnings[0]}"
        return why


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _valid_stamp(stamp: Any) -> bool:
    """A builtin_interfaces/Time at or after the epoch, with fewer than 1e9 nanoseconds."""
    return stamp.sec >= 0 and 0 <= stamp.nanosec < 1_000_000_000


@contextmanager
def _reading(bag: Path, what: str) -> Iterator[None]:
    """What rosbags raises on a damaged bag -> DatasetError naming the bag (never MemoryError:
    check_bag bounds every allocation a declared length could cause)."""
    try:
        yield
    except (DatasetError, MemoryError):
        raise
    except Exception as exc:  # rosbags' ReaderError, and struct/Unicode/OS errors of its parsing
        raise DatasetError(f"{bag}: {what}: {str(exc)[:300] or type(exc).__name__}") from exc
