"""LeRobot video features (pac_ros/data/lerobot_video.py) and joint-name mapping on import."""
from __future__ import annotations

import copy
import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_lerobot import TASKS, build_v21, check_imported, episode_data, lerobot_features, pandas_tasks_table

from pac_ros.cli import main
from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data.images import fit_to_camera
from pac_ros.data.lerobot import export_lerobot, import_lerobot
from pac_ros.spec import Spec, default_spec

LOW_DIM = ("timestamp", "joint_positions", "actions", "rewards", "is_first", "is_last", "is_terminal", "features")
META = ("length", "tasks", "source", "checkpoint", "success", "terminal", "seed", "dropped", "metadata")
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


def video_spec(cameras=None) -> Spec:
    d = copy.deepcopy(default_spec().to_dict())
    d["cameras"] = cameras or [{"name": "front", "width": 16, "height": 16, "encoding": "rgb8"},
                               {"name": "side", "width": 16, "height": 8, "encoding": "bgr8"},
                               {"name": "grey", "width": 8, "height": 8, "encoding": "mono8"}]
    return Spec.from_dict(d)


def no_output(out: Path) -> bool:
    """Nothing at ``out`` and no staging directory left beside it."""
    return not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))


# ---- ours -> LeRobot v3 with video -> ours ---------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three short episodes, irregular stamps, noise images (the hardest case for a codec)."""
    root = tmp_path_factory.mktemp("video") / "src"
    spec = video_spec()
    rng = np.random.default_rng(7)
    instr = spec.instructions()
    with DatasetWriter(root, spec, features=True) as w:
        for k, T in enumerate([6, 4, 5]):
            ep = w.begin_episode(instr[k % len(instr)], source="teleop", seed=k, metadata={"k": k})
            stamps = 50.0 + k * 10 + np.cumsum(rng.uniform(0.08, 0.12, T))  # jittered 10 Hz ticks
            for t in range(T):
                ep.add_step(stamps[t], rng.uniform(spec.lower, spec.upper),
                            {c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
                            rng.uniform(spec.lower, spec.upper), float(rng.random()),
                            features=rng.normal(size=spec.feature_dim).astype(np.float32))
            w.commit(ep, terminal=k == 1, success=k == 1)
    return root


@pytest.fixture(scope="module")
def exported_video(recorded, tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "v3"
    export_lerobot(recorded, out, video=True)
    return out


def test_video_round_trip_is_exact(recorded, exported_video, tmp_path):
    report = import_lerobot(exported_video, tmp_path / "back", video_spec())
    src, back = Dataset(recorded), Dataset(tmp_path / "back")
    assert (report.episodes, report.steps) == (len(src), src.total_steps)
    assert back.has_features
    for i in range(len(src)):
        x, y = src.load_episode(i), back.load_episode(i)
        for name in LOW_DIM:
            assert getattr(x, name).tobytes() == getattr(y, name).tobytes(), name  # bit-exact
        assert x.instructions == y.instructions
        for cam in x.images:  # lossless H.264: every pixel back, bgr8 and mono8 included
            np.testing.assert_array_equal(x.images[cam], y.images[cam])
        for key in META:
            assert x.meta.get(key) == y.meta.get(key), key


def test_video_export_follows_lerobot_v3(recorded, exported_video):
    src = Dataset(recorded)
    info = json.loads((exported_video / "meta/info.json").read_text())
    assert info["video_path"] == VIDEO_PATH
    front = info["features"]["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [16, 16, 3]
    assert front["info"]["video.codec"] in ("h264", "ffv1") and front["info"]["video.fps"] == 10
    assert info["features"]["observation.images.grey"]["shape"] == [8, 8, 3]  # videos are RGB
    data = pq.read_table(exported_video / "data/chunk-000/file-000.parquet")
    assert not any(c.startswith("observation.images.") for c in data.column_names)
    hf = json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]
    assert not any(k.startswith("observation.images.") for k in hf)
    episodes = pq.read_table(exported_video / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    stats = json.loads((exported_video / "meta/stats.json").read_text())
    assert np.array(stats["observation.images.side"]["mean"]).shape == (3, 1, 1)

    for key in ("observation.images.front", "observation.images.side", "observation.images.grey"):
        files = list((exported_video / "videos" / key).glob("chunk-*/file-*.mp4"))
        assert [p.relative_to(exported_video).as_posix() for p in files] == [
            VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)]  # all episodes in one file
        end = 0.0
        with av.open(str(files[0])) as container:
            stream = container.streams.video[0]
            pts = [float(f.pts * stream.time_base) for f in container.decode(stream)]
        assert len(pts) == src.total_steps
        for e in episodes:
            assert (e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]) == (0, 0)
            assert e[f"videos/{key}/from_timestamp"] == end  # episodes follow each other in the file
            end = e[f"videos/{key}/to_timestamp"]
            rows = data.slice(e["dataset_from_index"], e["length"]).column("timestamp").to_numpy()
            # LeRobot looks frames up at from_timestamp + timestamp, within tolerance_s = 1e-4
            wanted = e[f"videos/{key}/from_timestamp"] + rows.astype(np.float64)
            assert np.abs(np.array(pts)[:, None] - wanted[None]).min(0).max() < 1e-4


def test_export_video_spreads_files_by_size(recorded, tmp_path):
    export_lerobot(recorded, tmp_path / "v3", video=True, video_files_size_in_mb=1e-6)
    episodes = pq.read_table(tmp_path / "v3/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["videos/observation.images.front/file_index"] for e in episodes] == [0, 1, 2]
    assert all(e["videos/observation.images.front/from_timestamp"] == 0.0 for e in episodes)
    import_lerobot(tmp_path / "v3", tmp_path / "back", video_spec())
    np.testing.assert_array_equal(Dataset(recorded).load_episode(2).images["front"],
                                  Dataset(tmp_path / "back").load_episode(2).images["front"])


# ---- a LeRobot-made video dataset, written as LeRobot writes one ------------------------------------
def smooth_frames(rng, T: int, h: int, w: int) -> np.ndarray:
    """Frames a lossy codec keeps well, each unlike its neighbours (to catch a frame off by one)."""
    y, x = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 1, (T, 1, 1, 3))
    img = 40 + 170 * base + 3 * (x[..., None] + y[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: list[np.ndarray], fps: int, skip: set[int] = frozenset(),
              lossless: bool = False) -> None:
    """Frames at i/fps in one file (episodes concatenated, as LeRobot's encoder leaves them), yuv420p."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb" if lossless else "libx264", rate=fps, options={"g": "2", "crf": "0"}
                         if lossless else {"g": "2"})
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "rgb24" if lossless else "yuv420p"
        for i, img in enumerate(frames):
            if i in skip:
                continue
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            c.mux(s.encode(frame))
        c.mux(s.encode())


def build_v30_video(root: Path, spec: Spec, names: list[str] | None = None, skip: set[int] = frozenset(),
                    video_path: str = VIDEO_PATH) -> dict:
    """A v3.0 dataset with the camera ``top`` as video (20x16, the spec's is 12x8): 3 episodes in one mp4."""
    rng = np.random.default_rng(5)
    lengths = [4, 6, 3]
    eps, start = [], 0
    for k, T in enumerate(lengths):
        eps.append(episode_data(spec, k, T, start, [k % 2] * T, k == 1, rng))
        start += T
    features = lerobot_features(spec)
    if names is not None:
        perm = [spec.joint_names.index(n.removesuffix(".pos")) if n.removesuffix(".pos") in spec.joint_names
                else i for i, n in enumerate(names)]
        for e in eps:  # the columns in the source's joint order
            for key, arr in (("observation.state", "q"), ("action", "a")):
                src = e[arr][:, perm]
                e["cols"][key] = pa.FixedSizeListArray.from_arrays(pa.array(src.reshape(-1)), len(names))
        for key in ("observation.state", "action"):
            features[key]["names"] = names
    frames = smooth_frames(rng, start, 16, 20)
    features["observation.images.top"] = {
        "dtype": "video", "shape": [16, 20, 3], "names": ["height", "width", "channels"],
        "info": {"video.height": 16, "video.width": 20, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                 "video.is_depth_map": False, "video.fps": 10, "video.channels": 3, "has_audio": False}}
    for e in eps:
        e["cols"].pop("observation.images.top", None)
    info = {"codebase_version": "v3.0", "robot_type": "so101_follower", "total_episodes": 3, "total_frames": start,
            "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "fps": 10, "splits": {"train": "0:3"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": video_path, "features": features}
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pq.write_table(pandas_tasks_table(TASKS), root / "meta/tasks.parquet")
    pq.write_table(pa.concat_tables([pa.table(e["cols"]) for e in eps]), root / "data/chunk-000/file-000.parquet")
    write_mp4(root / VIDEO_PATH.format(video_key="observation.images.top", chunk_index=0, file_index=0),
              list(frames), 10, skip)
    rows, begin = [], 0
    for k, T in enumerate(lengths):
        rows.append({"episode_index": k, "tasks": [TASKS[k % 2]], "length": T,
                     "data/chunk_index": 0, "data/file_index": 0,
                     "dataset_from_index": begin, "dataset_to_index": begin + T,
                     "videos/observation.images.top/chunk_index": 0, "videos/observation.images.top/file_index": 0,
                     "videos/observation.images.top/from_timestamp": begin / 10,
                     "videos/observation.images.top/to_timestamp": (begin + T) / 10,
                     "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        begin += T
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    return {"eps": eps, "frames": frames, "lengths": lengths}


def rgb_spec() -> Spec:
    return video_spec([{"name": "top", "width": 12, "height": 8, "encoding": "rgb8"},
                       {"name": "grey", "width": 8, "height": 8, "encoding": "mono8"}])


def test_import_lerobot_made_video_with_pos_names(tmp_path):
    spec = rgb_spec()
    names = [f"{j}.pos" for j in reversed(spec.joint_names)]  # LeRobot's names, in another order
    built = build_v30_video(tmp_path / "v30", spec, names)
    report = import_lerobot(tmp_path / "v30", tmp_path / "ours", spec)
    assert any("video frames 20x16 RGB converted to the camera's 12x8 rgb8" in n for n in report.notes)
    assert any("shoulder_pan.pos -> shoulder_pan" in n for n in report.notes)
    ds = Dataset(tmp_path / "ours", spec)
    top = spec.cameras[0]
    begin = 0
    for k, T in enumerate(built["lengths"]):
        e, want = ds.load_episode(k), built["eps"][k]
        np.testing.assert_array_equal(e.joint_positions, want["q"])  # back in the spec's order
        np.testing.assert_array_equal(e.actions, want["a"])
        np.testing.assert_array_equal(e.images["grey"], want["images"]["grey"])
        expected = np.stack([fit_to_camera(f, "RGB", top) for f in built["frames"]]).astype(int)
        for t in range(T):  # lossy yuv420p: close to its own frame, and nearer to it than to any other
            err = np.abs(e.images["top"][t].astype(int) - expected).mean(axis=(1, 2, 3))
            assert err[begin + t] < 4 and int(np.argmin(err)) == begin + t
        begin += T


def test_import_v21_video_one_file_per_episode(tmp_path):
    spec = video_spec([{"name": "top", "width": 12, "height": 8, "encoding": "rgb8"},
                       {"name": "grey", "width": 8, "height": 8, "encoding": "mono8"}])
    eps = build_v21(tmp_path / "v21", spec, video=True)
    for k, e in enumerate(eps):
        path = tmp_path / f"v21/data/chunk-000/episode_{k:06d}.parquet"
        pq.write_table(pq.read_table(path).drop_columns(["observation.images.top"]), path)
        write_mp4(tmp_path / f"v21/videos/chunk-000/observation.images.top/episode_{k:06d}.mp4",
                  list(e["images"]["top"]), 10, lossless=True)
    report = import_lerobot(tmp_path / "v21", tmp_path / "ours", spec)
    assert (report.episodes, report.steps) == (2, 9)
    check_imported(tmp_path / "ours", spec, eps, [[TASKS[0]] * 5, [TASKS[1]] * 2 + [TASKS[0]] * 2], [True, False])


def test_explicit_joint_map(tmp_path):
    spec = rgb_spec()
    names = [f"motor_{i}" for i in range(7)]
    build_v30_video(tmp_path / "v30", spec, names)
    with pytest.raises(DatasetError, match=r"unmatched \['motor_0', .*'motor_6'\].*--joint-map") as err:
        import_lerobot(tmp_path / "v30", tmp_path / "a", spec)
    assert "spec joints without a match ['shoulder_pan'" in str(err.value)
    mapping = {f"motor_{i}": j for i, j in enumerate(spec.joint_names)}
    with pytest.raises(DatasetError, match=r"joint map names \['nope'\], which are not among"):
        import_lerobot(tmp_path / "v30", tmp_path / "b", spec, joint_map={**mapping, "nope": "elbow"})
    partial = {k: v for k, v in mapping.items() if k != "motor_3"}
    with pytest.raises(DatasetError, match=r"unmatched \['motor_3'\], spec joints without a match \['wrist_1'\]"):
        import_lerobot(tmp_path / "v30", tmp_path / "c", spec, joint_map=partial)
    assert all(no_output(tmp_path / x) for x in "abc")

    swapped = {**mapping, "motor_0": "elbow", "motor_2": "shoulder_pan"}
    import_lerobot(tmp_path / "v30", tmp_path / "ok", spec, joint_map=swapped)
    e = Dataset(tmp_path / "ok").load_episode(1)
    # source column 2 holds shoulder_pan's values now: the fixture's q column 2 is elbow's
    src = build_v30_video(tmp_path / "again", spec, names)["eps"][1]["q"]
    np.testing.assert_array_equal(e.joint_positions[:, 0], src[:, 2])
    np.testing.assert_array_equal(e.joint_positions[:, 2], src[:, 0])

    (tmp_path / "map.yaml").write_text("".join(f"{k}: {v}\n" for k, v in mapping.items() if k != "motor_6"))
    assert main(["dataset", "import", str(tmp_path / "v30"), "--format", "lerobot", "--out", str(tmp_path / "cli"),
                 "--joint-map-file", str(tmp_path / "map.yaml"), "--joint-map", "motor_6:gripper",
                 "--spec", str(write_spec(tmp_path, spec))]) == 0
    np.testing.assert_array_equal(Dataset(tmp_path / "cli").load_episode(0).joint_positions,
                                  Dataset(tmp_path / "ok").load_episode(0).joint_positions[:, [2, 1, 0, 3, 4, 5, 6]])


def write_spec(tmp_path: Path, spec: Spec) -> Path:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    return path


# ---- refusals: nothing reaches --out ------------------------------------------------------------------
@pytest.mark.parametrize("template, message", [
    ("../outside/{video_key}.mp4", r"must be a path inside the dataset"),
    ("/tmp/{video_key}/file-{file_index}.mp4", r"must be a path inside the dataset"),
    ("videos/{video_key.__class__}/{file_index}.mp4", r"field \{video_key\.__class__\} is not allowed"),
    ("videos/{episode_index}.mp4", r"field \{episode_index\} is not allowed"),
    ("videos/{video_key!r}/{file_index}.mp4", r"is not allowed"),
])
def test_video_path_template_escape_is_refused(tmp_path, template, message):
    build_v30_video(tmp_path / "v30", rgb_spec(), video_path=template)
    with pytest.raises(DatasetError, match=r"info\.json: video_path .*" + message):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    assert no_output(tmp_path / "out")


def test_symlink_out_of_the_dataset_is_refused(tmp_path):
    build_v30_video(tmp_path / "v30", rgb_spec())
    os.rename(tmp_path / "v30/videos", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", tmp_path / "v30/videos")
    with pytest.raises(DatasetError, match=r"leads outside the dataset"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    assert no_output(tmp_path / "out")


def test_image_path_out_of_the_dataset_is_refused(tmp_path):
    spec = rgb_spec()
    build_v21(tmp_path / "v21", spec)
    path = tmp_path / "v21/data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    (tmp_path / "secret.png").write_bytes(b"not yours")
    for rel in ("../../../secret.png", str(tmp_path / "secret.png")):
        paths = [rel] + [None] * (table.num_rows - 1)
        blobs = [None] + table.column("observation.images.top").to_pylist()[1:]
        column = pa.StructArray.from_arrays([pa.array([b and b["bytes"] for b in blobs], pa.binary()),
                                             pa.array(paths, pa.string())], names=["bytes", "path"])
        i = table.schema.get_field_index("observation.images.top")
        pq.write_table(table.set_column(i, "observation.images.top", column), path)
        with pytest.raises(DatasetError, match=r"episode_000000\.parquet: observation\.images\.top\[0\]: the path .* "
                                               r"leads outside the dataset"):
            import_lerobot(tmp_path / "v21", tmp_path / "out", spec)
        assert no_output(tmp_path / "out")
    (tmp_path / "v21/data/chunk-000/frame0.png").write_bytes(table.column("observation.images.top")[0]["bytes"].as_py())
    paths[0] = "frame0.png"  # beside the parquet file: read
    column = pa.StructArray.from_arrays([pa.array([b and b["bytes"] for b in blobs], pa.binary()),
                                         pa.array(paths, pa.string())], names=["bytes", "path"])
    pq.write_table(table.set_column(i, "observation.images.top", column), path)
    import_lerobot(tmp_path / "v21", tmp_path / "out", spec)
    assert len(Dataset(tmp_path / "out")) == 2


def test_missing_frame_names_file_episode_and_timestamp(tmp_path):
    build_v30_video(tmp_path / "v30", rgb_spec(), skip={6})  # episode 1's third frame, at 0.6 s in the file
    with pytest.raises(DatasetError, match=r"file-000\.mp4: episode 1: observation\.images\.top: no frame within "
                                           r"50\.0 ms .* of timestamp 0\.600000 s \(row 2\)"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    assert no_output(tmp_path / "out")


def test_truncated_or_corrupt_video_is_a_clear_error(tmp_path):
    build_v30_video(tmp_path / "v30", rgb_spec())
    path = tmp_path / "v30" / VIDEO_PATH.format(video_key="observation.images.top", chunk_index=0, file_index=0)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DatasetError, match=r"file-000\.mp4: episode 0: observation\.images\.top: cannot open the "
                                           r"video \(truncated or not an MP4\?\)"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    path.write_bytes(b"\0" * 64 + whole[64:])  # header destroyed
    with pytest.raises(DatasetError, match=r"file-000\.mp4: episode 0: observation\.images\.top: cannot"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    path.unlink()
    with pytest.raises(DatasetError, match=r"file-000\.mp4: episode 0: observation\.images\.top: video file missing"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())
    assert no_output(tmp_path / "out")


def test_depth_video_is_refused(tmp_path):
    build_v30_video(tmp_path / "v30", rgb_spec())
    info_path = tmp_path / "v30/meta/info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.images.top"]["info"]["is_depth_map"] = True
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"observation\.images\.top: a depth-map video"):
        import_lerobot(tmp_path / "v30", tmp_path / "out", rgb_spec())


# ---- command line -------------------------------------------------------------------------------
def test_cli_export_video(recorded, tmp_path, capsys):
    out = tmp_path / "v3"
    assert main(["dataset", "export", str(recorded), "--format", "lerobot", "--video", "--out", str(out),
                 "--episodes", "1"]) == 0
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1 and info["features"]["observation.images.front"]["dtype"] == "video"
    assert main(["dataset", "export", str(recorded), "--video", "--out", str(tmp_path / "bag")]) == 2
    assert "--video applies to --format lerobot only" in capsys.readouterr().err
    assert main(["dataset", "import", str(out), "--format", "mcap", "--out", str(tmp_path / "x"),
                 "--joint-map", "a:b"]) == 2
    assert main(["dataset", "import", str(out), "--format", "lerobot", "--out", str(tmp_path / "x"),
                 "--joint-map", "nocolon"]) == 2
    assert "expected ROBOT_NAME:SPEC_NAME" in capsys.readouterr().err
