"""A full disk, failing fsync or an unwritable directory while recording: the episode that meets the fault
fails clearly, earlier ones stay valid and recording goes on once the fault is gone."""
from __future__ import annotations

import errno
import os

import fake_msgs
import pytest
from fault_helpers import SPEC, assert_bit_exact, replay, rows

from pac_ros.data import Dataset, DatasetError, DatasetWriter
from pac_ros.data import format as fmt
from pac_ros.data.recording import RecorderCore, commit_episode
from pac_ros.data.validate import validate


def _fault(kind, monkeypatch, root):
    """Make the next writes fail as a full disk or a read-only directory would."""
    real_write, real_open = fmt.write_all, os.open

    def write_all(fd, data):
        prefix = {"episode_file": b"PAR1", "index_line": b'{"episode_index"', "task_line": b'{"task_index"'}[kind]
        if data[: len(prefix)] == prefix:
            real_write(fd, data[: len(data) // 2])  # part of it fits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(root / "data")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    if kind == "fsync":
        monkeypatch.setattr(os, "fsync", fsync)
    elif kind.startswith("unwritable"):  # as root, chmod would not stop us: fail the calls instead
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir)
    else:
        monkeypatch.setattr(fmt, "write_all", write_all)


FAULT_MESSAGES = {"episode_file": "No space left on device", "index_line": "No space left on device",
                  "task_line": "No space left on device", "fsync": "Input/output error",
                  "unwritable_dir": "Read-only file system", "unwritable_new_dir": "Read-only file system"}


@pytest.mark.parametrize("kind", list(FAULT_MESSAGES))
def test_disk_full_fails_one_episode_clearly_and_recording_goes_on(tmp_path, monkeypatch, kind):
    """The recorder core and the writer: the episode that meets the fault is not committed and
    the error names the file and the cause; earlier episodes stay valid; once the fault is gone
    the next episodes commit. Nothing half-written is left behind."""
    root = tmp_path / "ds"
    events = fake_msgs.robot_stream(SPEC, 5, episodes=4)
    episodes, _ = replay(events)
    errors, committed = [], []
    writer = DatasetWriter(root, SPEC, features=True)

    def on_episode(episode):
        try:
            committed.append(commit_episode(writer, episode))
        except DatasetError as exc:
            errors.append(str(exc))

    core = RecorderCore(SPEC, on_episode, features=True, max_steps=None)
    starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
    bad = 0 if kind == "unwritable_new_dir" else 1  # the first episode also creates data/chunk-000
    for i, event in enumerate(events):
        if i == starts[bad] + 1:  # the episode has begun: the disk fills up
            _fault(kind, monkeypatch, root)
        if i == starts[bad + 1] + 1:  # space is back
            monkeypatch.undo()
        fake_msgs.feed(core, event)
    writer.close()
    assert committed == [0, 1, 2] and len(errors) == 1, errors
    assert FAULT_MESSAGES[kind] in errors[0] and str(root) in errors[0], errors[0]
    ds = Dataset(root, SPEC)
    for i, k in enumerate(k for k in range(4) if k != bad):
        assert_bit_exact(ds.load_episode(i), rows(episodes[k]))
    report = validate(root)
    assert report.ok, report.problems
    with DatasetWriter(root, SPEC) as again:  # nothing for the next start to recover
        assert again.num_episodes == 3
    assert not (root / "quarantine").exists()


def test_recorder_node_stays_up_through_a_full_disk(ros, tmp_path, monkeypatch):
    """The node's commit thread: the failing episode is counted and logged, the next one commits."""
    from pac_ros.nodes.recorder import Recorder

    root = tmp_path / "ds"
    recorder = Recorder(cli_args=["--ros-args", "-p", f"dataset:={root}", "-p", "max_steps:=1000"])
    try:
        events = fake_msgs.robot_stream(SPEC, 6, episodes=3)
        starts = [i for i, e in enumerate(events) if e[0] == "instruction"]
        for i, event in enumerate(events):
            if i == starts[1] + 1:  # episode 0 handed over: the disk fills up
                recorder.flush()
                _fault("episode_file", monkeypatch, root)
            if i == starts[2] + 1:
                recorder.flush()
                monkeypatch.undo()
            fake_msgs.feed(recorder.core, event)
        recorder.flush()
        assert recorder.failed == 1 and recorder.committed == [0, 1]
    finally:
        recorder.destroy_node()
    assert validate(root).ok


def test_recorder_core_goes_on_when_handing_over_an_episode_fails():
    """A synchronous on_episode that raises (a full disk under the MCAP import, say): the error
    reaches the caller, and the core still starts the next episode and records it."""
    events = fake_msgs.robot_stream(SPEC, 5, episodes=3)
    expected, _ = replay(events)
    got, failures = [], []

    def on_episode(episode):
        if not failures:
            failures.append(episode)
            raise DatasetError("disk full")
        got.append(episode)

    core = RecorderCore(SPEC, on_episode, features=True, max_steps=None)
    for event in events:
        try:
            fake_msgs.feed(core, event)
        except DatasetError:
            assert core.recording, "the next episode was not started"
    assert len(failures) == 1 and [len(e.steps) for e in got] == [len(e.steps) for e in expected[1:]]
