"""policy: the PAC policy as a managed (lifecycle) ROS controller.

Lifecycle (docs/nodes.md): ``configure`` reads the parameters, loads the checkpoint and warms
it up (one dummy forward), creates the subscriptions and publishers; a bad checkpoint, a spec
mismatch or a joint map that does not fit fails it with the reason logged and on /diagnostics,
and the node stays unconfigured. ``activate`` starts commanding; ``deactivate`` sends one hold
command (the arm at its measured position, the gripper at its last target) and stops;
``cleanup`` and ``shutdown`` release everything. With ``autostart: true`` the node configures
and activates itself at start-up (the sim graph); otherwise ``ros2 lifecycle set /policy ...``.

While active, a timer at the spec's control rate takes the newest camera image(s), joint
state, instruction (and block poses, for a features-mode model), checks each is present, well
formed and no older than its staleness limit, runs the deployable policy and sends the joint
command to the arm controller (``command_interface``, outputs.py), plus the same command in
spec names stamped with the observation's time on ``~/command`` for the recorder. Otherwise it
sends the hold command (``hold``) and says why. Every command is clamped to joint limits and max
step in spec space, then renamed and ordered for the robot (``joint_name_map``,
``controller_joints``); a non-finite one is never sent. It never commands before it is active
and has an instruction published after its activation (``accept_latched_instruction`` also takes
one published before). Inactive, it sends nothing: a ros2_control controller keeps its last target.

Status: the same DiagnosticStatus on /diagnostics (in a DiagnosticArray) and on /pac/status
(the recorder takes the acting model's id from it).

The node subscribes to what its model uses, and only that: the cameras for a pixels model,
/sim/block_poses for a features model (resubscribing when a checkpoint swap changes it).
Camera images come raw or, with ``image_transport: compressed``, as jpeg/png on
``<camera topic>/compressed``; pac_ros/data/images.py converts them to the spec camera's.

Changing the ``checkpoint`` parameter (or calling ``~/reload``) while configured loads the new
checkpoint on a worker thread and swaps it in at a tick boundary; one that fails to load
leaves the running one in place.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from pac_ros.data.images import camera_image
from pac_ros.errors import PacRosError
from pac_ros.joint_map import JointMap
from pac_ros.nodes import common
from pac_ros.nodes.convert import ConversionError, joint_positions
from pac_ros.nodes.outputs import CommandOutput
from pac_ros.nodes.policy_params import CHOICES, check_choice, declare_parameters

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class TransitionError(PacRosError, RuntimeError):
    """A lifecycle transition the node refused, with the reason."""


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("policy", **kwargs)
        self.spec = common.load_spec(self)
        self.configure_time = declare_parameters(self)
        self.status_pub = self.create_publisher(DiagnosticStatus, self.get_parameter("status_topic").value, 10)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, common.DIAGNOSTICS, 10)
        self.create_service(Trigger, "~/reload", self._srv_reload)
        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self.plausible = self.spec.plausible_positions()  # a position beyond is a malformed message
        self.loading = threading.Lock()
        self.generation = 0  # bumped on release: a load started before it is dropped
        self.start_error: Exception | None = None  # why autostart did not reach active
        self._reset_state()
        if self.get_parameter("autostart").value:
            self._autostart()

    def _reset_state(self) -> None:
        """What configure builds and cleanup releases."""
        self.policy = None
        self.model_id = ""
        self.next_policy = None  # (policy, id) loaded on a worker thread, swapped in at a tick
        self.load_error = ""
        self.output: CommandOutput | None = None
        self.joints: JointMap | None = None
        self.stamped_pub = None
        self.timer = None
        self.subs: list = []
        self.input_subs: dict[str, object] = {}  # model input -> its subscription (_subscribe_model_inputs)
        self.latest: dict[str, tuple[float, object]] = {}  # input -> (stamp, value) of its last good message
        self.malformed: dict[str, str] = {}  # input -> why its newest message was rejected
        self.arrived: dict[str, float] = {}  # input -> wall time its last good message arrived
        self.instruction, self.instruction_ns = "", 0  # text, when published (ns, system clock)
        self.activated_ns: int | None = None  # when this activation began; None when not active
        self.last_command: np.ndarray | None = None
        self.last_answered: float | None = None
        self.ticks = self.holds = self.skipped = 0

    def _autostart(self) -> None:
        if self.trigger_configure() != SUCCESS:
            return  # start_error says why
        if self.trigger_activate() != SUCCESS and self.start_error is None:
            self.start_error = TransitionError("policy: activate failed (see the log)")

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # a bad checkpoint, spec or parameter: stay unconfigured, say why
            self._release()
            self.start_error = exc
            reason = f"configure failed: {exc}"
            self.get_logger().error(reason)
            self._status("unconfigured", reason, level=DiagnosticStatus.ERROR)
            return FAILURE
        self.start_error = None
        self.get_logger().info(f"configured: PAC policy {self.model_id} ({self.policy.model.config.obs_mode}, "
                               f"{self.policy.decoding} decoding) on {self.policy.device}, "
                               f"{self.spec.control_rate_hz:g} Hz, {self.output.describe()}")
        return super().on_configure(state)

    def _configure(self) -> None:
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        for name in CHOICES:
            check_choice(name, get(name))
        checkpoint = get("checkpoint")
        if not checkpoint:
            raise ValueError("parameter 'checkpoint' is required (a checkpoint or training run directory)")
        gripper_topic = get("gripper_command_topic")
        unset = Parameter("unset", value=[])
        self.joints = JointMap(self.spec.joint_names, self.get_parameter_or("joint_name_map", unset).value,
                               self.get_parameter_or("controller_joints", unset).value,
                               separate_gripper=bool(gripper_topic))
        self.policy, self.model_id = self._load(checkpoint)
        self.output = CommandOutput(self, get("command_interface"), get("command_topic"), gripper_topic,
                                    self.joints, self.spec.control_period)
        self.stamped_pub = self.create_lifecycle_publisher(JointState, common.STAMPED_COMMAND, common.RELIABLE_QOS)
        self.camera_topics = {c: get(f"camera_topics.{c}") for c in self.spec.camera_names}
        self.image_transport = get("image_transport")
        self.subs.append(self.create_subscription(JointState, get("joint_states_topic"), self._on_joints,
                                                  common.SENSOR_QOS))
        self.subs.append(self.create_subscription(String, get("instruction_topic"), self._on_instruction,
                                                  common.LATCHED_QOS))
        self._subscribe_model_inputs()
        self.timer = self.create_timer(self.spec.control_period, self._tick)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.policy is None:  # cannot happen through the state machine; never act without a model
            self.get_logger().error("activate refused: no model loaded (configure first)")
            return FAILURE
        self.activated_ns = time.time_ns()
        self.last_command = self.last_answered = None
        latched = self.get_parameter("accept_latched_instruction").value
        self.get_logger().info("active: acts on " + ("the latest instruction, even one published before"
                                                     if latched else "an instruction published from now on"))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._send_stop_hold("deactivated")
        self.activated_ns = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._status("unconfigured", "cleaned up")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self._send_stop_hold("shut down")
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS  # back to unconfigured

    def _release(self) -> None:
        """Drop the model, publishers, subscriptions and timer (cleanup, shutdown, a failed configure)."""
        with self.loading:
            self.generation += 1
        if self.timer is not None:
            self.destroy_timer(self.timer)
        for sub in self.subs + list(self.input_subs.values()):
            self.destroy_subscription(sub)
        if self.output is not None:
            self.output.destroy()
        if self.stamped_pub is not None:
            self.destroy_lifecycle_publisher(self.stamped_pub)
        device = getattr(self.policy, "device", None)
        self._reset_state()
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def destroy_node(self):
        # after Ctrl-C the context is gone: no transition can be published, nor a hold sent
        if self.context.ok() and self.lifecycle_state in ("active", "inactive", "unconfigured"):
            try:
                self.trigger_shutdown()  # an active node sends its hold first
            except Exception as exc:
                self.get_logger().debug(f"shutdown transition on destroy: {exc}")
        return super().destroy_node()

    # ---- parameters ---------------------------------------------------------------
    def _validate_params(self, params) -> SetParametersResult:
        """Only checks (rclpy has checked types, ranges and read_only); _apply_params acts."""
        for param in params:
            if param.name in self.configure_time and self.lifecycle_state != "unconfigured":
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} takes effect at configure; the node is {self.lifecycle_state}: deactivate and "
                    "cleanup first (`ros2 lifecycle set /policy cleanup`)"))
            try:
                check_choice(param.name, param.value)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            if param.name == "checkpoint" and not param.value:
                return SetParametersResult(successful=False, reason="checkpoint must not be empty")
        return SetParametersResult(successful=True)

    def _apply_params(self, params) -> None:
        for param in params:
            if param.name == "checkpoint" and self.policy is not None:
                self._load_in_background(param.value)

    # ---- checkpoints --------------------------------------------------------------
    def _load(self, checkpoint: str):
        import torch

        from pac_ros.checkpoint import read_meta
        from pac_ros.paths import existing_or_shared
        from pac_ros.policy import GRAPH_DECODING, Policy, pick_device, resolve_decoding

        get = lambda name: self.get_parameter(name).value  # noqa: E731
        device, threads = get("device"), int(get("threads"))
        if threads > 0 and pick_device(device).type == "cpu":
            torch.set_num_threads(threads)  # process-wide; before the warm-up
        path = existing_or_shared(checkpoint)
        decoding = resolve_decoding(get("decoding"), read_meta(path))
        graph = get("cuda_graph") and pick_device(device).type == "cuda" and decoding in GRAPH_DECODING
        policy = Policy.load(path, spec=self.spec, device=device, decoding=decoding, precision=get("precision"),
                             cuda_graph=graph, temperature=get("temperature"), n_candidates=get("n_candidates"))
        meta = policy.meta
        model_id = f"{Path(checkpoint).resolve().name}@{meta.get('step', '?')}:{meta.get('preset', '?')}"
        policy.act(self._dummy_observation())  # warm up (allocations, kernels)
        policy.reset()
        return policy, model_id

    def _dummy_observation(self) -> dict:
        spec = self.spec
        return {"images": {c.name: np.zeros(c.shape, np.uint8) for c in spec.cameras},
                "joint_positions": 0.5 * (spec.lower + spec.upper), "instruction": spec.instructions()[0],
                "features": np.zeros(spec.feature_dim)}

    def _load_in_background(self, checkpoint: str) -> None:
        generation = self.generation

        def work():
            with self.loading:
                if generation != self.generation:
                    return  # cleaned up meanwhile
                try:
                    loaded = self._load(checkpoint)
                    if generation == self.generation:
                        self.next_policy, self.load_error = loaded, ""
                except Exception as exc:  # keep acting with the current checkpoint
                    self.load_error = f"{checkpoint}: {exc}"
                    self.get_logger().error(f"checkpoint not loaded, keeping {self.model_id}: {exc}")

        threading.Thread(target=work, name="checkpoint-loader", daemon=True).start()

    def _srv_reload(self, request, response):
        if self.policy is None:
            response.success, response.message = False, f"not configured (the node is {self.lifecycle_state})"
            return response
        self._load_in_background(self.get_parameter("checkpoint").value)
        response.success, response.message = True, "loading in the background; see /diagnostics"
        return response

    # ---- inputs -------------------------------------------------------------------
    def _keep(self, name: str, stamp, value) -> None:
        self.latest[name] = (common.stamp_seconds(stamp), value)
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
                sub = self.create_subscription(PoseArray, self.get_parameter("block_poses_topic").value,
                                               self._on_poses, common.SENSOR_QOS)
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
        """The spec's joints, found under their robot names (joint_name_map), in spec order."""
        try:
            q = joint_positions(msg, self.joints.robot_names, finite=True, bounds=self.plausible,
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

    def _on_instruction(self, msg: String, info: dict) -> None:
        self.instruction = msg.data.strip()
        self.instruction_ns = info.get("source_timestamp") or time.time_ns()
        if self.policy is not None:  # a new task: the blocks' last seen poses may be stale
            self.policy.reset()

    def instruction_since_activation(self) -> bool:
        """An instruction to act on: published after this activation, or any with accept_latched_instruction."""
        if self.activated_ns is None or not self.instruction:
            return False
        return self.instruction_ns >= self.activated_ns or self.get_parameter("accept_latched_instruction").value

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
        try:
            self.spec.parse_instruction(self.instruction)
        except ValueError as exc:
            return str(exc)
        for name, kind in self._needed():
            if name in self.malformed:
                return f"{name}: malformed: {self.malformed[name]}"
            if name not in self.latest:
                return f"{name}: nothing received"
            age, limit = now - self.latest[name][0], self.get_parameter(f"staleness.{kind}").value
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
        self.ticks += 1
        if self.activated_ns is None:
            self._status("inactive", "inactive: sends nothing until activated", start=start)
            return
        if not self.instruction_since_activation():
            self._status("waiting", "no instruction since activation: sends nothing", start=start)
            return
        joints = self.latest.get("joint_states")
        reason = self.check_inputs(common.now_sec(self))
        value = float("nan")
        if joints is not None and not reason and joints[0] == self.last_answered:
            self.skipped += 1
            return  # this observation was already answered (e.g. a paused clock)
        if reason:
            if joints is None:
                self._status("hold", reason, start=start)
                return  # no position known: nothing safe to command
            stamp, q = joints
            keep = self.last_command if self.hold_mode == "last_command" and self.last_command is not None else q
            command = keep
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
        self._send(self.spec.safe_command(command, q), stamp)  # last guard: finite, within limits and max step
        newest_input = max(self.arrived.get(name, start) for name, _ in self._needed())
        self._status("hold" if reason else "ok", reason, value, start, stamp,
                     input_to_command=time.perf_counter() - newest_input)

    @property
    def hold_mode(self) -> str:
        return self.get_parameter("hold").value

    def _send(self, command: np.ndarray, stamp: float) -> None:
        """A safe spec-order command to the controller(s), and in spec names on ~/command."""
        self.last_command = command
        self.output.publish(command)
        stamped = JointState(name=self.spec.joint_names, position=[float(v) for v in command])
        stamped.header.stamp = common.to_stamp(stamp)
        self.stamped_pub.publish(stamped)

    def _send_stop_hold(self, why: str) -> None:
        """On leaving active: the arm at its measured position, the gripper at its last target (keeps a
        grip). Without a fresh joint state nothing is sent: the controller keeps the last command."""
        joints = self.latest.get("joint_states")
        limit = self.get_parameter("staleness.joint_states").value
        if joints is None or abs(common.now_sec(self) - joints[0]) > limit:
            self.get_logger().warning(f"{why}: no fresh joint state, so no hold command; the controller keeps "
                                      "the last command")
            return
        stamp, q = joints
        hold = q.copy()
        if self.last_command is not None:
            hold[-1] = self.last_command[-1]
        self._send(self.spec.safe_command(hold, q), stamp)
        self.get_logger().info(f"{why}: sent the hold command")

    def _status(self, mode: str, reason: str, value: float = float("nan"), start: float | None = None,
                stamp: float | None = None, input_to_command: float | None = None,
                level: bytes | None = None) -> None:
        """/diagnostics and /pac/status: latency_ms = the tick's own time; input_to_command_ms = from the
        arrival of the newest input the model used to the command's publication."""
        if level is None:
            level = DiagnosticStatus.WARN if mode in ("hold", "waiting") else DiagnosticStatus.OK
        if reason and mode == "hold":
            self.get_logger().warning(f"holding: {reason}", throttle_duration_sec=2.0)
        pairs = {"mode": mode, "reason": reason, "value": f"{value:.4f}",
                 "latency_ms": "" if start is None else f"{(time.perf_counter() - start) * 1000:.3f}",
                 "input_to_command_ms": "" if input_to_command is None else f"{input_to_command * 1000:.3f}",
                 "observation_stamp": "" if stamp is None else f"{stamp:.6f}",
                 "ticks": str(self.ticks), "holds": str(self.holds), "load_error": self.load_error}
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pac_policy", message=reason or "acting",
                                  hardware_id=self.model_id,
                                  values=[KeyValue(key=k, value=v) for k, v in pairs.items()])
        self.status_pub.publish(status)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main(args=None) -> None:
    common.run_node(PolicyNode, args)
