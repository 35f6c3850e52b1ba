"""Episode dataset writer: steps are kept in memory, an episode is committed atomically.

Commit order (crash safe, even under SIGKILL): new task lines appended + fsynced; the
episode parquet written to a temp name in its chunk dir, fsynced, renamed, dir
fsynced; then its index line appended to meta/episodes.jsonl and fsynced. Opening a
dataset for writing recovers what an interrupted writer left (see ``_recover``): a
commit that died after its file's rename is completed from the line the file carries.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import numbers
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data import reindex
from pac_ros.data.format import DatasetError
from pac_ros.data.messages import FLOAT32_MAX
from pac_ros.spec import CameraSpec, Spec

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process lock
    fcntl = None

log = logging.getLogger("pac_ros.data")


# ---- input validation ------------------------------------------------------------------
def _number(name: str, value: Any, float32: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DatasetError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise DatasetError(f"{name}: must be finite, got {out}")
    if float32 and abs(out) > FLOAT32_MAX:
        raise DatasetError(f"{name}: {out} does not fit float32 (stored as float32)")
    return out


def _vector(name: str, value: Any, names: list[str]) -> np.ndarray:
    n = len(names)
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise DatasetError(f"{name}: expected {n} numbers, got {type(value).__name__}: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"{name}: expected {n} numbers, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise DatasetError(f"{name}: expected shape ({n},), got {arr.shape}")
    out = arr.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
        raise DatasetError(f"{name}[{i}] ({names[i]}): non-finite value {arr[i]!r}{more}")
    return out


def _image(cam: CameraSpec, value: Any) -> np.ndarray:
    where = f"images[{cam.name!r}]"
    if not isinstance(value, np.ndarray):
        raise DatasetError(f"{where}: expected a numpy array of shape {cam.shape} uint8, "
                           f"got {type(value).__name__}")
    shapes = {cam.shape, (cam.height, cam.width)} if cam.channels == 1 else {cam.shape}
    if value.dtype != np.uint8 or value.shape not in shapes:
        raise DatasetError(f"{where}: expected shape {cam.shape} uint8, got {value.shape} {value.dtype}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{name}: expected a non-empty string, got {value!r}")
    return value


class EpisodeBuffer:
    """An episode being recorded: validated steps held in memory (images as PNG bytes).

    Made by ``DatasetWriter.begin_episode``; one thread adds steps, any thread commits.
    """

    def __init__(self, writer: "DatasetWriter", instruction: str, source: str,
                 checkpoint: str | None, seed: int | None, metadata: dict[str, Any]):
        self._writer = writer
        self._spec = writer.spec
        self.instruction = instruction
        self.source = source
        self.checkpoint = checkpoint
        self.seed = seed
        self.metadata = metadata
        self.state = "open"  # open | committed | discarded
        self.episode_index: int | None = None
        self._ts: list[float] = []
        self._q: list[np.ndarray] = []
        self._a: list[np.ndarray] = []
        self._r: list[float] = []
        self._f: list[np.ndarray] = []
        self._instr: list[str] = []
        self._png: dict[str, list[bytes]] = {c.name: [] for c in self._spec.cameras}

    def __len__(self) -> int:
        return len(self._ts)

    def add_step(self, timestamp: float, joint_positions: Any, images: Mapping[str, np.ndarray],
                 action: Any, reward: float = 0.0, features: Any = None,
                 instruction: str | None = None) -> None:
        """Append one step: the observation (stamp, joints, images[, features]), the command
        computed from it and the reward that followed. Raises DatasetError naming the bad
        field; the episode is unchanged then."""
        if self.state != "open":
            raise DatasetError(f"add_step: episode is {self.state}; begin a new episode")
        spec = self._spec
        t = _number("timestamp", timestamp)
        if self._ts and not t > self._ts[-1]:
            raise DatasetError(f"timestamp: {t!r} is not after the previous step's {self._ts[-1]!r}")
        q = _vector("joint_positions", joint_positions, spec.joint_names)
        a = _vector("action", action, spec.joint_names)
        r = _number("reward", reward, float32=True)
        f = None
        if self._writer.has_features:
            if features is None:
                raise DatasetError(f"features: this dataset stores observation.environment_state "
                                   f"({spec.feature_dim} values); got None")
            names = [f"{b}.{k}" for b in spec.blocks for k in fmt.POSE_NAMES]
            f = _vector("features", features, names)
        elif features is not None:
            raise DatasetError("features: this dataset was created without features "
                               "(DatasetWriter(..., features=True) stores them)")
        if not isinstance(images, Mapping):
            raise DatasetError(f"images: expected a dict camera -> array, got {type(images).__name__}")
        unknown = sorted(set(images) - set(self._png))
        if unknown:
            raise DatasetError(f"images: unknown camera(s) {unknown}; this dataset's cameras are "
                               f"{spec.camera_names}")
        missing = [c for c in spec.camera_names if c not in images]
        if missing:
            raise DatasetError(f"images: missing camera(s) {missing}")
        checked = [(cam, _image(cam, images[cam.name])) for cam in spec.cameras]
        instr = self.instruction if instruction is None else _text("instruction", instruction)
        pngs = [fmt.encode_png(img, cam) for cam, img in checked]
        # validated: only now change the buffer
        self.instruction = instr
        self._ts.append(t)
        self._q.append(q)
        self._a.append(a)
        self._r.append(r)
        if f is not None:
            self._f.append(f)
        self._instr.append(instr)
        for (cam, _), png in zip(checked, pngs):
            self._png[cam.name].append(png)

    def _clear(self) -> None:
        self._q, self._a, self._f = [], [], []
        self._png = {k: [] for k in self._png}


class DatasetWriter:
    """Create a dataset directory, or open an existing one to append episodes.

    An existing dataset's spec must match ``spec`` (else DatasetError naming the file
    and the differences). ``features``: store block poses (observation.environment_state);
    None = as the existing dataset does, False for a new one. One writer per dataset
    at a time (an flock on meta/writer.lock).
    """

    def __init__(self, root: str | os.PathLike, spec: Spec, features: bool | None = None):
        self.root = Path(root)
        self.spec = spec
        self._lock = threading.Lock()
        self._closed = True
        self._open_episodes: "weakref.WeakSet[EpisodeBuffer]" = weakref.WeakSet()
        self._lock_fd: int | None = None
        self._episodes_fd: int | None = None
        self._tasks_fd: int | None = None
        meta = self.root / "meta"
        try:
            meta.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{self.root}: cannot create dataset directory: {exc}") from exc
        self._acquire_lock(meta)
        try:
            if (self.root / fmt.INFO_PATH).exists():
                self._open_existing(features)
            else:
                self._create(bool(features))
            self._recover()
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._episodes_fd = os.open(self.root / fmt.EPISODES_PATH, flags, 0o644)
            self._tasks_fd = os.open(self.root / fmt.TASKS_PATH, flags, 0o644)
        except BaseException:
            self._release()
            raise
        self._closed = False

    # ---- opening -----------------------------------------------------------------------
    def _acquire_lock(self, meta: Path) -> None:
        path = self.root / fmt.LOCK_PATH
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise DatasetError(f"{self.root}: already open for writing by another writer "
                                   f"(pid {holder}, lock {path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _create(self, features: bool) -> None:
        others = sorted(p.name for p in self.root.iterdir() if p.name not in ("meta", "data"))
        if others:
            raise DatasetError(f"{self.root}: directory is not empty ({others[:5]}) and is not a "
                               f"pac_ros dataset (no {fmt.INFO_PATH}); pick a new directory")
        ep_lines = self.root / fmt.EPISODES_PATH
        if any((self.root / "data").rglob("*.parquet")) or (ep_lines.exists() and ep_lines.stat().st_size):
            raise DatasetError(f"{self.root}: has episode data but no {fmt.INFO_PATH}; not opening it")
        (self.root / "data").mkdir(exist_ok=True)
        for rel in (fmt.EPISODES_PATH, fmt.TASKS_PATH):
            fmt.atomic_write(self.root / rel, b"")
        self.has_features = features
        self.info = fmt.make_info(self.spec, features)
        blob = json.dumps(self.info, indent=2).encode() + b"\n"
        fmt.atomic_write(self.root / fmt.INFO_PATH, blob)  # written last: marks the dataset created
        fmt.fsync_dir(self.root)
        log.info("created dataset %s (spec %s, features=%s)", self.root, self.spec.fingerprint(), features)

    def _open_existing(self, features: bool | None) -> None:
        self.info, found = fmt.load_info(self.root)
        fmt.check_spec(self.spec, found, self.root)
        has = bool(self.info.get("has_environment_state"))
        if features is not None and bool(features) != has:
            raise DatasetError(f"{self.root / fmt.INFO_PATH}: dataset was created with features={has}, "
                               f"writer asked for features={bool(features)}")
        self.has_features = has

    def _recover(self) -> None:
        """Undo what an interrupted writer left: torn index lines and temp files go; complete
        episode files an interrupted commit had not indexed are indexed from the line each
        carries (``reindex``, as `repair` does), other unindexed files are quarantined."""
        tasks_path, ep_path = self.root / fmt.TASKS_PATH, self.root / fmt.EPISODES_PATH
        for path in (tasks_path, ep_path):
            _, good, torn = fmt.read_jsonl(path)
            if torn:
                self._truncate(path, good, torn)
        for p in sorted((self.root / "meta").glob("*" + fmt.TMP_SUFFIX)):
            self._remove(p, "unfinished temp file")
        for p in sorted((self.root / "data").rglob("*" + fmt.TMP_SUFFIX)):
            if p.is_file():
                self._remove(p, "unfinished temp file")
        recs, tasks = self._read_index()
        actions: list[str] = []
        if reindex.rebuild_index(self.root, actions, keep=recs, keep_tasks=tasks):
            recs, tasks = self._read_index()
        for action in actions:
            log.warning("%s", action)
        self._tasks = tasks
        self._task_ids = {t: i for i, t in enumerate(self._tasks)}
        self._next_episode = len(recs)
        self._next_index = sum(r["length"] for r in recs)
        missing = [r["file"] for r in recs if not (self.root / r["file"]).exists()]
        if missing:
            log.error("%s: %d indexed episode file(s) are missing, e.g. %s", self.root, len(missing), missing[0])

    def _read_index(self) -> tuple[list[dict[str, Any]], list[str]]:
        tasks_path, ep_path = self.root / fmt.TASKS_PATH, self.root / fmt.EPISODES_PATH
        recs, _, _ = fmt.read_jsonl(tasks_path)
        tasks = fmt.parse_tasks(tasks_path, recs)
        recs, _, _ = fmt.read_jsonl(ep_path)
        fmt.check_episodes(ep_path, recs)
        return recs, tasks

    @staticmethod
    def _truncate(path: Path, size: int, torn: bytes) -> None:
        with open(path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path, len(torn))

    @staticmethod
    def _remove(path: Path, why: str) -> None:
        path.unlink()
        fmt.fsync_dir(path.parent)
        log.warning("%s: removed %s", path, why)

    # ---- episodes ----------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return self._next_episode

    @property
    def total_steps(self) -> int:
        return self._next_index

    @property
    def tasks(self) -> list[str]:
        return list(self._tasks)

    def begin_episode(self, instruction: str, source: str = "expert", checkpoint: str | None = None,
                      seed: int | None = None, metadata: Mapping[str, Any] | None = None) -> EpisodeBuffer:
        self._check_open()
        instruction = _text("instruction", instruction)
        source = _text("source", source)
        if checkpoint is not None:
            checkpoint = _text("checkpoint", checkpoint)
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
                raise DatasetError(f"seed: expected an integer or None, got {seed!r}")
            seed = int(seed)
        meta = dict(metadata or {})
        for key, value in meta.items():
            try:
                json.dumps({key: value}, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"metadata[{key!r}]: not JSON-serialisable: {exc}") from exc
        ep = EpisodeBuffer(self, instruction, source, checkpoint, seed, meta)
        self._open_episodes.add(ep)
        return ep

    def discard(self, ep: EpisodeBuffer) -> None:
        """Drop an episode's steps; nothing is written."""
        self._check_mine(ep)
        with self._lock:
            if ep.state == "committed":
                raise DatasetError(f"discard: episode {ep.episode_index} is already committed")
            ep.state = "discarded"
        ep._clear()
        self._open_episodes.discard(ep)

    def commit(self, ep: EpisodeBuffer, terminal: bool, success: bool | None = None,
               dropped: int = 0) -> int:
        """Write ``ep`` atomically and index it; returns its episode_index.

        The last row is the final observation (is_last; is_terminal = ``terminal``: a
        true end such as success, versus a time-out/truncation). ``success`` defaults
        to ``terminal``. Safe to call from a worker thread; commits are serialised.
        """
        self._check_mine(ep)
        if not isinstance(terminal, (bool, np.bool_)):
            raise DatasetError(f"terminal: expected True/False, got {terminal!r}")
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise DatasetError(f"success: expected True/False/None, got {success!r}")
        if isinstance(dropped, bool) or not isinstance(dropped, numbers.Integral) or dropped < 0:
            raise DatasetError(f"dropped: expected a count >= 0, got {dropped!r}")
        with self._lock:
            self._check_open()
            if ep.state != "open":
                raise DatasetError(f"commit: episode is {ep.state}")
            if len(ep) == 0:
                raise DatasetError("commit: episode has no steps (discard it instead)")
            idx = self._commit_locked(ep, bool(terminal), bool(terminal if success is None else success),
                                      int(dropped))
            ep.state = "committed"
            ep.episode_index = idx
        ep._clear()
        self._open_episodes.discard(ep)
        return idx

    def _commit_locked(self, ep: EpisodeBuffer, terminal: bool, success: bool, dropped: int) -> int:
        idx, start, T = self._next_episode, self._next_index, len(ep)
        tasks = list(dict.fromkeys(ep._instr))
        self._add_tasks(tasks)
        rel = fmt.episode_file(idx)
        rewards = np.asarray(ep._r, np.float32)
        stamps = ep._ts
        duration = stamps[-1] - stamps[0]
        line = {
            "episode_index": idx,
            "tasks": tasks,
            "length": T,
            "instruction": ep._instr[0],
            "file": rel,
            "index_from": start,
            "source": ep.source,
            "checkpoint": ep.checkpoint,
            "success": success,
            "terminal": terminal,
            "return": float(np.sum(rewards[:-1], dtype=np.float64)),
            "seed": ep.seed,
            "start_stamp": stamps[0],
            "end_stamp": stamps[-1],
            "duration_s": duration,
            "achieved_rate_hz": (T - 1) / duration if duration > 0 else None,
            "dropped": dropped,
            "metadata": ep.metadata,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        return self._store(self._serialize(ep, idx, start, line), line)

    def _add_tasks(self, tasks: list[str]) -> None:
        new = [t for t in tasks if t not in self._task_ids]
        if new:  # task lines first: every committed row's task_index is then resolvable
            lines = "".join(json.dumps({"task_index": len(self._tasks) + i, "task": t}) + "\n"
                            for i, t in enumerate(new))
            self._append_safely(self._tasks_fd, lines.encode(), fmt.TASKS_PATH)
            for t in new:
                self._task_ids[t] = len(self._tasks)
                self._tasks.append(t)

    def _store(self, data: bytes, line: dict[str, Any]) -> int:
        """Write an episode file atomically, then its index line (the commit point)."""
        idx, T = line["episode_index"], line["length"]
        final = self.root / line["file"]
        line["sha256"] = hashlib.sha256(data).hexdigest()
        line["bytes"] = len(data)

        tmp = fmt.tmp_name(final)
        try:
            if not final.parent.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                fmt.fsync_dir(final.parent.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                fmt.write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._rename(tmp, final)
        except OSError as exc:
            _unlink_quiet(tmp)
            raise DatasetError(f"{final}: cannot write episode: {exc}") from exc
        fmt.fsync_dir(final.parent)
        try:
            self._append_safely(self._episodes_fd, (json.dumps(line, allow_nan=False) + "\n").encode(),
                                fmt.EPISODES_PATH)
        except BaseException:
            _unlink_quiet(final)  # the commit failed: leave no file for the next start to index
            raise
        self._next_episode += 1
        self._next_index += T
        log.debug("committed episode %d (%d steps, %d bytes)", idx, T, len(data))
        return idx

    def _serialize(self, ep: EpisodeBuffer, idx: int, start: int, line: dict[str, Any]) -> bytes:
        T, n = len(ep), self.spec.action_dim
        feats = self.info["features"]

        def fixed(rows: list[np.ndarray], width: int) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(pa.array(np.stack(rows).reshape(-1)), width)

        is_last = np.zeros(T, bool)
        is_last[-1] = True
        cols: dict[str, pa.Array] = {
            "timestamp": pa.array(np.asarray(ep._ts, np.float64)),
            "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "episode_index": pa.array(np.full(T, idx, np.int64)),
            "index": pa.array(np.arange(start, start + T, dtype=np.int64)),
            "task_index": pa.array(np.array([self._task_ids[s] for s in ep._instr], np.int64)),
            "observation.state": fixed(ep._q, n),
            "action": fixed(ep._a, n),
            "next.reward": pa.array(np.asarray(ep._r, np.float32)),
            "is_first": pa.array(np.arange(T) == 0),
            "is_last": pa.array(is_last),
            "is_terminal": pa.array(is_last & line["terminal"]),
        }
        if self.has_features:
            cols["observation.environment_state"] = fixed(ep._f, self.spec.feature_dim)
        for cam in self.spec.cameras:
            cols[fmt.image_column(cam.name)] = pa.array(ep._png[cam.name], pa.binary())
        table = pa.Table.from_arrays([cols[k] for k in feats], schema=fmt.arrow_schema(feats))
        return self._parquet_bytes(_with_line(table, line))

    def _parquet_bytes(self, table: pa.Table) -> bytes:
        """An episode table as a Parquet file: PNG columns stored as they are, the rest zstd."""
        images = {fmt.image_column(c.name) for c in self.spec.cameras}
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression={k: ("none" if k in images else "zstd") for k in table.column_names},
                       use_dictionary=["task_index"])
        return sink.getvalue().to_pybytes()

    def copy_episode(self, source, i: int) -> int:
        """Append episode ``i`` of the Dataset ``source`` (same spec) without decoding it:
        its rows are renumbered and its task ids mapped into this dataset. Returns its index here."""
        check_copyable(self.spec, self.has_features, source)
        old = source.episodes[i]
        path = source.root / old["file"]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != old["sha256"]:
            raise DatasetError(f"{path}: sha256 does not match its index line; validate/repair the source first")
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc
        with self._lock:
            self._check_open()
            idx, start, T = self._next_episode, self._next_index, table.num_rows
            src_ids = table.column("task_index").to_numpy()
            texts = [source.tasks[t] for t in dict.fromkeys(src_ids.tolist())]
            self._add_tasks(texts)
            new_ids = np.array([self._task_ids[source.tasks[t]] for t in src_ids], np.int64)
            line = dict(old, episode_index=idx, file=fmt.episode_file(idx), index_from=start)
            line.pop("sha256", None)
            line.pop("bytes", None)
            for name, values in (("episode_index", np.full(T, idx, np.int64)),
                                 ("index", np.arange(start, start + T, dtype=np.int64)), ("task_index", new_ids)):
                table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
            return self._store(self._parquet_bytes(_with_line(table, line)), line)

    def _append_safely(self, fd: int | None, data: bytes, what: str) -> None:
        size = os.fstat(fd).st_size
        try:
            self._append_line(fd, data, what)
        except OSError as exc:
            try:  # never leave a torn line that a later append would bury mid-file
                os.ftruncate(fd, size)
            except OSError:
                self._closed = True
                self._release()
                raise DatasetError(f"{self.root / what}: append failed ({exc}) and could not be "
                                   f"undone; writer closed, reopen the dataset to recover") from exc
            raise DatasetError(f"{self.root / what}: cannot append: {exc}") from exc

    # Separate methods so the crash test can interrupt a commit at each step.
    def _rename(self, tmp: Path, final: Path) -> None:
        os.replace(tmp, final)

    def _append_line(self, fd: int | None, data: bytes, what: str) -> None:
        fmt.write_all(fd, data)
        os.fsync(fd)

    # ---- closing -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DatasetError(f"{self.root}: writer is closed")

    def _check_mine(self, ep: EpisodeBuffer) -> None:
        if not isinstance(ep, EpisodeBuffer) or ep._writer is not self:
            raise DatasetError("episode was not begun by this writer")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = [e for e in self._open_episodes if e.state == "open" and len(e)]
            if pending:
                log.warning("%s: closing with %d uncommitted episode(s); their steps are dropped",
                            self.root, len(pending))
            self._release()

    def _release(self) -> None:
        for name in ("_episodes_fd", "_tasks_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)  # closing the lock fd releases the flock
                setattr(self, name, None)

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            self._closed = True
            self._release()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._next_episode} episodes"
        return f"DatasetWriter({str(self.root)!r}, {state})"


def check_copyable(spec: Spec, has_features: bool, source) -> None:
    """Episodes of the Dataset ``source`` can go into a dataset of ``spec`` / ``has_features``."""
    fmt.check_spec(spec, source.spec, source.root)
    if bool(source.has_features) != bool(has_features):
        raise DatasetError(f"{source.root}: block features {bool(source.has_features)}, the destination's "
                           f"{bool(has_features)}; cannot copy episodes between them")


def _with_line(table: pa.Table, line: dict[str, Any]) -> pa.Table:
    """``table`` carrying ``line`` (with the digest of its columns added) as its index line."""
    line[fmt.CONTENT_KEY] = fmt.content_digest(table)
    meta = dict(table.schema.metadata or {})
    meta[b"pac_ros.format"] = f"{fmt.FORMAT_NAME} {fmt.FORMAT_VERSION}".encode()
    meta[fmt.EPISODE_META_KEY] = json.dumps(line, allow_nan=False).encode()
    return table.replace_schema_metadata(meta)


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
