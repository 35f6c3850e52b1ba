"""Bring a damaged dataset back to a consistent state: `pac-ros dataset repair`.

Never deletes an episode file: files no index line can name are moved to
``quarantine/``, replaced index files are kept beside the new ones
(``*.replaced-<ns>``). Idempotent: a second run finds nothing to do.

1. Each episode file carries its own index line in its Parquet metadata. If the index
   (meta/episodes.jsonl, meta/tasks.jsonl) is unreadable, or with ``rebuild``, it is
   rebuilt from the files; otherwise its lines are kept and complete files that follow
   them (a commit interrupted before its index line) are added. Only files whose
   episode indices run on without a gap are indexed; the rest are quarantined.
2. Then the writer's own recovery runs (as at every writer start): torn last index
   lines are cut, temp files removed, unindexed episode files quarantined.
3. Finally the dataset is validated; what repair cannot mend (e.g. an indexed file
   whose contents changed) is reported.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset
from pac_ros.data.validate import ValidationReport, validate
from pac_ros.data.writer import DatasetWriter


@dataclass
class RepairReport:
    root: Path
    actions: list[str] = field(default_factory=list)
    rebuilt_index: bool = False
    validation: ValidationReport | None = None

    @property
    def ok(self) -> bool:
        return self.validation is not None and self.validation.ok


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def _quarantine(root: Path, path: Path, why: str, actions: list[str]) -> None:
    actions.append(f"{path}: {why}; moved to {fmt.quarantine(root, path)}")


def _replace_file(path: Path, text: str, actions: list[str]) -> None:
    """Write ``path`` anew, keeping the file it replaces beside it."""
    if path.exists():
        keep = path.with_name(f"{path.name}.replaced-{time.time_ns()}")
        os.replace(path, keep)
        actions.append(f"{path}: kept the old file as {keep.name}")
    fmt.atomic_write(path, text.encode())


def _scan(root: Path, actions: list[str]) -> dict[int, tuple[Path, dict, list[int]]]:
    """Episode files under data/ with the index line each carries: {episode_index: (file, line, task ids)}."""
    found: dict[int, tuple[Path, dict, list[int]]] = {}
    for f in sorted((root / "data").rglob("*.parquet")):
        try:
            pf = pq.ParquetFile(f)
            line = json.loads(pf.schema_arrow.metadata[fmt.EPISODE_META_KEY])
            ids = pf.read(columns=["task_index"]).column("task_index").to_pylist()
            idx = int(line["episode_index"])
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            _quarantine(root, f, f"unreadable episode file ({exc})", actions)
            continue
        if idx in found or f.relative_to(root).as_posix() != fmt.episode_file(idx):
            _quarantine(root, f, f"episode {idx} at an unexpected path or twice", actions)
            continue
        data = f.read_bytes()
        line.update(file=fmt.episode_file(idx), sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        found[idx] = (f, line, [int(t) for t in dict.fromkeys(ids)])
    return found


def rebuild_index(root: str | Path, actions: list[str], keep: list[dict] | None = None,
                  keep_tasks: list[str] | None = None) -> bool:
    """Index the episode files: ``keep`` lines stay as they are (their hashes still catch a changed
    file) and the complete episode files that follow them without a gap are added (a commit
    interrupted between writing the file and its index line); with no ``keep`` every line comes
    from the files. Files after a gap are quarantined. What was done goes to ``actions``;
    returns whether the index was rewritten."""
    root = Path(root)
    found = _scan(root, actions)
    lines = list(keep or [])
    n = len(lines)
    while n in found:
        n += 1
    for idx in sorted(i for i in found if i >= n):
        _quarantine(root, found.pop(idx)[0], f"episode {idx} follows a gap at episode {n}", actions)
    added = [found[i][1] for i in range(len(lines), n)]
    if keep is not None and not added:
        return False

    tasks: dict[int, str] = dict(enumerate(keep_tasks or []))
    for idx in sorted(found):
        _, line, ids = found[idx]
        for t, text in zip(ids, line.get("tasks", [])):
            if tasks.setdefault(t, text) != text:
                raise DatasetError(f"{root}: episode {idx} names task {t} {text!r}, but it is {tasks[t]!r}; "
                                   "cannot rebuild meta/tasks.jsonl")
    if sorted(tasks) != list(range(len(tasks))):
        raise DatasetError(f"{root}: task indices {sorted(tasks)} have gaps; cannot rebuild meta/tasks.jsonl")
    if len(tasks) != len(keep_tasks or []) or keep is None:
        _replace_file(root / fmt.TASKS_PATH, "".join(json.dumps({"task_index": t, "task": tasks[t]}) + "\n"
                                                    for t in range(len(tasks))), actions)
    _replace_file(root / fmt.EPISODES_PATH,
                  "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines + added), actions)
    if keep is None:
        actions.append(f"{root}: index rebuilt from {n} episode file(s)")
    else:
        actions.append(f"{root}: recovered episode(s) {len(lines)}..{n - 1}, complete files an interrupted "
                       "commit had not indexed")
    return True


def repair(root: str | Path, rebuild: bool = False) -> RepairReport:
    root = Path(root)
    report = RepairReport(root)
    info, spec = fmt.load_info(root)  # without info.json there is nothing to repair against
    ds = None
    if not rebuild:
        try:
            ds = Dataset(root)
        except DatasetError as exc:
            report.actions.append(f"index unreadable ({exc}); rebuilding it from the episode files")
            rebuild = True
    if rebuild:
        report.rebuilt_index = rebuild_index(root, report.actions)
    else:
        indexed = {e["file"] for e in ds.episodes}
        if any(f.relative_to(root).as_posix() not in indexed for f in (root / "data").rglob("*.parquet")):
            report.rebuilt_index = rebuild_index(root, report.actions, keep=ds.episodes, keep_tasks=list(ds.tasks))
    logger = logging.getLogger("pac_ros.data")
    handler = _Collect(report.actions)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        DatasetWriter(root, spec, features=bool(info.get("has_environment_state"))).close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    report.validation = validate(root)
    return report
