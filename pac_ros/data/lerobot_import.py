"""LeRobotDataset import: v2.0/v2.1 or v3.x, image or MP4 video features (docs/dataset.md).

The source is untrusted input: every path it leads to must stay inside it, and what it
declares (counts, shapes, lengths, types) is checked before anything is read or allocated by
it (lerobot_checks, lerobot_sources); a lie is a DatasetError naming the file and field.
The source is checked against the spec from its info.json first; joint names are matched
by name (``shoulder_pan.pos`` -> ``shoulder_pan``, or an explicit ``joint_map``). Episodes
are then committed one by one through DatasetWriter, like any recording, into a staging
directory renamed to the output only when every episode is in.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from pac_ros.data import format as fmt
from pac_ros.data.conversion_report import ConversionReport
from pac_ros.data.format import DatasetError
from pac_ros.data.images import fit_to_camera
from pac_ros.data.lerobot_checks import check_column_type, check_info, integer
from pac_ros.data.lerobot_layout import (
    DATA_PATH,
    EXTRA,
    EXTRA_KEY,
    IMAGE_PREFIX,
    INFO_PATH,
    KNOWN_COLUMNS,
    LEGACY_VERSIONS,
    STAMP,
    V2_DATA_FIELDS,
    V2_VIDEO_FIELDS,
    V3_DATA_FIELDS,
    V3_VIDEO_FIELDS,
    check_template,
    inside,
    publish,
    staging_dir,
)
from pac_ros.data.lerobot_sources import SourceEpisode, V2Source, V3Source
from pac_ros.data.lerobot_video import frames_at
from pac_ros.data.validate import limit_problems
from pac_ros.data.writer import DatasetWriter
from pac_ros.jsonfile import read_json_object
from pac_ros.spec import CameraSpec, Spec, SpecError

POS_SUFFIX = ".pos"  # LeRobot's robots name joint positions <joint>.pos


@dataclass
class _Plan:
    """How a source maps onto the spec, decided from its info.json alone."""

    version: str
    source: str  # the source directory, for the imported episodes' metadata
    ours: bool  # exported by pac_ros: extras restore the episodes exactly
    has_environment_state: bool
    image_columns: dict[str, CameraSpec]  # image features (PNG/JPEG bytes in the data files)
    video_columns: dict[str, CameraSpec]  # video features (MP4 files under video_path)
    fps: float
    joint_order: dict[str, np.ndarray | None]  # observation.state/action: source column of each spec joint
    notes: list[str] = field(default_factory=list)
    video_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (H, W) info.json declares


def import_lerobot(source: str | os.PathLike, out: str | os.PathLike, spec: Spec, *,
                   joint_map: Mapping[str, str] | None = None) -> ConversionReport:
    """Write the LeRobotDataset (v2.x or v3.x) directory ``source`` as a new dataset ``out`` of ``spec``.

    The source is checked against the spec first (joints, cameras, image shapes, fps);
    a mismatch raises DatasetError naming the file and every difference. ``joint_map``
    renames the source's joint names (``observation.state``/``action`` names) to the spec's;
    without it, names ``<joint>.pos`` match the spec's ``<joint>``. Nothing is written to
    ``out`` unless every episode imports.
    """
    t0 = time.perf_counter()
    root = Path(source)
    out = Path(out)
    info_path = inside(root, INFO_PATH, f"{root}: {INFO_PATH}")
    info = read_json_object(info_path, DatasetError, f"{root}: not a LeRobot dataset (no {INFO_PATH})",
                            "LeRobot dataset info")
    plan = _plan(root, info, spec, dict(joint_map or {}))
    source_type = V3Source if plan.version.startswith("v3.") else V2Source
    reader = source_type(root, info, list(plan.video_columns))
    try:
        staging = staging_dir(out)
    except (FileExistsError, FileNotFoundError) as exc:
        raise DatasetError(str(exc)) from exc
    except OSError as exc:
        raise DatasetError(f"{out}: cannot create the output: {exc}") from exc
    episodes = steps = 0
    try:
        dest = staging / "dataset"
        with DatasetWriter(dest, spec, features=plan.has_environment_state) as writer:
            for ep in reader.episodes():
                steps += _import_episode(writer, ep, spec, plan, reader.tasks)
                episodes += 1
        if episodes == 0:
            raise DatasetError(f"{root}: the LeRobot dataset has no episodes")
        publish(dest, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ConversionReport(out, episodes, steps, time.perf_counter() - t0, plan.notes)


def _feature_names(f: dict[str, Any]) -> list[str] | None:
    """A feature's per-dimension names: a list, or v2-style {"motors": [...]}."""
    names = f.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and all(isinstance(x, str) for x in names):
        return names
    return None


