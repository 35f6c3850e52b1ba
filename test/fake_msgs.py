"""Stand-ins for the ROS messages the ROS-free readers take (pac_ros/data/messages.py reads
fields by name), and a deterministic stream of a robot's messages for RecorderCore."""
from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np


def stamp(t: float) -> NS:
    ns = int(round(t * 1e9))
    return NS(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(t: float) -> NS:
    return NS(stamp=stamp(t), frame_id="")


def image(t: float, array: np.ndarray, encoding: str = "rgb8") -> NS:
    array = np.ascontiguousarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    return NS(header=header(t), height=array.shape[0], width=array.shape[1], encoding=encoding,
              is_bigendian=0, step=array.shape[1] * channels * array.itemsize, data=array.tobytes())


def joint_state(t: float, names, positions) -> NS:
    return NS(header=header(t), name=list(names), position=[float(v) for v in positions], velocity=[], effort=[])


def pose_array(t: float, flat) -> NS:
    rows = np.asarray(flat, dtype=np.float64).reshape(-1, 7)
    poses = [NS(position=NS(x=r[0], y=r[1], z=r[2]), orientation=NS(w=r[3], x=r[4], y=r[5], z=r[6])) for r in rows]
    return NS(header=header(t), poses=poses)


def robot_stream(spec, seed: int, episodes: int = 6, t0: float = 10.0, dropout: dict | None = None,
                 long: int | None = None) -> list[tuple]:
    """Events ``(kind, *args)`` of ``episodes`` short episodes as a robot, its commander and
    the sim publish them: an instruction, then per period joint state, images and block
    poses at stamp t, the command stamped t (none at the final observation), the reward
    for the step before and, for every other episode, success at the final observation.
    ``dropout = {"input": "joints"|"cameras", "episode": k, "at": step, "seconds": s}``
    silences that input (and the commands, which need it) for ``s`` seconds there. That
    episode, and episode ``long``, get 16 more steps."""
    rng = np.random.default_rng([seed, 12345])
    dt = spec.control_period
    names = spec.instructions()
    events: list[tuple] = []
    t = t0
    for k in range(episodes):
        events.append(("instruction", names[(seed + k) % len(names)]))
        T = 1 + int(rng.integers(0, 4)) + (16 if k == long or (dropout and dropout["episode"] == k) else 0)
        silent = (-1.0, -1.0)
        for i in range(T + 1):
            t = round(t + dt, 9)
            if dropout and dropout["episode"] == k and i == dropout["at"]:
                silent = (t, t + dropout["seconds"])
            quiet = silent[0] <= t < silent[1]
            q = rng.uniform(spec.lower, spec.upper)
            if not (quiet and dropout["input"] == "joints"):
                events.append(("joints", joint_state(t, spec.joint_names, q)))
            for cam in spec.cameras:
                img = rng.integers(0, 256, cam.shape, dtype=np.uint8)
                if not (quiet and dropout["input"] == "cameras"):
                    events.append(("image", cam.name, image(t, img, cam.encoding)))
            events.append(("poses", pose_array(t, rng.normal(size=spec.feature_dim))))
            if i > 0:
                events.append(("reward", float(np.float32(rng.random()))))
            if i == T and k % 2:
                events.append(("success", True))
            if i < T and not quiet:
                events.append(("command", joint_state(t, spec.joint_names, rng.uniform(spec.lower, spec.upper))))
        t = round(t + dt, 9)
    events.append(("stop",))
    return events


def feed(core, event: tuple) -> None:
    """Hand one event of ``robot_stream`` to a RecorderCore, with the clock at the newest stamp."""
    kind, *args = event
    if kind == "instruction":
        core.on_instruction(args[0])
    elif kind == "stop":
        if core.recording:
            core.stop("end of stream")
    elif kind in ("reward", "success"):
        getattr(core, f"on_{kind}")(args[0])
    else:
        msg = args[-1]
        now = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if kind == "image":
            core.on_image(args[0], msg, now)
        else:
            {"joints": core.on_joint_state, "poses": core.on_block_poses, "command": core.on_command}[kind](msg, now)
