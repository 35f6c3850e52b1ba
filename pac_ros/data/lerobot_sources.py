"""Reading a LeRobotDataset's episodes: v3.x (episodes concatenated in data files) or v2.x (one file each).

Every path is checked to stay inside the dataset (lerobot_layout.inside, template_path) and
every count and index the metadata declares is checked (lerobot_checks) before a file is
read by it; a data file's row count is checked from its footer before its rows are read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.data.lerobot_checks import (
    MAX_EPISODES,
    check_column_type,
    check_episodes,
    check_tasks,
    check_total_tasks,
)
from pac_ros.data.lerobot_layout import (
    CHUNKS_SIZE,
    DATA_PATH,
    EPISODES_DIR,
    IMAGE_PREFIX,
    INFO_PATH,
    KNOWN_COLUMNS,
    LEGACY_EPISODES_PATH,
    LEGACY_TASKS_PATH,
    TASKS_PATH,
    inside,
    template_path,
    video_meta_key,
)

MAX_VALUES_PER_ROW = 1 << 16  # in all columns of a parquet file together


@dataclass
class SourceEpisode:
    index: int
    file: Path
    table: pa.Table  # this episode's rows, in frame order
    meta: dict[str, Any]  # its episodes.jsonl line or meta/episodes row
    videos: dict[str, tuple[Path, float]] = field(default_factory=dict)  # video key -> (file, episode start in it)


def read_table(path: Path, keep: Callable[[str], bool] | None = None, rows: int | None = None,
               where: str = "") -> pa.Table:
    """The columns of parquet file ``path`` that ``keep`` accepts; with ``rows``, only if it has that many.

    Row and value counts are checked from the file's footer, before any data is read: at most
    ``MAX_VALUES_PER_ROW`` values a row (a list column may not hide millions of values in a row).
    """
    try:
        with pq.ParquetFile(path) as f:
            meta = f.metadata
            if rows is not None and meta.num_rows != rows:
                raise DatasetError(f"{path}: {meta.num_rows} rows, but {where} gives its episodes "
                                   f"{rows} frames in all")
            if meta.num_rows > MAX_EPISODES and rows is None:
                raise DatasetError(f"{path}: {meta.num_rows} rows, more than a metadata file may have ({MAX_EPISODES})")
            values = sum(meta.row_group(i).column(j).num_values
                         for i in range(meta.num_row_groups) for j in range(meta.num_columns))
            if values > max(meta.num_rows, 1) * MAX_VALUES_PER_ROW:
                raise DatasetError(f"{path}: {values} values in {meta.num_rows} rows, more than "
                                   f"{MAX_VALUES_PER_ROW} a row")
            names = f.schema_arrow.names
            if len(set(names)) != len(names):
                raise DatasetError(f"{path}: a column name appears twice in {names}")
            return f.read(columns=[c for c in names if keep is None or keep(c)])
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (named by the dataset's metadata)") from None
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc


def _int_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    col = table.column(name)
    check_column_type(col.type, name, str(path))
    if col.null_count:
        raise DatasetError(f"{path}: column {name!r} has missing values")
    return col.to_numpy()


class V3Source:
    """meta/tasks.parquet, meta/episodes/*/*.parquet, episodes concatenated in data files."""

    def __init__(self, root: Path, info: dict[str, Any], video_keys: list[str]):
        self.root, self.info_path, self.video_keys = root, root / INFO_PATH, video_keys
        self.data_path = info.get("data_path") or DATA_PATH
        self.video_path = info.get("video_path")
        self.wanted = KNOWN_COLUMNS | {k for k in info["features"] if k.startswith(IMAGE_PREFIX)}
        self.tasks = self._tasks()
        check_total_tasks(info, self.info_path, self.tasks, str(root / TASKS_PATH))
        self.meta = self._episodes(info)

    def _tasks(self) -> dict[int, str]:
        path = inside(self.root, TASKS_PATH, str(self.root / TASKS_PATH))
        table = read_table(path)
        try:
            pandas_meta = table.schema.pandas_metadata or {}
        except (ValueError, TypeError):  # not JSON
            pandas_meta = {}
        index_columns = pandas_meta.get("index_columns", []) if isinstance(pandas_meta, dict) else []
        candidates = [c for c in index_columns if isinstance(c, str)] if isinstance(index_columns, list) else []
        candidates += ["task", "__index_level_0__"]
        text = next((c for c in candidates if c in table.column_names), None)
        if text is None or "task_index" not in table.column_names:
            raise DatasetError(f"{path}: expected a task_index column and the task strings (as the index "
                               f"or a 'task' column), found {table.column_names}")
        return check_tasks(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist()), str(path))

    def _episodes(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        where = self.root / EPISODES_DIR
        paths = [inside(self.root, str(p.relative_to(self.root)), str(where))
                 for p in sorted(where.glob("*/*.parquet"))]
        if not paths:
            raise DatasetError(f"{where}: no episode metadata files (chunk-*/file-*.parquet)")
        columns = {"episode_index": "index", "length": "length", "data/chunk_index": "index",
                   "data/file_index": "index", "tasks": "tasks"}
        for key in self.video_keys:
            columns.update({video_meta_key(key, "chunk_index"): "index", video_meta_key(key, "file_index"): "index",
                            video_meta_key(key, "from_timestamp"): "seconds"})
        rows = []
        for path in paths:
            table = read_table(path, lambda c: not c.startswith("stats/"))
            for required in columns:
                if required not in table.column_names and required != "tasks":
                    raise DatasetError(f"{path}: missing column {required!r}")
            rows += table.to_pylist()
        return check_episodes(rows, str(where), info, self.info_path, columns)

    def episodes(self) -> Iterator[SourceEpisode]:
        files: dict[Path, int] = {}  # data file -> frames the metadata places in it
        paths = []
        for m in self.meta:
            path = template_path(self.root, self.data_path, "data_path", self.info_path,
                                 chunk_index=m["data/chunk_index"], file_index=m["data/file_index"])
            files[path] = files.get(path, 0) + m["length"]
            paths.append(path)
        loaded: tuple[Path, pa.Table, np.ndarray] | None = None
        for m, path in zip(self.meta, paths):
            if loaded is None or loaded[0] != path:
                loaded = None  # the previous file's rows are done with
                table = read_table(path, self.wanted.__contains__, files[path], f"{self.root / EPISODES_DIR}")
                if "episode_index" not in table.column_names:
                    raise DatasetError(f"{path}: no episode_index column")
                loaded = (path, table, _int_column(table, "episode_index", path))
            rows = np.flatnonzero(loaded[2] == m["episode_index"])
            if not rows.size:
                raise DatasetError(f"{path}: no rows of episode {m['episode_index']}, which meta/episodes places here")
            contiguous = rows[-1] - rows[0] + 1 == rows.size
            table = loaded[1].slice(rows[0], rows.size) if contiguous else loaded[1].take(pa.array(rows))
            videos = {key: (template_path(self.root, self.video_path, "video_path", self.info_path, video_key=key,
                                          chunk_index=m[video_meta_key(key, "chunk_index")],
                                          file_index=m[video_meta_key(key, "file_index")]),
                            float(m[video_meta_key(key, "from_timestamp")])) for key in self.video_keys}
            yield SourceEpisode(m["episode_index"], path, table, m, videos)


