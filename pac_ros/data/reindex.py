"""Index episode files from the index line each one carries (its Parquet metadata).

One mechanism for two callers: every ``DatasetWriter`` start (a commit interrupted
between its file's rename and its index line leaves a complete, unindexed file) and
``pac-ros dataset repair`` (which may also rebuild the whole index). Files that
cannot be indexed go to ``quarantine/``; nothing is deleted.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError


def unindexed_files(root: Path, indexed: set[str]) -> list[Path]:
    """Episode files under data/ that no index line names."""
    return [f for f in sorted((root / "data").rglob("*.parquet"))
            if f.is_file() and f.relative_to(root).as_posix() not in indexed]


def _quarantine(root: Path, path: Path, why: str, actions: list[str]) -> None:
    actions.append(f"{path}: {why}; moved to {fmt.quarantine(root, path)}")


def _replace_file(path: Path, text: str, actions: list[str]) -> None:
    """Write ``path`` anew, keeping the file it replaces beside it."""
    if path.exists():
        keep = path.with_name(f"{path.name}.replaced-{time.time_ns()}")
        os.replace(path, keep)
        actions.append(f"{path}: kept the old file as {keep.name}")
    fmt.atomic_write(path, text.encode())


def _append(path: Path, text: str) -> None:
    """One write and an fsync, like a commit's (a crash leaves a torn last line, cut at the next start)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fmt.write_all(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(root: Path, files: list[Path], actions: list[str]) -> dict[int, tuple[Path, dict, list[int]]]:
    """The index line each file carries: {episode_index: (file, line, task ids)}."""
    found: dict[int, tuple[Path, dict, list[int]]] = {}
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            line = json.loads(pf.schema_arrow.metadata[fmt.EPISODE_META_KEY])
            ids = pf.read(columns=["task_index"]).column("task_index").to_pylist()
            idx = int(line["episode_index"])
            if pf.metadata.num_rows != line["length"]:
                raise ValueError(f"{pf.metadata.num_rows} rows, its line says {line['length']}")
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            _quarantine(root, f, f"unreadable episode file ({exc})", actions)
            continue
        if idx in found or f.relative_to(root).as_posix() != fmt.episode_file(idx):
            _quarantine(root, f, f"holds episode {idx}, which belongs at {fmt.episode_file(idx)} "
                                 "(or is there twice)", actions)
            continue
        data = f.read_bytes()
        line.update(file=fmt.episode_file(idx), sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        found[idx] = (f, line, [int(t) for t in dict.fromkeys(ids)])
    return found


def rebuild_index(root: str | Path, actions: list[str], keep: list[dict] | None = None,
                  keep_tasks: list[str] | None = None) -> bool:
    """Index the episode files.

    With ``keep`` (the readable index lines, and ``keep_tasks`` its tasks) those lines stay
    as they are and only unindexed files are read: the complete ones that follow the last
    line without a gap (a commit interrupted before its index line) get their lines and any
    task lines appended, as the commit would have. With no ``keep`` every line comes from
    the files and both index files are rewritten (the old ones kept beside them). Files
    after a gap are quarantined. What was done goes to ``actions``; returns whether the
    index changed.
    """
    root = Path(root)
    lines = list(keep or [])
    files = unindexed_files(root, {e["file"] for e in lines}) if keep is not None else \
        sorted((root / "data").rglob("*.parquet"))
    if keep is not None and not files:
        return False
    found = _scan(root, files, actions)
    n = len(lines)
    while n in found:
        n += 1
    for idx in sorted(i for i in found if i >= n or i < len(lines)):
        _quarantine(root, found.pop(idx)[0], f"episode {idx} follows a gap at episode {n}" if idx >= n
                    else f"episode {idx} is indexed already", actions)
    added = [found[i][1] for i in range(len(lines), n)]
    if keep is not None and not added:
        return False

    known = list(keep_tasks or [])
    tasks: dict[int, str] = dict(enumerate(known))
    for idx in sorted(found):
        _, line, ids = found[idx]
        for t, text in zip(ids, line.get("tasks", [])):
            if tasks.setdefault(t, text) != text:
                raise DatasetError(f"{root}: episode {idx} names task {t} {text!r}, but it is {tasks[t]!r}; "
                                   "cannot rebuild meta/tasks.jsonl")
    if sorted(tasks) != list(range(len(tasks))):
        raise DatasetError(f"{root}: task indices {sorted(tasks)} have gaps; cannot rebuild meta/tasks.jsonl")

    def task_lines(ids) -> str:
        return "".join(json.dumps({"task_index": t, "task": tasks[t]}) + "\n" for t in ids)

    def episode_lines(items) -> str:
        return "".join(json.dumps(line, allow_nan=False) + "\n" for line in items)

    if keep is None:
        _replace_file(root / fmt.TASKS_PATH, task_lines(range(len(tasks))), actions)
        _replace_file(root / fmt.EPISODES_PATH, episode_lines(added), actions)
        actions.append(f"{root}: index rebuilt from {n} episode file(s)")
        return True
    if len(tasks) > len(known):  # task lines first, as in a commit
        _append(root / fmt.TASKS_PATH, task_lines(range(len(known), len(tasks))))
    _append(root / fmt.EPISODES_PATH, episode_lines(added))
    actions.append(f"{root}: recovered episode(s) {len(lines)}..{n - 1}: complete file(s) whose commit was "
                   "interrupted before the index line; indexed from the line each file carries")
    return True