def _image_shape(f: dict[str, Any]) -> tuple[int, ...] | None:
    """(H, W, C) of an image feature whose shape is HWC or, by its names, CHW."""
    shape, names = f.get("shape"), f.get("names")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        return None
    if isinstance(names, list) and names and str(names[0]).lower() in ("c", "channel", "channels"):
        return (shape[1], shape[2], shape[0])
    return tuple(shape)


def _joint_order(key: str, names: list[str], spec: Spec, joint_map: dict[str, str]) -> np.ndarray | None:
    """Source column of each spec joint, matched by name; None when the names are the spec's, in order.

    A name is taken from ``joint_map``, else as it is if the spec has it, else without a ``.pos`` suffix.
    """
    unknown = sorted(set(joint_map) - set(names))
    if unknown:
        raise DatasetError(f"{key}: the joint map names {unknown}, which are not among its names {names}")
    spec_names = spec.joint_names
    mapped = [joint_map[n] if n in joint_map else
              n[:-len(POS_SUFFIX)] if n not in spec_names and n.endswith(POS_SUFFIX) else n for n in names]
    if mapped == spec_names:
        return None
    if sorted(mapped) != sorted(spec_names):
        unmatched = [n for n, m in zip(names, mapped) if m not in spec_names]
        missing = [j for j in spec_names if j not in mapped]
        twice = sorted({m for m in mapped if mapped.count(m) > 1})
        raise DatasetError(f"{key}: joint names {names} do not match the spec's {spec_names}: "
                           f"unmatched {unmatched}, spec joints without a match {missing}"
                           + (f", matched twice {twice}" if twice else "")
                           + "; map them with --joint-map ROBOT_NAME:SPEC_NAME (or --joint-map-file)")
    return np.array([mapped.index(j) for j in spec_names])


def _cameras(features: dict[str, Any], spec: Spec, problems: list[str],
             notes: list[str]) -> tuple[dict[str, CameraSpec], dict[str, CameraSpec]]:
    """The image and the video features of the spec's cameras; what does not fit goes to ``problems``."""
    image_columns: dict[str, CameraSpec] = {}
    video_columns: dict[str, CameraSpec] = {}
    cams = {c.name: c for c in spec.cameras}
    for key, f in features.items():
        if not (isinstance(f, dict) and (f.get("dtype") in ("image", "video") or key.startswith(IMAGE_PREFIX))):
            continue
        cam = cams.get(key[len(IMAGE_PREFIX):]) if key.startswith(IMAGE_PREFIX) else None
        if cam is None:
            problems.append(f"{key}: no such camera in the spec (cameras {spec.camera_names})")
            continue
        shape = _image_shape(f)
        if f.get("dtype") == "video":
            vinfo = f.get("info") if isinstance(f.get("info"), dict) else {}
            if vinfo.get("is_depth_map") or vinfo.get("video.is_depth_map"):
                problems.append(f"{key}: a depth-map video; the spec's camera {cam.name!r} is {cam.encoding}")
                continue
            if shape is None or shape[2] not in (1, 3):
                problems.append(f"{key}: video shape {f.get('shape')}, expected [H, W, 3] or, by names, [3, H, W]")
                continue
            if shape[:2] != cam.shape[:2] or cam.channels != 3:
                notes.append(f"{key}: video frames {shape[1]}x{shape[0]} RGB converted to the camera's "
                             f"{cam.width}x{cam.height} {cam.encoding}")
            video_columns[key] = cam
            continue
        if f.get("dtype") != "image":
            problems.append(f"{key}: dtype {f.get('dtype')!r}, expected 'image' or 'video'")
            continue
        if shape != cam.shape:
            problems.append(f"{key}: image shape {list(f.get('shape', []))} (H, W, C = {shape}), "
                            f"the spec's camera {cam.name!r} is {cam.shape} {cam.encoding}")
        image_columns[key] = cam
    return image_columns, video_columns