class V2Source:
    """meta/tasks.jsonl, meta/episodes.jsonl, one parquet per episode."""

    def __init__(self, root: Path, info: dict[str, Any], video_keys: list[str]):
        self.root, self.info_path, self.video_keys = root, root / INFO_PATH, video_keys
        self.data_path = info.get("data_path")
        self.video_path = info.get("video_path")
        self.chunks_size = info.get("chunks_size") or CHUNKS_SIZE
        self.wanted = KNOWN_COLUMNS | {k for k in info["features"] if k.startswith(IMAGE_PREFIX)}
        path = self._path(LEGACY_TASKS_PATH)
        self.tasks = check_tasks(((r.get("task_index"), r.get("task")) for r in self._jsonl(path)), str(path))
        check_total_tasks(info, self.info_path, self.tasks, str(path))
        path = self._path(LEGACY_EPISODES_PATH)
        self.meta = check_episodes(self._jsonl(path), str(path), info, self.info_path,
                                   {"episode_index": "index", "length": "length", "tasks": "tasks"})

    def _path(self, rel: str) -> Path:
        return inside(self.root, rel, str(self.root / rel))

    @staticmethod
    def _jsonl(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            raise DatasetError(f"{path}: missing")
        records, _, torn = fmt.read_jsonl(path)
        if torn:
            raise DatasetError(f"{path}: last line is incomplete")
        return records

    def episodes(self) -> Iterator[SourceEpisode]:
        for m in self.meta:
            i = m["episode_index"]
            chunk = i // self.chunks_size
            path = template_path(self.root, self.data_path, "data_path", self.info_path,
                                 episode_chunk=chunk, episode_index=i)
            videos = {key: (template_path(self.root, self.video_path, "video_path", self.info_path,
                                          episode_chunk=chunk, video_key=key, episode_index=i), 0.0)
                      for key in self.video_keys}
            yield SourceEpisode(i, path, read_table(path, self.wanted.__contains__, m["length"],
                                                      f"{self._path(LEGACY_EPISODES_PATH)}"), m, videos)
