"""Soak with crashes: the stacking graph as separate processes, killed and starved on a schedule.

    .venv/bin/python bench/soak_crashes.py [--minutes 120] [--cycle 1200] [--out DIR] [--json FILE]

The MuJoCo bridge (realtime, the spec's 10 Hz), the policy node (the shipped model) and the
recorder run as three processes, as `ros2 launch` starts them. Each ``--cycle`` seconds,
at fixed fractions of the cycle, in this order:

- recorder: SIGKILL, restarted at once (a respawning launch);
- policy: SIGKILL, restarted at once;
- camera outage: the bridge stops publishing its cameras, and the block poses a features model
  reads in their place, for ``--outage`` seconds (default 10 staleness limits), then resumes;
- driver freeze: the bridge gets SIGSTOP for ``--freeze`` seconds, then SIGCONT;
- instruction change: a different instruction of the task is published mid-episode (the
  bridge retargets the episode, the recorder ends it there and starts the next).

Reported: committed episodes and ``validate`` of the dataset; every episode the bridge ran,
accounted for (committed whole, split by the instruction change, lost in flight at a recorder
kill or while the recorder restarted, with the tail recorded after the restart flagged
``joined_in_progress``, or cut by the end);
holds during each outage and outside them; commands that were not finite or out of limits
(must be 0); restart to first command and to first ``acting`` status; resident memory of each
process incarnation after ``--warmup`` seconds and at its end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"mujoco_bridge": "pac_ros.nodes.mujoco_bridge", "policy": "pac_ros.nodes.policy",
           "recorder": "pac_ros.nodes.recorder"}
EVENTS = (("recorder_kill", 0.15), ("policy_kill", 0.35), ("camera_outage", 0.55), ("driver_freeze", 0.7),
          ("instruction_change", 0.85))
SAMPLE_S = 5.0  # resident-memory sampling period


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Incarnation:
    pid: int
    started: float  # monotonic
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)
    ended: float | None = None
    how: str = ""  # killed | stopped | exited rc=N

    def growth(self, warmup: float) -> dict | None:
        """Resident memory after the warm-up and at the end; None when it lived under two warm-ups."""
        after = [(t, m) for t, m in self.rss if t >= warmup]
        if not after or self.rss[-1][0] < 2 * warmup:
            return None
        first, last = after[0][1], self.rss[-1][1]
        return {"pid": self.pid, "lived_s": round(self.rss[-1][0], 1), "rss_after_warmup_mib": round(first, 1),
                "rss_end_mib": round(last, 1), "growth_pct": round(100 * (last - first) / first, 2),
                "peak_mib": round(max(m for _, m in self.rss), 1)}


class NodeProcess:
    """One node as its own process (`python -m` its module's main), restartable."""

    def __init__(self, name: str, params: dict, params_file: Path, log_dir: Path, env: dict):
        self.name, self.params, self.params_file, self.env = name, params, params_file, env
        self.log = open(log_dir / f"{name}.log", "ab")
        self.proc: subprocess.Popen | None = None
        self.lives: list[Incarnation] = []

    def argv(self) -> list[str]:
        args = [sys.executable, "-c", f"from {MODULES[self.name]} import main; main()",
                "--ros-args", "--params-file", str(self.params_file)]
        for key, value in self.params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        return args

    def start(self) -> float:
        self.proc = subprocess.Popen(self.argv(), cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        now = time.monotonic()
        self.lives.append(Incarnation(self.proc.pid, now))
        return now

    def sample(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            mib = rss_mib(self.proc.pid)
            if mib is not None:
                life = self.lives[-1]
                life.rss.append((time.monotonic() - life.started, mib))

    def exited(self) -> int | None:
        """The exit code if the process ended on its own (not by us), else None."""
        if self.proc is None or self.lives[-1].ended is not None:
            return None
        rc = self.proc.poll()
        if rc is not None:
            self._end(f"exited rc={rc}")
        return rc

    def _end(self, how: str) -> None:
        life = self.lives[-1]
        life.ended, life.how = time.monotonic(), how

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._end("killed")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT, as Ctrl-C or a launch shutdown: the recorder commits the episode in progress."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._end("did not stop on SIGINT: killed")
                return
        self._end(f"stopped rc={self.proc.returncode}")


def node_params(out: Path, checkpoint: str | None, seed: int, real_time_factor: float) -> tuple[Path, dict]:
    from pac_ros.nodes.graph import node_parameters

    _, params_file, per_node = node_parameters("stacking", "policy", checkpoint=checkpoint or "")
    per_node["mujoco_bridge"].update(mode="realtime", real_time_factor=real_time_factor, seed=seed)
    per_node["recorder"].update(dataset=str(out))
    per_node["policy"].update(threads=1)
    return params_file, per_node


class Monitor:
    """The soak's own ROS node: statuses, commands, instructions and the clock, by wall time."""

    def __init__(self, spec):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticStatus
        from rclpy.parameter_client import AsyncParameterClient
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import Float64MultiArray, String

        from pac_ros import topics
        from pac_ros.nodes import common

        self.spec = spec
        self.node = rclpy.create_node("soak_monitor")
        self.instruction_topic = topics.INSTRUCTION
        self.statuses: list[tuple[float, bool, str]] = []  # (monotonic, acting, message)
        self.commands: list[float] = []  # monotonic arrival of each command
        self.bad_commands: list[str] = []
        self.instructions: list[tuple[float, float, str]] = []  # (monotonic, sim time, text)
        self.sim_time = 0.0
        n = self.node
        n.create_subscription(DiagnosticStatus, topics.STATUS, self._on_status, 100)
        n.create_subscription(Float64MultiArray, topics.COMMANDS, self._on_command, common.RELIABLE_QOS)
        n.create_subscription(String, topics.INSTRUCTION, self._on_instruction, common.LATCHED_QOS)
        n.create_subscription(Clock, "/clock", self._on_clock, 10)
        self.clock_published: list[int] = []  # source timestamp (ns) of each /clock heard, and its sim time
        self.clock_sim: list[float] = []
        self.params = AsyncParameterClient(n, "mujoco_bridge")
        self.String, self.qos = String, common.LATCHED_QOS
        self.announcer = None  # a latched publisher for one instruction change, destroyed once delivered
        self.announcer_until = 0.0

    def recorder_subscriptions(self) -> set:
        """Endpoint ids of the recorder's /instruction subscriptions (a restarted recorder has a new one)."""
        return {bytes(i.endpoint_gid) for i in self.node.get_subscriptions_info_by_topic(self.instruction_topic)
                if i.node_name == "recorder"}

    def _on_status(self, msg) -> None:
        self.statuses.append((time.monotonic(), msg.message == "acting", msg.message))

    def _on_command(self, msg) -> None:
        import numpy as np

        self.commands.append(time.monotonic())
        q = np.asarray(msg.data, dtype=float)
        if q.shape != (self.spec.action_dim,) or not np.all(np.isfinite(q)):
            self.bad_commands.append(f"not {self.spec.action_dim} finite values: {q.tolist()}")
        elif np.any(q < self.spec.lower - 1e-6) or np.any(q > self.spec.upper + 1e-6):
            self.bad_commands.append(f"outside the joint limits: {q.tolist()}")

    def _on_clock(self, msg, info: dict) -> None:
        self.sim_time = msg.clock.sec + msg.clock.nanosec * 1e-9
        self.clock_published.append(info.get("source_timestamp") or time.time_ns())
        self.clock_sim.append(self.sim_time)

    def _on_instruction(self, msg, info: dict) -> None:
        published = info.get("source_timestamp") or time.time_ns()
        self.instructions.append((time.monotonic(), self.sim_time_at(published), msg.data))

    def sim_time_at(self, published_ns: int) -> float:
        """Sim time when a message was published: a latched instruction reaches a monitor that
        discovered the bridge late (a loaded machine) seconds after it was sent. 0 before the first
        /clock heard (the bridge's first episode starts at sim time 0)."""
        import bisect

        i = bisect.bisect_right(self.clock_published, published_ns) - 1
        return self.clock_sim[i] if i >= 0 else 0.0

    def set_streams(self, on: bool) -> None:
        from rclpy.parameter import Parameter

        self.params.set_parameters([Parameter("publish_images", value=on),
                                    Parameter("publish_block_poses", value=on)])

    def announce(self, text: str) -> None:
        self.announcer = self.node.create_publisher(self.String, self.instruction_topic, self.qos)
        self.announcer.publish(self.String(data=text))
        self.announcer_until = time.monotonic() + 3.0

    def tidy(self) -> None:
        """Destroy the instruction publisher once delivered: a restarted node must not get it latched."""
        if self.announcer is not None and time.monotonic() > self.announcer_until:
            self.node.destroy_publisher(self.announcer)
            self.announcer = None


def soak(minutes: float, out: Path, cycle: float, warmup: float, outage: float | None = None, freeze: float = 3.0,
         checkpoint: str | None = None, seed: int = 300_000, real_time_factor: float = 1.0,
         log_dir: Path | None = None, domain_id: int = 94, progress: bool = False) -> dict:
    """Run the graph for ``minutes`` with the crash schedule; rclpy must be initialised in this
    process on ``domain_id``. Returns the figures (see ``describe``)."""
    from rclpy.executors import SingleThreadedExecutor

    from pac_ros.spec import default_spec

    spec = default_spec()
    out = Path(out)
    log_dir = Path(log_dir or out.parent / "soak_logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    params_file, per_node = node_params(out, checkpoint, seed, real_time_factor)
    if outage is None:
        from pac_ros.nodes.graph import configured

        outage = 10 * float(configured("stacking", "policy", "staleness")["image"])
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    procs = {name: NodeProcess(name, per_node[name], params_file, log_dir, env) for name in MODULES}
    monitor = Monitor(spec)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor.node)

    def spin_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            executor.spin_once(timeout_sec=min(0.05, max(0.0, until - time.monotonic())))

    events: list[dict] = []
    unexpected: list[str] = []
    start = time.monotonic()
    end = start + minutes * 60
    for name in ("mujoco_bridge", "recorder", "policy"):
        procs[name].start()
    schedule = [(start + c * cycle + f * cycle, kind) for c in range(int(math.ceil(minutes * 60 / cycle)))
                for kind, f in EVENTS]
    schedule = [(t, k) for t, k in schedule if t < end - 5]
    next_sample = start
    next_report = start + 60
    try:
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            monitor.tidy()
            if now >= next_sample:
                next_sample += SAMPLE_S
                for p in procs.values():
                    p.sample()
            for p in procs.values():
                rc = p.exited()
                if rc is not None:  # died on its own: a defect; restart it as a respawning launch would
                    unexpected.append(f"{p.name} exited rc={rc} at {now - start:.0f} s")
                    p.start()
            if schedule and now >= schedule[0][0]:
                _, kind = schedule.pop(0)
                events.append(run_event(kind, procs, monitor, spec, spin_for, outage, freeze, start))
            if progress and now >= next_report:
                next_report += 60
                print(f"  {(now - start) / 60:5.1f} min: {len(events)} events, {len(monitor.commands)} commands, "
                      + ", ".join(f"{n} {p.lives[-1].rss[-1][1]:.0f} MiB" for n, p in procs.items()
                                  if p.lives[-1].rss), flush=True)
    finally:
        for name in ("policy", "recorder", "mujoco_bridge"):  # the recorder commits the episode in progress
            procs[name].stop()
        spin_for(0.2)
        ended_sim = monitor.sim_time
        executor.remove_node(monitor.node)
        monitor.node.destroy_node()
        for p in procs.values():
            p.log.close()
    wall = time.monotonic() - start
    return report(out, spec, procs, monitor, events, unexpected, wall, warmup, ended_sim, start)


def run_event(kind: str, procs: dict, monitor: Monitor, spec, spin_for, outage: float, freeze: float,
              start: float) -> dict:
    now = time.monotonic()
    event = {"kind": kind, "at_s": round(now - start, 1), "sim_time": monitor.sim_time, "began": now}
    if kind in ("recorder_kill", "policy_kill"):
        p = procs[kind.split("_")[0]]
        before = monitor.recorder_subscriptions() if kind == "recorder_kill" else set()
        p.kill()
        event["restarted"] = p.start()
        event["ended"] = event["restarted"]
        if kind == "recorder_kill":  # down until the new one listens: an episode started meanwhile is lost too
            until = time.monotonic() + 60
            while not monitor.recorder_subscriptions() - before and time.monotonic() < until:
                spin_for(0.05)
            event["ready_sim_time"] = monitor.sim_time
            event["restart_to_subscribed_s"] = round(time.monotonic() - event["restarted"], 2)
    elif kind == "camera_outage":
        monitor.set_streams(False)
        spin_for(outage)
        monitor.set_streams(True)
        event["ended"] = time.monotonic()
    elif kind == "driver_freeze":
        bridge = procs["mujoco_bridge"].proc
        bridge.send_signal(signal.SIGSTOP)
        spin_for(freeze)
        bridge.send_signal(signal.SIGCONT)
        event["ended"] = time.monotonic()
    elif kind == "instruction_change":
        current = monitor.instructions[-1][2] if monitor.instructions else spec.instructions()[0]
        others = [i for i in spec.instructions() if i != current]
        event["instruction"] = others[len(monitor.instructions) % len(others)]
        monitor.announce(event["instruction"])
        event["ended"] = time.monotonic()
    return event


def bridge_episodes(monitor: Monitor, events: list[dict]) -> list[dict]:
    """The episodes the bridge ran, from the instructions it published (sim time of each start)."""
    own = [(e["began"], e["instruction"]) for e in events if e["kind"] == "instruction_change"]
    starts = []
    for wall, sim, text in monitor.instructions:
        if any(text == t and 0 <= wall - w < 2.0 for w, t in own):
            continue  # the soak's own instruction change, not a reset
        starts.append((sim, text))
    return [{"start": s, "end": starts[i + 1][0] if i + 1 < len(starts) else math.inf, "instruction": t}
            for i, (s, t) in enumerate(starts)]


def account(out: Path, monitor: Monitor, events: list[dict], ended_sim: float, period: float,
            lag: float = 1.0) -> dict:
    """Each episode the bridge ran: committed, split, lost in flight at a recorder kill, or cut by the end.

    The soak reads each episode's start off its own clock when the instruction reaches it, up to
    ``lag`` seconds of sim time late on a busy machine: a committed episode belongs to the last
    episode that started before its first step plus ``lag`` (shorter than any episode)."""
    import bisect

    from pac_ros.data import Dataset

    ds = Dataset(out)
    parts = []
    for i, meta in enumerate(ds.episodes):
        parts.append({"index": i, "first": float(meta["start_stamp"]), "last": float(meta["end_stamp"]),
                      "joined": bool(meta.get("metadata", {}).get("joined_in_progress", False)),
                      "reason": meta.get("metadata", {}).get("stop_reason", ""), "success": meta.get("success")})
    episodes = bridge_episodes(monitor, events)
    starts = [ep["start"] for ep in episodes]
    owned: dict[int, list[dict]] = {}
    stray = []
    for p in parts:  # a joined part starts mid-episode, maybe within lag of the next start
        k = bisect.bisect_right(starts, p["first"] + (0.0 if p["joined"] else lag)) - 1
        (owned.setdefault(k, []) if k >= 0 else stray).append(p)

    def during(ep: dict, times: list[float]) -> bool:
        return any(ep["start"] - lag <= t < ep["end"] for t in times)

    downs = [(e["sim_time"], e.get("ready_sim_time", e["sim_time"])) for e in events if e["kind"] == "recorder_kill"]
    changes = [e["sim_time"] for e in events if e["kind"] == "instruction_change"]
    outcome: Counter[str] = Counter()
    unaccounted = []
    for k, ep in enumerate(episodes):
        mine = owned.get(k, [])
        whole = [p for p in mine if not p["joined"]]
        if whole and during(ep, changes):
            outcome["split by the instruction change (both parts committed)" if len(whole) == 2
                    else "split by the instruction change (one part had no steps)"] += 1
        elif whole:
            outcome["committed whole"] += 1
        elif any(ep["start"] - lag <= up and down < ep["end"] + lag for down, up in downs):  # killed before its commit
            outcome["lost in flight at a recorder kill"] += 1
            outcome["  of which the tail was committed, joined_in_progress"] += any(p["joined"] for p in mine)
        elif ep["end"] == math.inf or ep["start"] >= ended_sim - 5 * period:
            outcome["cut by the end of the soak (no steps)"] += 1
        else:
            unaccounted.append({"episode": k, **ep, "parts": mine})
    return {"bridge_episodes": len(episodes), "committed": len(parts),
            "joined_in_progress": sum(p["joined"] for p in parts), "outcomes": dict(outcome),
            "unaccounted": unaccounted, "stray_committed": stray,
            "successes": sum(bool(p["success"]) for p in parts),
            "episodes": episodes, "parts": parts, "recorder_down": downs}  # what it was worked out from


def report(out: Path, spec, procs: dict, monitor: Monitor, events: list[dict], unexpected: list[str], wall: float,
           warmup: float, ended_sim: float, start: float) -> dict:
    from pac_ros.data.validate import validate

    validation = validate(out)
    accounting = account(out, monitor, events, ended_sim, spec.control_period)
    statuses = monitor.statuses
    per_event = []
    outage_windows = []
    for e in events:
        row = {k: e[k] for k in ("kind", "at_s")}
        if e["kind"] in ("camera_outage", "driver_freeze"):
            row["lasted_s"] = round(e["ended"] - e["began"], 2)
        window = (e["began"], e["ended"] + 2.0)
        if e["kind"] in ("policy_kill", "camera_outage", "driver_freeze"):
            outage_windows.append(window)
        row["holds"] = sum(1 for t, acting, _ in statuses if window[0] <= t <= window[1] and not acting)
        if e["kind"] == "recorder_kill":
            row["restart_to_subscribed_s"] = e.get("restart_to_subscribed_s")
        if e["kind"] == "policy_kill":
            after = e["restarted"]
            first_cmd = next((t for t in monitor.commands if t > after), None)
            first_act = next((t for t, acting, _ in statuses if t > after and acting), None)
            row["restart_to_first_command_s"] = None if first_cmd is None else round(first_cmd - after, 2)
            row["restart_to_acting_s"] = None if first_act is None else round(first_act - after, 2)
        if e["kind"] == "camera_outage":
            resumed = next((t for t, acting, _ in statuses if t > e["ended"] and acting), None)
            row["resume_to_acting_s"] = None if resumed is None else round(resumed - e["ended"], 2)
            reasons = Counter(m.split(":")[0] for t, acting, m in statuses
                              if e["began"] <= t <= e["ended"] and not acting)
            row["hold_reasons"] = dict(reasons.most_common(3))
        per_event.append(row)
    outside = [(t, m) for t, acting, m in statuses
               if not acting and not any(a <= t <= b for a, b in outage_windows)]
    memory = {}
    for name, p in procs.items():
        lives = [g for g in (life.growth(warmup) for life in p.lives) if g is not None]
        memory[name] = {"incarnations": len(p.lives), "measured": lives,
                        "max_growth_pct": max((g["growth_pct"] for g in lives), default=None),
                        "ended": [life.how for life in p.lives]}
    restarts = [r for r in per_event if r["kind"] == "policy_kill"]
    return {
        "wall_s": round(wall, 1), "sim_s": round(ended_sim, 1), "events": per_event, "unexpected_exits": unexpected,
        "statuses": len(statuses), "holds": sum(1 for _, acting, _ in statuses if not acting),
        "holds_outside_outages": len(outside),
        "holds_outside_reasons": dict(Counter(m.split(":")[0] for _, m in outside).most_common(5)),
        "commands": len(monitor.commands), "bad_commands": len(monitor.bad_commands),
        "bad_command_examples": monitor.bad_commands[:3],
        "restart_to_first_command_s": [r.get("restart_to_first_command_s") for r in restarts],
        "restart_to_acting_s": [r.get("restart_to_acting_s") for r in restarts],
        "valid": validation.ok, "problems": validation.problems[:5], "validated_episodes": validation.episodes,
        "validated_steps": validation.steps, "accounting": accounting, "memory": memory, "dataset": str(out),
    }


def ok(r: dict) -> bool:
    a = r["accounting"]
    return (r["valid"] and not r["bad_commands"] and not r["unexpected_exits"] and not a["unaccounted"]
            and not a["stray_committed"])


def describe(r: dict) -> str:
    a = r["accounting"]
    lines = [f"{r['wall_s'] / 60:.1f} min wall, {r['sim_s']:.0f} s sim time; {len(r['events'])} events, "
             f"unexpected exits: {r['unexpected_exits'] or 'none'}",
             f"  dataset: {a['committed']} episodes committed ({a['successes']} successes, "
             f"{a['joined_in_progress']} joined_in_progress); validate: "
             f"{'OK' if r['valid'] else r['problems']} ({r['validated_episodes']} episodes, "
             f"{r['validated_steps']} steps)",
             f"  bridge ran {a['bridge_episodes']} episodes: "
             + "; ".join(f"{k.strip()} {v}" for k, v in a["outcomes"].items())
             + f"; unaccounted {len(a['unaccounted'])}; committed but unmatched {len(a['stray_committed'])}",
             f"  commands: {r['commands']}, not finite or out of limits: {r['bad_commands']}; statuses "
             f"{r['statuses']}, holds {r['holds']} (outside outages {r['holds_outside_outages']}: "
             f"{r['holds_outside_reasons']})",
             f"  policy restart -> first command (s): {r['restart_to_first_command_s']}; -> acting (s): "
             f"{r['restart_to_acting_s']}"]
    if a["unaccounted"] or a["stray_committed"]:  # what the accounting worked from, to see why
        lines.append("  episode starts (sim s): " + ", ".join(f"{e['start']:.2f}" for e in a["episodes"]))
        lines.append("  committed parts (first-last sim s): " + ", ".join(
            f"{p['first']:.2f}-{p['last']:.2f}{' joined' if p['joined'] else ''}" for p in a["parts"]))
        lines.append("  recorder down (sim s): " + ", ".join(f"{d:.2f}-{u:.2f}" for d, u in a["recorder_down"]))
    for kind in ("camera_outage", "driver_freeze", "recorder_kill", "instruction_change"):
        rows = [e for e in r["events"] if e["kind"] == kind]
        if rows:
            extra = ""
            if kind == "camera_outage":
                extra = (f", resume -> acting (s) {[e['resume_to_acting_s'] for e in rows]}, "
                         f"reasons {rows[0]['hold_reasons']}")
            if kind == "recorder_kill":
                extra = f", restart -> subscribed again (s) {[e.get('restart_to_subscribed_s') for e in rows]}"
            lines.append(f"  {kind} x{len(rows)}: holds in each window {[e['holds'] for e in rows]}{extra}")
    for name, m in r["memory"].items():
        grow = ", ".join(f"{g['rss_after_warmup_mib']:.0f}->{g['rss_end_mib']:.0f} MiB ({g['growth_pct']:+.1f}%, "
                         f"{g['lived_s'] / 60:.0f} min)" for g in m["measured"])
        lines.append(f"  memory {name}: {m['incarnations']} incarnations; after warm-up -> end: {grow or 'too short'}"
                     + (f"; max growth {m['max_growth_pct']:+.1f}%" if m["max_growth_pct"] is not None else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--cycle", type=float, default=1200.0, help="seconds between repetitions of the schedule")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds after a (re)start before memory counts")
    parser.add_argument("--outage", type=float, default=None, help="camera outage seconds (default 10 staleness "
                                                                   "limits)")
    parser.add_argument("--freeze", type=float, default=3.0, help="bridge SIGSTOP seconds")
    parser.add_argument("--checkpoint", default=None, help="default: policy.checkpoint in config/stacking.yaml")
    parser.add_argument("--out", default=None, help="dataset directory to keep (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--domain-id", type=int, default=94)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    from pac_ros.nodes.common import init_ros

    init_ros()
    with tempfile.TemporaryDirectory(prefix="soak_crashes_") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "ds"
        try:
            result = soak(args.minutes, out, args.cycle, args.warmup, args.outage, args.freeze, args.checkpoint,
                          domain_id=args.domain_id, progress=True)
        finally:
            import rclpy

            rclpy.try_shutdown()
        print(describe(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0 if ok(result) else 1


if __name__ == "__main__":
    sys.exit(main())