def _plan(root: Path, info: dict[str, Any], spec: Spec, joint_map: dict[str, str]) -> _Plan:
    info_path = root / INFO_PATH
    version = info.get("codebase_version")
    if not (isinstance(version, str) and (version.startswith("v3.") or version in LEGACY_VERSIONS)):
        raise DatasetError(f"{info_path}: codebase_version {version!r} is not supported "
                           f"(LeRobotDataset v2.0, v2.1 or v3.x)")
    features = info.get("features")
    if not isinstance(features, dict):
        raise DatasetError(f"{info_path}: no 'features' object")
    check_info(info, info_path)
    v3 = version.startswith("v3.")
    check_template(info.get("data_path") or DATA_PATH if v3 else info.get("data_path"), "data_path",
                   V3_DATA_FIELDS if v3 else V2_DATA_FIELDS, info_path)
    if any(isinstance(f, dict) and f.get("dtype") == "video" for f in features.values()):
        check_template(info.get("video_path"), "video_path", V3_VIDEO_FIELDS if v3 else V2_VIDEO_FIELDS, info_path)

    problems: list[str] = []
    extra = info.get(EXTRA_KEY)
    ours = isinstance(extra, dict) and "spec" in extra
    if ours:
        try:
            spec.check_compatible(Spec.from_dict(extra["spec"], source=f"{info_path}: {EXTRA_KEY}.spec"),
                                  what="LeRobot export")
        except SpecError as exc:
            problems.append(str(exc))

    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not abs(fps) < 1e6 or not math.isclose(
            fps, spec.control_rate_hz, rel_tol=1e-9):
        problems.append(f"fps {fps!r}, the spec's control_rate_hz is {spec.control_rate_hz}")
    n = spec.action_dim
    joint_order: dict[str, np.ndarray | None] = {"observation.state": None, "action": None}
    for key in ("observation.state", "action"):
        f = features.get(key)
        if not isinstance(f, dict):
            problems.append(f"{key}: missing (needs {n} joint values: {spec.joint_names})")
            continue
        if list(f.get("shape", [])) != [n]:
            problems.append(f"{key}: shape {f.get('shape')}, the spec has {n} joints {spec.joint_names}")
            continue
        names = _feature_names(f)
        if names is not None and len(names) != n:
            problems.append(f"{key}: {len(names)} names for shape [{n}]")
        elif names is not None:
            try:
                joint_order[key] = _joint_order(key, names, spec, joint_map)
            except DatasetError as exc:
                problems.append(str(exc))
        elif joint_map:
            problems.append(f"{key}: has no joint names, so --joint-map cannot apply")

    notes: list[str] = []
    image_columns, video_columns = _cameras(features, spec, problems, notes)
    for cam in spec.cameras:
        if fmt.image_column(cam.name) not in features:
            problems.append(f"{fmt.image_column(cam.name)}: missing (spec camera {cam.name!r})")
    if problems:
        raise DatasetError(f"{info_path}: the LeRobot dataset does not match the spec:\n  " + "\n  ".join(problems))
    for key, order in joint_order.items():
        if order is not None:
            names = _feature_names(features[key]) or []
            notes.append(f"{key}: joints taken by name: " + ", ".join(
                f"{names[i]} -> {j}" for i, j in zip(order, spec.joint_names)))
    env = features.get("observation.environment_state")
    has_env = False
    if ours:
        has_env = bool(extra.get("has_environment_state"))
    elif isinstance(env, dict):
        has_env = list(env.get("shape", [])) == [spec.feature_dim]
        if not has_env:
            notes.append(f"observation.environment_state not carried over: shape {env.get('shape')}, "
                         f"the spec's block poses have {spec.feature_dim} values")
    dropped = sorted(k for k in features if k not in KNOWN_COLUMNS and k not in image_columns
                     and k not in video_columns)
    if dropped:
        notes.append(f"features not carried over: {dropped}")
    if not ours:
        notes.append("not a pac_ros export: source 'lerobot', success = next.success on the last frame, "
                     "terminal = success (with terminate_on_success), stamps = timestamp")
    video_sizes = {key: _image_shape(features[key])[:2] for key in video_columns}
    return _Plan(version, str(root), ours, has_env, image_columns, video_columns, float(fps), joint_order, notes,
                 video_sizes)


