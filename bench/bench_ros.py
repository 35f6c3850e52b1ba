"""ROS-side figures: bridge real-time factor, recorder under load, recorded episodes.

    .venv/bin/python bench/bench_ros.py [--load-seconds 60] [--load-episode-steps 200] [--episodes 10]
                                        [--parts bridge recorder graph]

1. mujoco_bridge pinned to one core, both cameras, control at 20 Hz: the real-time
   factor it holds at real_time_factor=1, the most it reaches when asked for more,
   and lock-step steps/s against an echo controller.
2. recorder (this process) while another process publishes 640x480 rgb8 at 30 Hz,
   joint states at 500 Hz and stamped commands at 10 Hz: messages published vs
   received (drops), the recorder's CPU use in cores, episode commit times.
3. the stacking graph with the expert: wall time and size per recorded episode.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from pac_ros.nodes.common import init_ros  # noqa: E402
from pac_ros.spec import default_spec_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def spec_variant(tmp: Path, **changes) -> Path:
    data = yaml.safe_load(default_spec_path().read_text())
    data["spec"].update(changes)
    path = tmp / f"spec_{len(list(tmp.glob('spec_*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- 1. bridge -----------------------------------------------------------------------
def bench_bridge(spec_file: Path, seconds: float) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from pac_ros.nodes import common
    from pac_ros.nodes.mujoco_bridge import MujocoBridge

    os.sched_setaffinity(0, {0})
    init_ros(domain_id=91)
    print(f"\n== mujoco_bridge, 2 cameras 64x64, control 20 Hz, pinned to 1 core ({seconds:g} s each)")
    for label, params in (("real_time_factor=1", ["mode:=realtime", "real_time_factor:=1.0"]),
                          ("real_time_factor=100", ["mode:=realtime", "real_time_factor:=100.0"])):
        args = ["--ros-args", "-p", f"spec_file:={spec_file}"] + sum((["-p", p] for p in params), [])
        bridge = MujocoBridge(cli_args=args)
        ex = SingleThreadedExecutor()
        ex.add_node(bridge)
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        steps0 = bridge.steps
        while time.perf_counter() - wall0 < seconds:
            ex.spin_once(timeout_sec=0.01)
        wall = time.perf_counter() - wall0
        steps = bridge.steps - steps0
        rtf = steps * bridge.spec.control_period / wall
        print(f"  {label:22s} real-time factor {rtf:6.2f}  ({steps / wall:7.1f} steps/s, "
              f"CPU {(cpu_seconds() - cpu0) / wall:4.2f} cores)")
        ex.remove_node(bridge)
        bridge.destroy_node()

    # lock-step against an echo controller: a command back for every joint state
    args = ["--ros-args", "-p", f"spec_file:={spec_file}", "-p", "mode:=lockstep"]
    bridge = MujocoBridge(cli_args=args)
    echo = rclpy.create_node("echo_controller")
    pub = echo.create_publisher(Float64MultiArray, common.COMMANDS, common.RELIABLE_QOS)
    echo.create_subscription(JointState, common.JOINT_STATES,
                             lambda m: pub.publish(Float64MultiArray(data=list(m.position))), common.SENSOR_QOS)
    ex = SingleThreadedExecutor()
    ex.add_node(bridge)
    ex.add_node(echo)
    while bridge.steps < 5:
        ex.spin_once(timeout_sec=0.01)
    steps0, wall0 = bridge.steps, time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        ex.spin_once(timeout_sec=0.01)
    wall = time.perf_counter() - wall0
    rate = (bridge.steps - steps0) / wall
    print(f"  lock-step (echo controller)  {rate:7.1f} steps/s = real-time factor "
          f"{rate * bridge.spec.control_period:6.2f}, watchdog steps {bridge.lockstep_misses}")
    bridge.destroy_node()
    echo.destroy_node()
    rclpy.shutdown()


# ---- 2. recorder under load ----------------------------------------------------------
def load_publisher(spec_file: str, seconds: float, domain: int, report: str, episode_steps: int) -> None:
    """Child process: camera 640x480 rgb8 @30 Hz, joints @500 Hz, commands @10 Hz; a new instruction
    (the recorder's next episode) every episode_steps + 10 commands, so episodes commit under load."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from pac_ros.nodes import common
    from pac_ros.nodes.convert import numpy_to_image
    from pac_ros.spec import Spec

    os.sched_setaffinity(0, {1})
    spec = Spec.load(spec_file)
    init_ros(domain_id=domain)
    node = rclpy.create_node("load_publisher")
    cam = spec.cameras[0]
    image_pub = node.create_publisher(Image, common.CAMERA_TOPIC.format(name=cam.name), common.SENSOR_QOS)
    joint_pub = node.create_publisher(JointState, common.JOINT_STATES, common.SENSOR_QOS)
    command_pub = node.create_publisher(JointState, "/load/command", common.RELIABLE_QOS)
    instruction_pub = node.create_publisher(String, common.INSTRUCTION, common.LATCHED_QOS)
    instructions = spec.instructions()
    instruction_pub.publish(String(data=instructions[0]))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, cam.shape, dtype=np.uint8) for _ in range(4)]
    counts = {"image": 0, "joint_states": 0, "command": 0}
    state = {"stamp": None}
    q = np.zeros(spec.action_dim)

    def now():
        return node.get_clock().now().to_msg()

    def image():
        image_pub.publish(numpy_to_image(frames[counts["image"] % 4], cam.encoding, now(), cam.name))
        counts["image"] += 1

    def joints():
        msg = JointState(name=spec.joint_names, position=[float(v) for v in q])
        msg.header.stamp = state["stamp"] = now()
        joint_pub.publish(msg)
        counts["joint_states"] += 1

    def command():
        if state["stamp"] is not None:
            msg = JointState(name=spec.joint_names, position=[float(v) for v in q])
            msg.header.stamp = state["stamp"]
            command_pub.publish(msg)
            counts["command"] += 1
            if counts["command"] % (episode_steps + 10) == 0:  # the recorder ended the episode 10 commands ago
                episode = counts["command"] // (episode_steps + 10)
                instruction_pub.publish(String(data=instructions[episode % len(instructions)]))

    node.create_timer(1 / 30, image)
    node.create_timer(1 / 500, joints)
    node.create_timer(1 / 10, command)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    time.sleep(1.0)  # discovery
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ex.spin_once(timeout_sec=0.001)
    Path(report).write_text(json.dumps({**counts, "seconds": time.perf_counter() - start}))
    node.destroy_node()
    rclpy.shutdown()


