"""MuJoCo block-stacking environment (no ROS).

The action is the joint command itself: absolute position targets for the arm joints
and the gripper opening, in ``spec.joint_names`` order. Every command goes through
``spec.safe_command`` before it reaches the actuators and is held for
``physics_rate_hz / control_rate_hz`` physics steps.
"""
from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from pac_ros.kinematics import GripKinematics, default_model_path, lookup  # sets MUJOCO_GL=egl unless given
from pac_ros.spec import Spec, default_spec

BLOCK_HALF = 0.02  # cube half size, m (models/stacking.xml)
BLOCK_SIZE = 2 * BLOCK_HALF
# Arm at rest: gripper 25 cm above the table at x = 0.35, pointing down.
HOME_ARM = np.array([0.0, 0.1008, 1.9543, 1.0865, 0.0, 0.0])
# Blocks are dropped in this table region (x, y bounds, m), at least MIN_SEPARATION apart.
BLOCK_REGION = ((0.30, 0.55), (-0.20, 0.20))
MIN_SEPARATION = 0.10
# Success tolerances
XY_TOLERANCE = BLOCK_HALF  # top centre within half a block width of the bottom centre
Z_TOLERANCE = 0.008  # top's bottom face within this of the bottom's top face
MAX_LIN_SPEED = 0.05  # m/s
MAX_ANG_SPEED = 0.5  # rad/s

GRIPPER_GEOMS = ("finger_left", "finger_right", "palm")
FINGER_GEOMS = ("finger_left", "finger_right")