# ---- one episode --------------------------------------------------------------------------------
def _column(ep: SourceEpisode, name: str, width: int, dtype: str) -> np.ndarray:
    """Column ``name`` as [T] (width 0) or [T, width] values."""
    T = ep.table.num_rows
    where = f"{ep.file}: episode {ep.index}"
    try:
        arr = ep.table.column(name).combine_chunks()
        check_column_type(arr.type, name, where)
        if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            if arr.null_count:
                raise DatasetError(f"{where}: column {name!r} has missing rows")
            arr = arr.flatten()
        if arr.null_count:
            raise DatasetError(f"{where}: column {name!r} has missing values")
        out = arr.to_numpy(zero_copy_only=False)
    except KeyError:
        raise DatasetError(f"{where}: column {name!r} missing") from None
    except (pa.ArrowException, ValueError) as exc:
        raise DatasetError(f"{where}: column {name!r}: {exc}") from exc
    want = T * max(width, 1)
    if out.size != want:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} has {out.size} values, "
                           f"expected {want} ({T} rows x {max(width, 1)})")
    if out.dtype == object:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} has missing values")
    return out.astype(dtype).reshape(T, width) if width else out.astype(dtype)


def _image_blobs(ep: SourceEpisode, name: str, root: Path) -> list[bytes]:
    try:
        col = ep.table.column(name).combine_chunks()
    except KeyError:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} missing") from None
    binary = (pa.types.is_binary, pa.types.is_large_binary)
    typ = col.type
    if pa.types.is_struct(typ) and typ.get_field_index("bytes") >= 0 and any(
            f(typ.field("bytes").type) for f in binary) and (typ.get_field_index("path") < 0 or pa.types.is_string(
            typ.field("path").type) or pa.types.is_large_string(typ.field("path").type)):
        blobs = col.field("bytes").to_pylist()
        paths = col.field("path").to_pylist() if typ.get_field_index("path") >= 0 else [None] * len(blobs)
        paths = [p if valid else None for p, valid in zip(paths, col.is_valid().to_pylist())]
    elif any(f(typ) for f in binary):
        blobs, paths = col.to_pylist(), [None] * len(col)
    else:
        raise DatasetError(f"{ep.file}: episode {ep.index}: column {name!r} has type {typ}, expected image bytes "
                           f"(binary, or a struct of bytes and path)")
    for t, (blob, rel) in enumerate(zip(blobs, paths)):
        if blob is None:  # an image kept as a file beside the parquet, or under the root
            where = f"{ep.file}: {name}[{t}]"
            bases = (ep.file.parent, root.resolve()) if rel else ()
            candidates = (inside(root, os.path.relpath(base / rel, root.resolve()), where) for base in bases)
            try:
                found = next((p for p in candidates if p.is_file()), None)
                blobs[t] = None if found is None else found.read_bytes()
            except OSError as exc:
                raise DatasetError(f"{where}: cannot read the image path {rel!r}: {exc}") from exc
            if blobs[t] is None:
                raise DatasetError(f"{where}: no image bytes and no readable image path ({rel!r})")
    return blobs


def _extras(m: dict[str, Any], where: str) -> tuple[Any, ...]:
    """Our export's episode columns: source, checkpoint, seed, metadata, success, terminal, dropped."""
    raw = m.get(EXTRA + "metadata") or "{}"
    try:
        metadata = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{where}: {EXTRA}metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise DatasetError(f"{where}: {EXTRA}metadata {raw!r:.80}: expected a JSON object")
    flags = {}
    for key in ("success", "terminal"):
        flags[key] = m.get(EXTRA + key)
        if not isinstance(flags[key], (bool, type(None))):
            raise DatasetError(f"{where}: {EXTRA}{key} {flags[key]!r:.80}: expected true or false")
    dropped = m.get(EXTRA + "dropped")
    dropped = 0 if dropped is None else integer(dropped, where, EXTRA + "dropped")
    return (m.get(EXTRA + "source") or "expert", m.get(EXTRA + "checkpoint"), m.get(EXTRA + "seed"), metadata,
            bool(flags["success"]), bool(flags["terminal"]), dropped)


# modes a source image may have that convert to the camera's without loss
LOSSLESS_MODES = {1: ("L",), 3: ("P", "L")}