def bench_recorder(spec_file: Path, seconds: float, tmp: Path, episode_steps: int) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from pac_ros.nodes.recorder import Recorder

    domain = 92
    report = tmp / "publisher.json"
    child = subprocess.Popen([sys.executable, __file__, "--publisher", str(spec_file), str(seconds), str(domain),
                              str(report), str(episode_steps)], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    os.sched_setaffinity(0, {0})
    init_ros(domain_id=domain)
    args = ["--ros-args", "-p", f"spec_file:={spec_file}", "-p", f"dataset:={tmp / 'load_ds'}",
            "-p", "command_state_topic:=/load/command", "-p", "record_features:=false",
            "-p", f"max_steps:={episode_steps}", "-p", "source:=teleop"]
    recorder = Recorder(cli_args=args)
    ex = SingleThreadedExecutor()
    ex.add_node(recorder)
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    while child.poll() is None:
        ex.spin_once(timeout_sec=0.01)
    spun = time.perf_counter() - wall0
    for _ in range(50):  # drain what is still queued
        ex.spin_once(timeout_sec=0.01)
    recorder.flush()
    cpu = cpu_seconds() - cpu0
    sent = json.loads(report.read_text())
    got = recorder.received
    print(f"\n== recorder under load for {sent['seconds']:.0f} s (publisher in another process, recorder on 1 core)")
    for name, key in (("image 640x480 rgb8", "image:front"), ("joint_states", "joint_states"),
                      ("stamped command", "command")):
        pub = sent[{"image:front": "image", "joint_states": "joint_states", "command": "command"}[key]]
        print(f"  {name:20s} published {pub:6d} ({pub / sent['seconds']:6.1f} Hz)  received {got[key]:6d}"
              f"  dropped {pub - got[key]:5d} ({(pub - got[key]) / max(pub, 1):.2%})")
    print(f"  recorder CPU: {cpu / spun:.2f} cores (callbacks + commit thread + DDS)")
    if recorder.commit_seconds:
        c = np.array(recorder.commit_seconds)
        print(f"  episodes committed during the load: {len(c)} of {episode_steps} steps; commit (PNG + Parquet + "
              f"fsync, on the commit thread) median {np.median(c) * 1000:.0f} ms, max {c.max() * 1000:.0f} ms")
    recorder.destroy_node()
    rclpy.shutdown()


# ---- 3. expert episodes through ROS ----------------------------------------------------
def bench_graph(episodes: int, tmp: Path) -> None:
    import rclpy

    from pac_ros.data import Dataset
    from pac_ros.nodes.launcher import GraphRunner

    init_ros(domain_id=93)
    runner = GraphRunner("stacking", "expert", [f"recorder.dataset={tmp / 'graph_ds'}"])
    recorder = runner.nodes["recorder"]
    start = time.perf_counter()
    runner.spin(until=lambda: len(recorder.committed) >= episodes, timeout=600)
    wall = time.perf_counter() - start
    recorder.abandon("benchmark done")
    runner.close()
    rclpy.shutdown()
    ds = Dataset(tmp / "graph_ds")
    steps = sum(m["length"] for m in ds.episodes)
    print(f"\n== stacking graph (lock-step bridge + perfect expert + recorder), {len(ds)} episodes")
    print(f"  wall time per episode {wall / len(ds):.2f} s ({steps / wall:.0f} steps/s), "
          f"mean length {steps / len(ds):.1f} steps, success {np.mean([m['success'] for m in ds.episodes]):.0%}")
    print(f"  size per episode {ds.size_bytes() / len(ds) / 1e3:.0f} kB ({ds.size_bytes() / steps:.0f} bytes/step)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        load_publisher(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge-seconds", type=float, default=10.0)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--load-episode-steps", type=int, default=200,
                        help="recorder load test: steps (commands) per episode; one is committed each time")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--parts", nargs="+", choices=["bridge", "recorder", "graph"],
                        default=["bridge", "recorder", "graph"])
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        # each part in its own process: core pinning and rclpy state stay separate
        for part in args.parts:
            subprocess.run([sys.executable, __file__, "--part", part, str(tmp), str(args.bridge_seconds),
                            str(args.load_seconds), str(args.episodes), str(args.load_episode_steps)], check=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))


def part() -> None:
    name, tmp, bridge_s, load_s, episodes, episode_steps = sys.argv[2], Path(sys.argv[3]), *map(float, sys.argv[4:8])
    if name == "bridge":
        bench_bridge(spec_variant(tmp, control_rate_hz=20.0), bridge_s)
    elif name == "recorder":
        cams = [{"name": "front", "width": 640, "height": 480, "encoding": "rgb8"}]
        bench_recorder(spec_variant(tmp, cameras=cams), load_s, tmp, int(episode_steps))
    else:
        bench_graph(int(episodes), tmp)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--part":
        part()
    else:
        main()
