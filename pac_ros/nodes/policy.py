"""policy: the PAC policy as a ROS controller.

A timer at the spec's control rate takes the newest camera image(s), joint state,
instruction (and block poses, for a features-mode model), checks each is present,
well formed and no older than its staleness limit, runs the deployable policy (GPU
if present, else CPU) and publishes the joint command, plus the same command stamped
with the observation's time on ``~/command`` for the recorder. Otherwise it publishes
the hold command (by default the last command, so a gripper keeps its grip) and
says why on /pac/status. Every command is
clamped to joint limits and max step by the Policy; a non-finite one is never sent.

The node subscribes to what its model uses, and only that: the cameras for a pixels model,
/sim/block_poses for a features model (resubscribing when a checkpoint swap changes it).
Camera images come raw or, with ``image_transport: compressed``, as jpeg/png on
``<camera topic>/compressed``; any accepted encoding and size is converted to the spec
camera's by pac_ros/data/images.py (docs/nodes.md), and one that cannot be is rejected.

On a CPU the model runs on ``threads`` threads (default 1, enough for the small presets:
with other processes busy, torch's default of one per core slowed the loop twentyfold).

Changing the ``checkpoint`` parameter (or calling ``~/reload``) loads the new
checkpoint on a worker thread and swaps it in at a tick boundary; a checkpoint that
fails to load leaves the running one in place.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from pac_ros.data.images import camera_image
from pac_ros.nodes import common
from pac_ros.nodes.convert import ConversionError, array_to_command, joint_positions


class PolicyNode(Node):
    def __init__(self, **kwargs):
        super().__init__("policy", **kwargs)
        self.spec = common.load_spec(self)
        p = self.declare_parameter
        period = self.spec.control_period
        self.device = p("device", "auto").value
        # CPU threads for the model (0: torch's default, one per core). With other processes busy,
        # torch's default made the lock-step loop 20x slower: 4.7 vs ~100 ticks/s (bench/soak.py).
        self.threads = int(p("threads", 1).value)
        self.decoding = p("decoding", "auto").value  # auto: the checkpoint's own (meta.json), else greedy
        # bf16 autocast; on a CUDA device with greedy/mean decoding, one CUDA graph replay per tick
        # instead of hundreds of kernel launches (tiny on an H100: 1.1 vs 6.8 ms, bench/README.md)
        self.precision = p("precision", "fp32").value
        self.sampling = {"temperature": float(p("temperature", 1.0).value),  # sample and q_filter decoding
                         "n_candidates": int(p("n_candidates", 16).value)}  # q_filter: greedy + n-1 samples
        self.cuda_graph = bool(p("cuda_graph", True).value)
        self.limits = {
            "image": float(p("staleness.image", 2.5 * period).value),
            "joint_states": float(p("staleness.joint_states", 2.5 * period).value),
            "block_poses": float(p("staleness.block_poses", 2.5 * period).value),
        }
        # hold = keep the last command (a gripper keeps its grip), or go to the measured position
        self.hold_mode = p("hold", "last_command").value
        if self.hold_mode not in ("last_command", "current_position"):
            raise ValueError(f"parameter hold must be 'last_command' or 'current_position', got {self.hold_mode!r}")
        self.last_command: np.ndarray | None = None
        self.plausible = self.spec.plausible_positions()  # a position beyond is a malformed message
        self.policy = None
        self.model_id = ""
        self.loading = threading.Lock()
        self.next_policy = None  # (policy, id) loaded on a worker thread, swapped in at a tick
        self.load_error = ""

        self.latest: dict[str, tuple[float, object]] = {}  # input -> (stamp, value) of its last good message
        self.malformed: dict[str, str] = {}  # input -> why its newest message was rejected
        self.arrived: dict[str, float] = {}  # input -> wall time its last good message arrived
        self.instruction = ""
        self.last_answered: float | None = None
        self.ticks = self.holds = self.skipped = 0

        self.command_pub = self.create_publisher(Float64MultiArray, p("command_topic", common.COMMANDS).value,
                                                 common.RELIABLE_QOS)
        self.stamped_pub = self.create_publisher(JointState, common.STAMPED_COMMAND, common.RELIABLE_QOS)
        self.status_pub = self.create_publisher(DiagnosticStatus, p("status_topic", common.STATUS).value, 10)
        self.camera_topics = common.camera_topics(self, self.spec)
        self.image_transport = common.image_transport(self)
        self.block_poses_topic = p("block_poses_topic", common.BLOCK_POSES).value
        self.input_subs: dict[str, object] = {}  # model input -> its subscription (_subscribe_model_inputs)
        common.subscribe_robot_inputs(self, self._on_joints, None, self._on_instruction)
        self.create_service(Trigger, "~/reload", self._srv_reload)

        checkpoint = p("checkpoint", "").value
        if not checkpoint:
            raise ValueError("parameter 'checkpoint' is required (a checkpoint or training run directory)")
        if self.threads > 0:
            import torch

            from pac_ros.policy import pick_device

            if pick_device(self.device).type == "cpu":
                torch.set_num_threads(self.threads)  # process-wide; before the warm-up in _load
        self.policy, self.model_id = self._load(checkpoint)  # a bad checkpoint at start-up is fatal
        self._subscribe_model_inputs()
        self.add_on_set_parameters_callback(self._on_params)
        self.timer = self.create_timer(period, self._tick)
        cfg = self.policy.model.config
        self.get_logger().info(f"PAC policy {self.model_id} ({cfg.obs_mode}, {self.policy.decoding} decoding) on "
                               f"{self.policy.device}, {self.spec.control_rate_hz:g} Hz")

    # ---- checkpoints --------------------------------------------------------------
    def _load(self, checkpoint: str):
        from pac_ros.checkpoint import read_meta
        from pac_ros.paths import existing_or_shared
        from pac_ros.policy import GRAPH_DECODING, Policy, pick_device, resolve_decoding

        path = existing_or_shared(checkpoint)
        decoding = resolve_decoding(self.decoding, read_meta(path))
        graph = self.cuda_graph and pick_device(self.device).type == "cuda" and decoding in GRAPH_DECODING
        policy = Policy.load(path, spec=self.spec, device=self.device,
                             decoding=decoding, precision=self.precision, cuda_graph=graph, **self.sampling)
        meta = policy.meta
        model_id = f"{Path(checkpoint).resolve().name}@{meta.get('step', '?')}:{meta.get('preset', '?')}"
        policy.act(self._dummy_observation(policy))  # warm up (allocations, kernels)
        return policy, model_id

    def _dummy_observation(self, policy) -> dict:
        spec = self.spec
        return {"images": {c.name: np.zeros(c.shape, np.uint8) for c in spec.cameras},
                "joint_positions": 0.5 * (spec.lower + spec.upper), "instruction": spec.instructions()[0],
                "features": np.zeros(spec.feature_dim)}

    def _load_in_background(self, checkpoint: str) -> None:
        def work():
            with self.loading:
                try:
                    self.next_policy = self._load(checkpoint)
                    self.load_error = ""
                except Exception as exc:  # keep acting with the current checkpoint
                    self.load_error = f"{checkpoint}: {exc}"
                    self.get_logger().error(f"checkpoint not loaded, keeping {self.model_id}: {exc}")

        threading.Thread(target=work, name="checkpoint-loader", daemon=True).start()

    def _on_params(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "checkpoint":
                if not param.value:
                    return SetParametersResult(successful=False, reason="checkpoint must not be empty")
                self._load_in_background(param.value)
        return SetParametersResult(successful=True)

    def _srv_reload(self, request, response):
        self._load_in_background(self.get_parameter("checkpoint").value)
        response.success, response.message = True, "loading in the background; see /pac/status"
        return response

    # ---- inputs -------------------------------------------------------------------
    def _keep(self, name: str, stamp, value) -> None:
        self.latest[name] = (common.to_sec(stamp), value)
        self.arrived[name] = time.perf_counter()
        self.malformed.pop(name, None)

    def _invalid(self, name: str, why: str) -> None:
        """A malformed message makes its input unusable until the next good one."""
        self.malformed[name] = why
        self.get_logger().warning(f"{name} rejected: {why}", throttle_duration_sec=1.0)

    def _subscribe_model_inputs(self) -> None:
        """Subscribe to the cameras and block poses the acting model uses; drop the others."""
        cfg = self.policy.model.config
        wanted = [f"image:{c}" for c in self.spec.camera_names] if cfg.uses_images else []
        wanted += ["block_poses"] if cfg.uses_features else []
        for name in [n for n in self.input_subs if n not in wanted]:
            self.destroy_subscription(self.input_subs.pop(name))
            for kept in (self.latest, self.malformed, self.arrived):
                kept.pop(name, None)
        for name in wanted:
            if name in self.input_subs:
                continue
            if name == "block_poses":
                sub = self.create_subscription(PoseArray, self.block_poses_topic, self._on_poses, common.SENSOR_QOS)
            else:
                cam = name.split(":", 1)[1]
                sub = common.subscribe_camera(self, self.camera_topics[cam], self.image_transport,
                                              lambda m, c=cam: self._on_image(c, m))
            self.input_subs[name] = sub

    def _on_image(self, camera: str, msg) -> None:
        """An Image or CompressedImage, converted to the spec camera's encoding and size."""
        cam = self.spec.cameras[self.spec.camera_names.index(camera)]
        try:
            image = camera_image(msg, cam)
        except ConversionError as exc:
            self._invalid(f"image:{camera}", str(exc))
            return
        self._keep(f"image:{camera}", msg.header.stamp, image)

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = joint_positions(msg, self.spec.joint_names, finite=True, bounds=self.plausible,
                                bounds_name=self.spec.PLAUSIBLE_RANGE)
        except ConversionError as exc:
            self._invalid("joint_states", str(exc))
            return
        self._keep("joint_states", msg.header.stamp, q)

    def _on_poses(self, msg: PoseArray) -> None:
        try:
            poses = common.block_poses_array(msg, len(self.spec.blocks))  # finite, or ConversionError
        except ValueError as exc:
            self._invalid("block_poses", str(exc))
            return
        self._keep("block_poses", msg.header.stamp, poses)

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data.strip()

    # ---- control loop -------------------------------------------------------------
    def _needed(self) -> list[tuple[str, str]]:
        cfg = self.policy.model.config
        needed = [("joint_states", "joint_states")]
        if cfg.uses_images:
            needed += [(f"image:{c}", "image") for c in self.spec.camera_names]
        if cfg.uses_features:
            needed.append(("block_poses", "block_poses"))
        return needed

    def check_inputs(self, now: float) -> str:
        """'' when every input the model needs is present, well formed and fresh (stamped within its
        staleness limit of the clock, either way), else why not."""
        if not self.instruction:
            return "no instruction received"
        try:
            self.spec.parse_instruction(self.instruction)
        except ValueError as exc:
            return str(exc)
        for name, kind in self._needed():
            if name in self.malformed:
                return f"{name}: malformed: {self.malformed[name]}"
            if name not in self.latest:
                return f"{name}: nothing received"
            age, limit = now - self.latest[name][0], self.limits[kind]
            if age > limit:
                return f"{name}: stale ({age * 1000:.0f} ms old, limit {limit * 1000:.0f} ms)"
            if age < -limit:  # another clock, or ours jumped back: it would never go stale
                return f"{name}: stamped {-age * 1000:.0f} ms ahead of the clock (limit {limit * 1000:.0f} ms)"
        return ""

    def _tick(self) -> None:
        if self.next_policy is not None:
            (self.policy, self.model_id), self.next_policy = self.next_policy, None
            self._subscribe_model_inputs()
            self.get_logger().info(f"now acting with {self.model_id}")
        start = time.perf_counter()
        now = common.now_sec(self)
        self.ticks += 1
        joints = self.latest.get("joint_states")
        reason = self.check_inputs(now)
        value = float("nan")
        if joints is not None and not reason and joints[0] == self.last_answered:
            self.skipped += 1
            return  # this observation was already answered (e.g. a paused clock)
        if reason:
            if joints is None:
                self._status("hold", reason, value, start, None)
                return  # no position known: nothing safe to command
            stamp, q = joints
            keep = self.last_command if self.hold_mode == "last_command" and self.last_command is not None else q
            command = self.spec.safe_command(keep, q)
            self.holds += 1
        else:
            stamp, q = joints
            obs = {"joint_positions": q, "instruction": self.instruction,
                   "images": {c: self.latest[f"image:{c}"][1] for c in self.spec.camera_names
                              if f"image:{c}" in self.latest},
                   "features": self.latest["block_poses"][1] if "block_poses" in self.latest else None}
            command, info = self.policy.act(obs)
            value = info["value"]
            if info.get("fallback"):
                reason = "model output not finite: holding"
            self.last_answered = stamp
        command = self.spec.safe_command(command, q)  # last guard: finite, within limits and max step
        self.last_command = command
        self.command_pub.publish(array_to_command(command))
        stamped = JointState(name=self.spec.joint_names, position=[float(v) for v in command])
        stamped.header.stamp = common.to_stamp(stamp)
        self.stamped_pub.publish(stamped)
        newest_input = max(self.arrived.get(name, start) for name, _ in self._needed())
        self._status("hold" if reason else "ok", reason, value, start, stamp,
                     input_to_command=time.perf_counter() - newest_input)

    def _status(self, mode: str, reason: str, value: float, start: float, stamp: float | None,
                input_to_command: float | None = None) -> None:
        """/pac/status: latency_ms = the tick's own time; input_to_command_ms = from the
        arrival of the newest input the model used to the command's publication."""
        level = DiagnosticStatus.OK if mode == "ok" else DiagnosticStatus.WARN
        if reason and mode == "hold":
            self.get_logger().warning(f"holding: {reason}", throttle_duration_sec=2.0)
        pairs = {"mode": mode, "reason": reason, "value": f"{value:.4f}",
                 "latency_ms": f"{(time.perf_counter() - start) * 1000:.3f}",
                 "input_to_command_ms": "" if input_to_command is None else f"{input_to_command * 1000:.3f}",
                 "observation_stamp": "" if stamp is None else f"{stamp:.6f}",
                 "ticks": str(self.ticks), "holds": str(self.holds), "load_error": self.load_error}
        self.status_pub.publish(DiagnosticStatus(
            level=level, name="pac_policy", message=reason or "acting", hardware_id=self.model_id,
            values=[KeyValue(key=k, value=v) for k, v in pairs.items()]))


def main(args=None) -> None:
    common.run_node(PolicyNode, args)
