"""Child process for the crash tests (test_data, test_faults_recorder_kill): commits episodes until killed.

usage: data_crash_writer.py ROOT SEED [POINT N [recorder]]
POINT makes the process SIGKILL itself inside the N-th commit step of that kind:
after_task (task lines appended), before_rename, after_rename, torn_tmp (half an
episode file written), torn_index / torn_task (half an index line written),
after_index (the index line written, the commit not yet returned), add_step (inside
the N-th step copied into an episode); or slow_fsync N: every fsync sleeps N ms first
(a slow disk), so kills from outside land inside commits more often.
Episode k's content is ``synthetic_episode(spec, seed, k)`` so the test can check it.
With ``recorder`` the process is a recorder instead: it feeds ``fake_msgs.robot_stream``
through RecorderCore and commits what it hands over (commit_episode, as the recorder
node does); POINT ``message`` N kills it before the N-th message, mid-recording.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from pac_ros.spec import Spec


def synthetic_episode(spec: Spec, seed: int, k: int) -> dict:
    """Deterministic small episode number ``k``: steps, instruction changes, terminal flag."""
    rng = np.random.default_rng([seed, k])
    T = 1 + int(rng.integers(0, 5))
    instructions = spec.instructions()
    instr = instructions[k % len(instructions)]
    steps = []
    for t in range(T):
        new = None
        if k % 3 == 2 and t == T // 2:
            new = f"wave at block {k}"  # a new task mid-episode
        steps.append(dict(
            timestamp=100.0 + k + t * spec.control_period,
            joint_positions=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            images={c.name: rng.integers(0, 256, c.shape, dtype=np.uint8) for c in spec.cameras},
            action=rng.uniform(spec.lower, spec.upper).astype(np.float32),
            reward=float(np.float32(rng.random())) if t < T - 1 else 0.0,
            features=rng.normal(size=spec.feature_dim).astype(np.float32),
            instruction=new,
        ))
    return dict(instruction=instr, steps=steps, terminal=bool(k % 2), seed=k)


def record(writer, spec: Spec, seed: int, k: int) -> int:
    ep_data = synthetic_episode(spec, seed, k)
    ep = writer.begin_episode(ep_data["instruction"], source="expert", seed=ep_data["seed"],
                              metadata={"k": k})
    for step in ep_data["steps"]:
        ep.add_step(**step)
    return writer.commit(ep, terminal=ep_data["terminal"])


def _install_crash(point: str, at: int) -> None:
    from pac_ros.data import format as fmt
    from pac_ros.data.writer import DatasetWriter

    count = [0]

    def hit() -> bool:
        count[0] += 1
        return count[0] == at

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "slow_fsync":  # a slow disk: widens the windows inside a commit
        orig_fsync = os.fsync

        def fsync(fd):
            time.sleep(at / 1000.0)
            orig_fsync(fd)

        os.fsync = fsync
    elif point in ("before_rename", "after_rename"):
        orig_rename = DatasetWriter._rename

        def _rename(self, tmp, final):
            if point == "before_rename" and hit():
                die()
            orig_rename(self, tmp, final)
            if point == "after_rename" and hit():
                die()

        DatasetWriter._rename = _rename
    elif point == "torn_tmp":
        orig_write = fmt.write_all

        def write_all(fd, data):
            if data[:4] == b"PAR1" and hit():  # an episode file, not info.json or an index line
                orig_write(fd, data[: len(data) // 2])
                die()
            orig_write(fd, data)

        fmt.write_all = write_all
    elif point == "add_step":
        from pac_ros.data.writer import EpisodeBuffer

        orig_add = EpisodeBuffer.add_step

        def add_step(self, *args, **kwargs):
            if hit():
                die()
            orig_add(self, *args, **kwargs)

        EpisodeBuffer.add_step = add_step
    elif point in ("after_index", "after_task"):
        orig_append = DatasetWriter._append_line
        target = fmt.EPISODES_PATH if point == "after_index" else fmt.TASKS_PATH

        def _append_line(self, fd, data, what):
            orig_append(self, fd, data, what)
            if what == target and hit():
                die()

        DatasetWriter._append_line = _append_line
    elif point == "message":
        pass  # counted by run_recorder
    elif point in ("torn_index", "torn_task"):
        orig_append = DatasetWriter._append_line
        target = fmt.EPISODES_PATH if point == "torn_index" else fmt.TASKS_PATH

        def _append_line(self, fd, data, what):
            if what == target and hit():
                fmt.write_all(fd, data[: max(1, len(data) // 2)])
                os.fsync(fd)
                die()
            orig_append(self, fd, data, what)

        DatasetWriter._append_line = _append_line
    else:
        raise SystemExit(f"unknown crash point {point!r}")


def run_recorder(writer, spec: Spec, seed: int, kill_at_message: int | None) -> None:
    import fake_msgs

    from pac_ros.data.recording import RecorderCore, commit_episode

    def on_episode(episode):
        k = writer.num_episodes
        commit_episode(writer, episode, seed=k, metadata={"k": k})

    core = RecorderCore(spec, on_episode, features=True, max_steps=None)
    for i, event in enumerate(fake_msgs.robot_stream(spec, seed), 1):
        if i == kill_at_message:
            os.kill(os.getpid(), signal.SIGKILL)
        fake_msgs.feed(core, event)


def main(argv: list[str]) -> None:
    from pac_ros.data import DatasetWriter
    from pac_ros.spec import default_spec

    root, seed = argv[0], int(argv[1])
    if len(argv) > 2:
        _install_crash(argv[2], int(argv[3]))
    spec = default_spec()
    writer = DatasetWriter(root, spec, features=True)
    print("ready", writer.num_episodes, flush=True)
    if argv[4:] == ["recorder"]:
        run_recorder(writer, spec, seed, int(argv[3]) if argv[2] == "message" else None)
        return
    k = writer.num_episodes
    deadline = time.monotonic() + 60.0  # never outlive a lost parent for long
    while time.monotonic() < deadline:
        record(writer, spec, seed, k)
        k += 1


if __name__ == "__main__":
    main(sys.argv[1:])
