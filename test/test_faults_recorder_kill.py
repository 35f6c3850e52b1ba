"""A recording process (RecorderCore feeding the writer) SIGKILLed at 20 seeded points, mid-recording and
inside each step of a commit: what the next writer start recovers, and every committed episode bit-exact."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import fake_msgs
import numpy as np
import pytest
from fault_helpers import HERE, REPO, SPEC, assert_bit_exact, replay, rows

from pac_ros.data import Dataset, DatasetWriter
from pac_ros.data.recording import commit_episode
from pac_ros.data.validate import validate

COMMIT_POINTS = ("after_task", "torn_task", "torn_tmp", "before_rename", "after_rename", "torn_index", "after_index")
# what the next writer start says for each point, and whether it keeps the killed commit's episode
RECOVERY = {"after_task": ([], False), "torn_task": (["tasks.jsonl: removed a torn last line"], False),
            "torn_tmp": (["unfinished temp file"], False), "before_rename": (["unfinished temp file"], False),
            "after_rename": (["recovered episode(s)"], True),
            "torn_index": (["episodes.jsonl: removed a torn last line", "recovered episode(s)"], True),
            "after_index": ([], True), "add_step": ([], False), "message": ([], False)}


def crash_points(n=20, seed=8):
    """``n`` (point, N) pairs: every kind once, then kinds drawn at random; N drawn within the stream."""
    events = fake_msgs.robot_stream(SPEC, seed)
    episodes, _ = replay(events)
    limits = {p: len(episodes) for p in COMMIT_POINTS}
    limits.update(add_step=sum(len(rows(e)) for e in episodes), message=len(events))
    rng = np.random.default_rng(seed)
    kinds = list(rng.permutation(list(limits)))
    kinds += list(rng.choice(list(limits), n - len(kinds)))
    return [(str(k), int(rng.integers(1, limits[k] + 1))) for k in kinds], events, episodes


def expected_left(point, at, events, episodes):
    """Episodes a recovered dataset holds after a kill at the ``at``-th ``point``."""
    if point == "message":
        return len(replay(events[: at - 1])[0])
    if point == "add_step":
        ends = np.cumsum([len(rows(e)) for e in episodes])
        return int(np.sum(ends < at))
    return at if RECOVERY[point][1] else at - 1


@pytest.mark.slow
def test_recorder_sigkill_at_20_points_including_mid_commit(tmp_path, caplog):
    seed = 8
    points, events, episodes = crash_points(seed=seed)
    assert len(points) == 20 and set(COMMIT_POINTS) <= {p for p, _ in points}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]))
    procs = []
    for i, (point, at) in enumerate(points):  # four children at a time
        if i >= 4:
            procs[i - 4][1].wait(timeout=120)
        procs.append((tmp_path / f"{i:02d}_{point}_{at}", subprocess.Popen(
            [sys.executable, str(HERE / "data_crash_writer.py"), str(tmp_path / f"{i:02d}_{point}_{at}"), str(seed),
             point, str(at), "recorder"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
            text=True)))
    verified = 0
    try:
        for (point, at), (root, proc) in zip(points, procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == -signal.SIGKILL, (point, at, out, err)
            # a reader sees only whole episodes, before any recovery
            seen = Dataset(root, SPEC)
            for i in range(len(seen)):
                assert_bit_exact(seen.load_episode(i), rows(episodes[i]))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="pac_ros.data"):
                writer = DatasetWriter(root, SPEC)
            left = expected_left(point, at, events, episodes)
            assert writer.num_episodes == left, (point, at, caplog.text)
            assert all(text in caplog.text for text in RECOVERY[point][0]), (point, at, caplog.text)
            ds = Dataset(root, SPEC)
            for i in range(len(ds)):
                e = ds.load_episode(i)
                assert_bit_exact(e, rows(episodes[i]))
                assert e.meta["metadata"]["k"] == i and e.meta["seed"] == i
            report = validate(root)
            assert report.ok, report.problems
            assert not (root / "quarantine").exists()
            if left < len(episodes):  # the next writer records the next episode
                assert commit_episode(writer, episodes[left], seed=left, metadata={"k": left}) == left
                assert_bit_exact(Dataset(root, SPEC).load_episode(left), rows(episodes[left]))
            writer.close()
            verified += len(ds)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"20 kill points {sorted({p for p, _ in points})}: {verified} committed episodes verified bit-exact")