def _import_episode(writer: DatasetWriter, ep: SourceEpisode, spec: Spec, plan: _Plan,
                    tasks: dict[int, str]) -> int:
    where = f"{ep.file}: episode {ep.index}"
    T = ep.table.num_rows
    if T == 0:
        raise DatasetError(f"{where}: no rows")
    if ep.meta.get("length", T) != T:
        raise DatasetError(f"{where}: {T} rows, its metadata says length {ep.meta['length']}")
    if "frame_index" in ep.table.column_names:
        frames = _column(ep, "frame_index", 0, "int64")
        if np.any(np.diff(frames) < 0):  # rows out of order: put them in frame order
            order = np.argsort(frames, kind="stable")
            ep.table, frames = ep.table.take(pa.array(order)), frames[order]
        if not np.array_equal(frames, np.arange(T)):
            raise DatasetError(f"{where}: frame_index is not 0..{T - 1}")
    n = spec.action_dim
    q = _column(ep, "observation.state", n, "float32")
    a = _column(ep, "action", n, "float32")
    stamps = _column(ep, STAMP if plan.ours and STAMP in ep.table.column_names else "timestamp", 0, "float64")
    rewards = (_column(ep, "next.reward", 0, "float32") if "next.reward" in ep.table.column_names
               else np.zeros(T, np.float32))
    env = _column(ep, "observation.environment_state", spec.feature_dim, "float32") if plan.has_environment_state \
        else None
    if "task_index" in ep.table.column_names:
        ids = _column(ep, "task_index", 0, "int64")
        unknown = sorted({int(t) for t in ids if int(t) not in tasks})
        if unknown:
            raise DatasetError(f"{where}: task_index {unknown} not in the dataset's tasks")
        instructions = [tasks[int(t)] for t in ids]
    elif ep.meta.get("tasks"):
        instructions = [ep.meta["tasks"][0]] * T
    else:
        raise DatasetError(f"{where}: no task_index column and no tasks in its metadata")
    images = {name: _image_blobs(ep, name, Path(plan.source)) for name in plan.image_columns}
    videos = {}
    if plan.video_columns:  # frames at the rows' timestamps from the episode's start in the file
        rel = _column(ep, "timestamp", 0, "float64")
        if np.any(np.diff(rel) <= 0):
            raise DatasetError(f"{where}: timestamps do not increase, so video frames cannot be matched to rows")
        for name in plan.video_columns:
            path, start = ep.videos[name]
            videos[name] = frames_at(path, start + rel, plan.fps, f"episode {ep.index}: {name}",
                                     plan.video_sizes[name])
    q, a = (x if order is None else x[:, order] for x, order in
            ((q, plan.joint_order["observation.state"]), (a, plan.joint_order["action"])))
    problems = limit_problems(spec, q, a)
    if problems:
        raise DatasetError(f"{where}: " + "; ".join(problems) + " (the spec's units must be the source's)")

    m = ep.meta
    if plan.ours:
        source, checkpoint, seed, metadata, success, terminal, dropped = _extras(m, where)
    else:
        source, checkpoint, seed = "lerobot", None, None
        metadata = {"lerobot": {"dataset": plan.source, "codebase_version": plan.version,
                                "episode_index": ep.index}}
        success = bool(_column(ep, "next.success", 0, "bool")[-1]) if "next.success" in ep.table.column_names \
            else False
        terminal = success and spec.terminate_on_success
        dropped = 0

    buf = writer.begin_episode(instructions[0], source=source, checkpoint=checkpoint, seed=seed, metadata=metadata)
    for t in range(T):
        frame = {cam.name: fmt.decode_image(images[name][t], cam, f"{where}: {name}[{t}]",
                                            LOSSLESS_MODES[cam.channels])
                 for name, cam in plan.image_columns.items()}
        frame.update({cam.name: fit_to_camera(next(videos[name]), "RGB", cam)
                      for name, cam in plan.video_columns.items()})
        try:
            buf.add_step(stamps[t], q[t], frame, a[t], float(rewards[t]),
                         features=None if env is None else env[t], instruction=instructions[t])
        except DatasetError as exc:
            raise DatasetError(f"{where}, frame {t}: {exc}") from exc
    writer.commit(buf, terminal=terminal, success=success, dropped=dropped)
    return T
