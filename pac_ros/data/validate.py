"""Check every committed episode against the index and the spec: `pac-ros dataset validate`.

Reading an episode already checks its sha256, row count, columns, task indices and
image decoding (reader.load_episode); on top of that each episode must have strictly
increasing stamps, finite values, joint values within the spec's limits, exactly one
first row (row 0) and one last row (the final row), and an index line that agrees with
its file: the rewards' return, and every key of the index line its file carries (an
edited line). Files under data/ that no index line names are orphans
(e.g. the leftovers of a crash before a commit); a torn last index line is reported.
``strict`` adds the checks of pac_ros.data.validate_strict (a dataset from someone else).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pac_ros.data import format as fmt
from pac_ros.data import validate_strict
from pac_ros.data.format import DatasetError
from pac_ros.data.reader import Dataset, Episode

# Commands must lie within the limits; measured positions within the spec's plausible
# bounds (a quarter of the joint's range past them: wrong units or joint order, not physics).
from pac_ros.spec import COMMAND_TOLERANCE, Spec
from pac_ros.spec import POSITION_SLACK as OBSERVATION_SLACK


@dataclass
class ValidationReport:
    root: Path
    episodes: int = 0
    steps: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def episode_problems(ds: Dataset, ep: Episode) -> list[str]:
    """What is wrong with one loaded episode (an empty list if nothing)."""
    meta, spec = ep.meta, ds.spec
    where = f"{ds.root / meta['file']}"
    out: list[str] = []
    T = len(ep.timestamp)
    if T and not np.all(np.diff(ep.timestamp) > 0):
        first = int(np.argmax(np.diff(ep.timestamp) <= 0)) + 1
        out.append(f"{where}: timestamp not strictly increasing at row {first}")
    arrays = {"timestamp": ep.timestamp, "observation.state": ep.joint_positions, "action": ep.actions,
              "next.reward": ep.rewards}
    if ep.features is not None:
        arrays["observation.environment_state"] = ep.features
    for name, arr in arrays.items():
        rows = np.where(~np.isfinite(arr.reshape(T, -1)).all(1))[0]
        if len(rows):
            out.append(f"{where}: {name} not finite in {len(rows)} row(s), first row {int(rows[0])}")
    out.extend(f"{where}: {problem}" for problem in limit_problems(spec, ep.joint_positions, ep.actions))
    if T and (not ep.is_first[0] or ep.is_first[1:].any()):
        out.append(f"{where}: is_first must be true at row 0 only")
    if T and (not ep.is_last[-1] or ep.is_last[:-1].any()):
        out.append(f"{where}: is_last must be true at the final row only")
    if ep.is_terminal[:-1].any():
        out.append(f"{where}: is_terminal set before the final row")
    if "return" in meta and T:
        ret = float(np.sum(ep.rewards[:-1], dtype=np.float64))
        if not np.isclose(ret, float(meta["return"]), rtol=1e-5, atol=1e-5):
            out.append(f"{where}: index return {meta['return']} but the rewards sum to {ret}")
    out.extend(line_problems(ds, meta))
    return out


def limit_problems(spec: Spec, joint_positions: np.ndarray, actions: np.ndarray) -> list[str]:
    """Rows of [T, n] positions outside the spec's plausible bounds, or commands outside its limits."""
    out = []
    slack = OBSERVATION_SLACK * (spec.upper - spec.lower)
    for name, arr, tol in (("observation.state", joint_positions, slack), ("action", actions, COMMAND_TOLERANCE)):
        lo, hi = spec.lower - tol, spec.upper + tol
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0)
        bad = np.where(((a < lo) | (a > hi)).any(1))[0]
        if len(bad):
            slack_note = "" if name == "action" else " (with slack)"
            out.append(f"{name} outside the spec's joint limits{slack_note} in {len(bad)} row(s), "
                       f"first row {int(bad[0])}")
    return out


def line_problems(ds: Dataset, meta: dict) -> list[str]:
    """An index line must say what the line its episode file carries says (an edited line)."""
    path = ds.root / meta["file"]
    try:
        carried = (pq.read_schema(path).metadata or {}).get(fmt.EPISODE_META_KEY)
        carried = json.loads(carried) if carried is not None else None
    except (OSError, ValueError, pa.ArrowException) as exc:
        return [f"{path}: cannot read the index line it carries: {exc}"]
    if not isinstance(carried, dict):
        return []  # a file without one (older writers): nothing to compare
    edited = sorted(k for k in set(carried) | set(meta) if k not in ("sha256", "bytes")
                    and carried.get(k) != meta.get(k))
    if not edited:
        return []
    return [f"{ds.root / fmt.EPISODES_PATH}: line {meta['episode_index'] + 1} differs from the line {path} carries "
            f"in {edited} (edited?): " + "; ".join(f"{k}: {meta.get(k)!r} vs {carried.get(k)!r}" for k in edited[:3])]


def validate(root: str | Path, images: bool = True, strict: bool = False) -> ValidationReport:
    """Check a dataset; never modifies it. ``images=False`` skips PNG decoding (faster); ``strict``
    adds the checks of pac_ros.data.validate_strict and always decodes the images."""
    start = time.perf_counter()
    report = ValidationReport(Path(root))
    try:
        ds = Dataset(root)
    except DatasetError as exc:
        report.problems.append(str(exc))
        return report
    _, _, torn = fmt.read_jsonl(ds.root / fmt.EPISODES_PATH)
    if torn:
        report.problems.append(f"{ds.root / fmt.EPISODES_PATH}: torn last line ({len(torn)} bytes) "
                               "from an interrupted commit; `repair` would drop it")
    report.episodes = len(ds)
    lines, index_from = ds.episodes, 0
    for i in range(len(ds)):
        try:
            ep = ds.load_episode(i, images=images or strict)
        except DatasetError as exc:
            report.problems.append(str(exc))
            ep = None
        if ep is not None:
            report.steps += len(ep.timestamp)
            report.problems.extend(episode_problems(ds, ep))
        if strict:
            report.problems.extend(validate_strict.line_problems(ds, i, lines[i], index_from, ep))
            index_from += lines[i]["length"]
    named = {os.path.realpath(ds.root / e["file"]) for e in ds.episodes}  # (realpath: a link loop does not raise)
    data_dir = ds.root / "data"
    if data_dir.is_dir():
        for f in sorted(data_dir.rglob("*")):
            if f.is_file() and os.path.realpath(f) not in named:
                report.problems.append(f"{f}: orphan file, not named by {fmt.EPISODES_PATH}")
    if strict:
        report.problems.extend(validate_strict.dataset_problems(ds))
    report.seconds = time.perf_counter() - start
    return report
