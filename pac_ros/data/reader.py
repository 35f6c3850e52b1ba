"""Read-only access to a pac_ros episode dataset.

Only episodes named by a complete line of meta/episodes.jsonl exist; unindexed parquet
files and a torn last index line (an interrupted commit) are ignored.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data.format import DatasetError
from pac_ros.spec import Spec

log = logging.getLogger("pac_ros.data")


@dataclass
class Episode:
    """One episode, one row per step (RLDS: the last row holds the final observation;
    its action/reward are not transitions)."""

    timestamp: np.ndarray  # [T] float64, observation stamps (s)
    joint_positions: np.ndarray  # [T, n] float32, spec joint order
    actions: np.ndarray  # [T, n] float32, joint command computed from this row's observation
    rewards: np.ndarray  # [T] float32, reward after this row's action
    is_first: np.ndarray  # [T] bool
    is_last: np.ndarray  # [T] bool
    is_terminal: np.ndarray  # [T] bool (only ever True on the last row)
    features: np.ndarray | None  # [T, 7 * n_blocks] float32, or None
    task_index: np.ndarray  # [T] int64
    instructions: list[str]  # per row
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> uint8[T, H, W, C]
    meta: dict[str, Any] = field(default_factory=dict)  # the index line

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def episode_index(self) -> int:
        return self.meta["episode_index"]

    @property
    def instruction(self) -> str:
        return self.instructions[0]


class Dataset:
    """A dataset directory opened read-only; a snapshot of the index at open (``refresh``)."""

    def __init__(self, root: str | os.PathLike, spec: Spec | None = None):
        self.root = Path(root)
        self.info, self.spec = fmt.load_info(self.root)
        if spec is not None:
            fmt.check_spec(spec, self.spec, self.root)
        self.has_features = bool(self.info.get("has_environment_state"))
        self.refresh()

    def refresh(self) -> None:
        """Re-read the index (a writer may have committed more episodes)."""
        # Episodes first: a writer appends task lines before the episode that uses them.
        ep_path = self.root / fmt.EPISODES_PATH
        recs, _, torn = fmt.read_jsonl(ep_path)
        if torn:
            log.info("%s: ignoring a torn last line (%d bytes)", ep_path, len(torn))
        fmt.check_episodes(ep_path, recs)
        tasks_path = self.root / fmt.TASKS_PATH
        tasks, _, _ = fmt.read_jsonl(tasks_path)
        self.tasks = fmt.parse_tasks(tasks_path, tasks)
        self._episodes = recs

    # ---- index ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._episodes)

    @property
    def episodes(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._episodes]

    @property
    def total_steps(self) -> int:
        return sum(e["length"] for e in self._episodes)

    @property
    def cameras(self) -> list[str]:
        return self.spec.camera_names

    def episode_path(self, i: int) -> Path:
        return self.root / self._meta(i)["file"]

    def size_bytes(self) -> int:
        """Bytes on disk of the metadata and the committed episode files."""
        total = 0
        for rel in (fmt.INFO_PATH, fmt.TASKS_PATH, fmt.EPISODES_PATH):
            try:
                total += (self.root / rel).stat().st_size
            except OSError:
                pass
        for e in self._episodes:
            try:
                total += (self.root / e["file"]).stat().st_size
            except OSError:
                pass
        return total

    def fingerprint(self) -> str:
        """Hash of the spec and, per committed episode, what training reads of it: its columns' digest
        (``content_sha256``), its outcome and its instructions. The same episodes recorded again, copied
        or re-indexed keep it; a changed value, label or episode order changes it. An episode indexed
        without a digest (older writers) counts by its file's sha256, so an older dataset keeps the
        fingerprint it had, which names that recording rather than its contents."""
        h = hashlib.sha256(self.spec.fingerprint().encode())
        for e in self._episodes:
            content = e.get(fmt.CONTENT_KEY)
            if content is None:
                h.update(f"\n{e['episode_index']}:{e['sha256']}".encode())
            else:
                h.update(json.dumps([e["episode_index"], content, e.get("success"), e["tasks"]]).encode())
        return h.hexdigest()[:16]

    # ---- episodes ------------------------------------------------------------------------
    def _meta(self, i: int) -> dict[str, Any]:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"episode index must be an int, got {type(i).__name__}")
        if not 0 <= i < len(self._episodes):
            raise IndexError(f"episode {i} out of range: dataset {self.root} has {len(self)} episodes")
        return self._episodes[int(i)]

    def __getitem__(self, i: int) -> Episode:
        return self.load_episode(i)

    def iter_episodes(self, images: bool = True, verify: bool = True) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.load_episode(i, images=images, verify=verify)

    def load_episode(self, i: int, images: bool = True, verify: bool = True) -> Episode:
        """Episode ``i`` as numpy arrays; ``verify`` checks the file's sha256 against the index."""
        meta = self._meta(i)
        path = self.root / meta["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read episode {meta['episode_index']}: {exc}") from exc
        if verify and hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise DatasetError(f"{path}: sha256 does not match meta/episodes.jsonl (file changed or corrupted)")
        feats = self.info["features"]
        image_cols = {fmt.image_column(c.name): c for c in self.spec.cameras}
        columns = [k for k in feats if images or k not in image_cols]
        try:
            table = pq.read_table(pa.BufferReader(data), columns=columns)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc
        T = meta["length"]
        if table.num_rows != T:
            raise DatasetError(f"{path}: {table.num_rows} rows, index says {T}")

        def col(name: str, dtype: str, width: int = 1) -> np.ndarray:
            try:
                arr = table.column(name).combine_chunks()
                if width > 1 or pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
                    out = arr.flatten().to_numpy(zero_copy_only=False).reshape(T, width)
                else:
                    out = arr.to_numpy(zero_copy_only=False)
                return out.astype(dtype, copy=False)
            except (KeyError, ValueError, pa.ArrowException) as exc:
                raise DatasetError(f"{path}: column {name!r}: {exc}") from exc

        n = self.spec.action_dim
        ep_index = col("episode_index", "int64")
        if not (ep_index == meta["episode_index"]).all():
            raise DatasetError(f"{path}: episode_index column does not match the index line")
        task_index = col("task_index", "int64")
        bad = [int(t) for t in np.unique(task_index) if not 0 <= t < len(self.tasks)]
        if bad:
            raise DatasetError(f"{path}: task_index {bad} not in {fmt.TASKS_PATH}")
        decoded: dict[str, np.ndarray] = {}
        if images:
            for name, cam in image_cols.items():
                blobs = table.column(name).to_pylist()
                out = np.empty((T, *cam.shape), np.uint8)
                for t, blob in enumerate(blobs):
                    out[t] = fmt.decode_image(blob, cam, f"{path}: {name}[{t}]")
                decoded[cam.name] = out
        return Episode(
            timestamp=col("timestamp", "float64"),
            joint_positions=col("observation.state", "float32", n),
            actions=col("action", "float32", n),
            rewards=col("next.reward", "float32"),
            is_first=col("is_first", "bool"),
            is_last=col("is_last", "bool"),
            is_terminal=col("is_terminal", "bool"),
            features=(col("observation.environment_state", "float32", self.spec.feature_dim)
                      if self.has_features else None),
            task_index=task_index,
            instructions=[self.tasks[t] for t in task_index],
            images=decoded,
            meta=dict(meta),
        )

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, {len(self)} episodes, {self.total_steps} steps)"
