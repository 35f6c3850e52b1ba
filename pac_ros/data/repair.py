"""Bring a damaged dataset back to a consistent state: `pac-ros dataset repair`.

Never deletes an episode file: files no index line can name are moved to
``quarantine/``, replaced index files are kept beside the new ones
(``*.replaced-<ns>``). Idempotent: a second run finds nothing to do.

1. Each episode file carries its own index line in its Parquet metadata. If the index
   (meta/episodes.jsonl, meta/tasks.jsonl) is unreadable, or with ``rebuild``, it is
   rebuilt from the files (``reindex.rebuild_index``). Only files whose episode indices
   run on without a gap are indexed; the rest are quarantined.
2. Then the writer's own recovery runs (as at every writer start): torn last index
   lines are cut, temp files removed, complete files that follow the index (a commit
   interrupted before its index line) indexed from the same lines, the rest quarantined.
3. Finally the dataset is validated; what repair cannot mend (e.g. an indexed file
   whose contents changed) is reported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset
from pac_ros.data.reindex import rebuild_index
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


def repair(root: str | Path, rebuild: bool = False) -> RepairReport:
    root = Path(root)
    report = RepairReport(root)
    info, spec = fmt.load_info(root)  # without info.json there is nothing to repair against
    indexed = 0
    if not rebuild:
        try:
            indexed = len(Dataset(root))
        except DatasetError as exc:
            report.actions.append(f"index unreadable ({exc}); rebuilding it from the episode files")
            rebuild = True
    if rebuild:
        report.rebuilt_index = rebuild_index(root, report.actions)
    logger = logging.getLogger("pac_ros.data")
    handler = _Collect(report.actions)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        writer = DatasetWriter(root, spec, features=bool(info.get("has_environment_state")))
        writer.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    if not rebuild and writer.num_episodes > indexed:
        report.rebuilt_index = True  # the writer indexed files an interrupted commit left
    report.validation = validate(root)
    return report