class StackingEnv:
    """Put the named top block on the named bottom block."""

    def __init__(
        self,
        spec: Spec | None = None,
        render: bool = True,
        reward: str = "sparse",
        model_path: str | Path | None = None,
    ):
        if reward not in ("sparse", "shaped"):
            raise ValueError(f"reward must be 'sparse' or 'shaped', got {reward!r}")
        self.spec = spec if spec is not None else default_spec()
        self.render = bool(render)
        self.reward_mode = reward
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.model = mujoco.MjModel.from_xml_path(str(self.model_path))
        self.model.opt.timestep = 1.0 / self.spec.physics_rate_hz
        self.data = mujoco.MjData(self.model)
        self.n_substeps = int(round(self.spec.physics_rate_hz / self.spec.control_rate_hz))
        self._bind_names()
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self.target_pair: tuple[str, str] = (self.spec.blocks[0], self.spec.blocks[1])
        self.instruction = self.spec.instruction(*self.target_pair)
        self.step_count = 0
        self.seed: int | None = None
        self.reset(0)

    # ---- setup ---------------------------------------------------------------------
    def _bind_names(self) -> None:
        m, spec = self.model, self.spec
        where = str(self.model_path)

        def find(kind, name):
            return lookup(m, kind, name, where, spec)

        self.kinematics = GripKinematics(m, spec, where)  # arm joints and grip site
        self._arm_qadr, self.grip_site = self.kinematics.arm_qadr, self.kinematics.grip_site
        fingers = [find(mujoco.mjtObj.mjOBJ_JOINT, n) for n in ("finger_left", "finger_right")]
        self._finger_qadr = np.array([m.jnt_qposadr[j] for j in fingers])
        self._act = np.array([find(mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in spec.joint_names])
        self._block_body = {b: find(mujoco.mjtObj.mjOBJ_BODY, b) for b in spec.blocks}
        self._block_geom = {b: find(mujoco.mjtObj.mjOBJ_GEOM, b) for b in spec.blocks}
        self._block_qadr = {b: m.jnt_qposadr[m.body_jntadr[i]] for b, i in self._block_body.items()}
        self._block_dofadr = {b: m.jnt_dofadr[m.body_jntadr[i]] for b, i in self._block_body.items()}
        self._gripper_geoms = {find(mujoco.mjtObj.mjOBJ_GEOM, g) for g in GRIPPER_GEOMS}
        self._finger_geoms = [find(mujoco.mjtObj.mjOBJ_GEOM, g) for g in FINGER_GEOMS]
        for cam in spec.cameras:
            find(mujoco.mjtObj.mjOBJ_CAMERA, cam.name)

    # ---- episode -------------------------------------------------------------------
    def reset(self, seed: int, instruction: str | None = None) -> dict:
        """Random non-overlapping block layout and (unless given) a random instruction."""
        spec = self.spec
        if instruction is not None:
            top, bottom = spec.parse_instruction(instruction)
        seed = int(seed)
        layout_rng = np.random.default_rng([seed, 0])
        task_rng = np.random.default_rng([seed, 1])
        if instruction is None:
            pairs = [(t, b) for t in spec.blocks for b in spec.blocks if t != b]
            top, bottom = pairs[int(task_rng.integers(len(pairs)))]
        self.seed = seed
        self.target_pair = (top, bottom)
        self.instruction = spec.instruction(top, bottom)

        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        home = np.concatenate([HOME_ARM, [spec.gripper.upper]])
        home = np.clip(home, spec.lower, spec.upper)
        d.qpos[self._arm_qadr] = home[:-1]
        d.qpos[self._finger_qadr] = home[-1]
        d.ctrl[self._act] = home
        for name, (xy, yaw) in zip(spec.blocks, self._sample_layout(layout_rng)):
            self.set_block_pose(name, [xy[0], xy[1], BLOCK_HALF], _yaw_quat(yaw), forward=False)
        mujoco.mj_forward(m, d)
        for _ in range(10):  # let contacts settle
            mujoco.mj_step(m, d)
        self.step_count = 0
        return self.observation()

    def retarget(self, instruction: str) -> None:
        """Change the task within the episode (an operator's new instruction): the blocks stay
        where they are; reward and success follow the new pair from the next step on."""
        top, bottom = self.spec.parse_instruction(instruction)
        self.target_pair = (top, bottom)
        self.instruction = self.spec.instruction(top, bottom)

    def _sample_layout(self, rng: np.random.Generator) -> list:
        (x0, x1), (y0, y1) = BLOCK_REGION
        placed: list[np.ndarray] = []
        while len(placed) < len(self.spec.blocks):
            xy = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
            if all(np.linalg.norm(xy - p) >= MIN_SEPARATION for p in placed):
                placed.append(xy)
        return [(xy, rng.uniform(-np.pi / 4, np.pi / 4)) for xy in placed]

    def step(self, command) -> tuple[dict, float, bool, bool, dict]:
        safe = self.spec.safe_command(command, self.joint_positions())
        self.data.ctrl[self._act] = safe
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
        self.step_count += 1
        success = self.is_success()
        reward = float(success)
        if self.reward_mode == "shaped":
            reward += self.shaped_reward()
        terminated = bool(success and self.spec.terminate_on_success)
        truncated = self.step_count >= self.spec.max_episode_steps
        info = {"success": success, "step": self.step_count, "command": safe}
        return self.observation(), reward, terminated, truncated, info

    # ---- state ---------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        """Arm joint angles then the gripper opening (mean of the two fingers)."""
        q = self.data.qpos
        return np.concatenate([q[self._arm_qadr], [q[self._finger_qadr].mean()]]).astype(np.float64)

    def set_joint_positions(self, positions) -> None:
        """Teleport the arm and gripper (targets follow); for constructing test states."""
        positions = np.asarray(positions, dtype=np.float64)
        self.data.qpos[self._arm_qadr] = positions[:-1]
        self.data.qpos[self._finger_qadr] = positions[-1]
        self.data.qvel[:] = 0.0
        self.data.ctrl[self._act] = positions
        mujoco.mj_forward(self.model, self.data)

    def block_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(position, quaternion wxyz) of a block."""
        a = self._block_qadr[name]
        return self.data.qpos[a : a + 3].copy(), self.data.qpos[a + 3 : a + 7].copy()

    def block_velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        a = self._block_dofadr[name]
        return self.data.qvel[a : a + 3].copy(), self.data.qvel[a + 3 : a + 6].copy()

    def set_block_pose(self, name: str, pos, quat=None, forward: bool = True) -> None:
        """Place a block (at rest) at ``pos`` with orientation ``quat`` (wxyz; upright if None)."""
        if name not in self._block_qadr:
            raise KeyError(f"unknown block {name!r}; blocks are {list(self.spec.blocks)}")
        quat = np.array([1.0, 0.0, 0.0, 0.0]) if quat is None else np.asarray(quat, dtype=np.float64)
        a, v = self._block_qadr[name], self._block_dofadr[name]
        self.data.qpos[a : a + 3] = pos
        self.data.qpos[a + 3 : a + 7] = quat / np.linalg.norm(quat)
        self.data.qvel[v : v + 6] = 0.0
        if forward:
            mujoco.mj_forward(self.model, self.data)

    def features(self) -> np.ndarray:
        return np.concatenate([np.concatenate(self.block_pose(b)) for b in self.spec.blocks])

    def grip_position(self) -> np.ndarray:
        return self.data.site_xpos[self.grip_site].copy()

    def _touching(self, geom: int, others) -> bool:
        d = self.data
        for i in range(d.ncon):
            g1, g2 = d.contact.geom1[i], d.contact.geom2[i]
            if (g1 == geom and g2 in others) or (g2 == geom and g1 in others):
                return True
        return False

    def gripper_touching(self, name: str) -> bool:
        """Whether a block touches the fingers or palm."""
        return self._touching(self._block_geom[name], self._gripper_geoms)

    def is_grasped(self, name: str) -> bool:
        """Both fingers touch the block."""
        g = self._block_geom[name]
        return all(self._touching(g, {f}) for f in self._finger_geoms)

    def is_stacked(self, top: str, bottom: str) -> bool:
        """``top`` rests, at rest and released, on ``bottom`` (both free of the gripper)."""
        p_top, _ = self.block_pose(top)
        p_bot, _ = self.block_pose(bottom)
        if np.linalg.norm(p_top[:2] - p_bot[:2]) > XY_TOLERANCE:
            return False
        if abs((p_top[2] - p_bot[2]) - BLOCK_SIZE) > Z_TOLERANCE:
            return False
        lin, ang = self.block_velocity(top)
        if np.linalg.norm(lin) > MAX_LIN_SPEED or np.linalg.norm(ang) > MAX_ANG_SPEED:
            return False
        return not (self.gripper_touching(top) or self.gripper_touching(bottom))

    def is_success(self) -> bool:
        return self.is_stacked(*self.target_pair)

    def shaped_reward(self) -> float:
        """Dense progress term in [0, 0.95]: reach, grasp, lift, place."""
        top, bottom = self.target_pair
        p_top, _ = self.block_pose(top)
        p_bot, _ = self.block_pose(bottom)
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(self.grip_position() - p_top))
        grasped = float(self.is_grasped(top))
        lift = grasped * float(np.clip((p_top[2] - BLOCK_HALF) / 0.08, 0.0, 1.0))
        goal = p_bot + np.array([0.0, 0.0, BLOCK_SIZE])
        place = 1.0 - np.tanh(10.0 * np.linalg.norm(p_top - goal))
        return float(0.95 * (0.2 * reach + 0.2 * grasped + 0.2 * lift + 0.4 * place))

    # ---- observation and rendering -------------------------------------------------
    def observation(self) -> dict:
        images = {}
        if self.render:
            images = {cam.name: self.render_camera(cam.name) for cam in self.spec.cameras}
        return {
            "images": images,
            "joint_positions": self.joint_positions(),
            "instruction": self.instruction,
            "features": self.features(),
        }

    def render_camera(self, name: str, width: int | None = None, height: int | None = None) -> np.ndarray:
        """uint8 image of a camera at the spec's size and encoding (HxWx3, or HxWx1 for mono8)."""
        cam = next((c for c in self.spec.cameras if c.name == name), None)
        if cam is None and (width is None or height is None):
            raise KeyError(f"camera {name!r} is not in the spec {self.spec.camera_names}; give width and height")
        w = width if width is not None else cam.width
        h = height if height is not None else cam.height
        renderer = self._renderers.get((h, w))
        if renderer is None:
            vis = self.model.vis.global_
            vis.offwidth, vis.offheight = max(vis.offwidth, w), max(vis.offheight, h)
            renderer = self._renderers[(h, w)] = mujoco.Renderer(self.model, height=h, width=w)
        renderer.update_scene(self.data, camera=name)
        rgb = renderer.render()
        encoding = cam.encoding if cam is not None else "rgb8"
        if encoding == "bgr8":
            return np.ascontiguousarray(rgb[..., ::-1])
        if encoding == "mono8":
            gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            return np.clip(gray + 0.5, 0, 255).astype(np.uint8)[..., None]
        return rgb

    def camera_matrix(self, name: str, width: int, height: int) -> np.ndarray:
        """3x3 pinhole matrix K of a camera rendered at ``width`` x ``height`` (pixel centres at
        integer coordinates, optical frame: x right, y down, z forward). MuJoCo's ``fovy`` is the
        vertical field of view and pixels are square, so fx = fy."""
        cam = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam < 0:
            raise KeyError(f"no camera {name!r} in the MuJoCo model")
        if np.any(self.model.cam_sensorsize[cam] > 0):
            raise ValueError(f"camera {name!r} sets sensorsize/focal; only fovy cameras are supported")
        f = 0.5 * height / np.tan(np.deg2rad(self.model.cam_fovy[cam]) / 2)
        return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
