"""The sim's camera intrinsics (published as CameraInfo by the bridge) match what MuJoCo renders."""
import mujoco
import numpy as np
import pytest

from pac_ros.sim.env import StackingEnv


def project(env, camera: str, point: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """World point -> (u, v, depth) through the camera's pose and camera_matrix."""
    cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    rotation = env.data.cam_xmat[cam].reshape(3, 3)  # columns: camera x, y, z (MuJoCo looks along -z)
    in_cam = rotation.T @ (point - env.data.cam_xpos[cam])
    optical = np.array([in_cam[0], -in_cam[1], -in_cam[2]])  # x right, y down, z forward
    u, v, w = env.camera_matrix(camera, width, height) @ optical
    return u / w, v / w, optical[2]


@pytest.mark.parametrize("width,height", [(320, 240), (200, 320)])
def test_block_centres_project_onto_the_middle_of_their_rendered_pixels(width, height):
    """Seed 3 leaves all three blocks unoccluded in the front view; the projected centre of each
    falls within 0.3 px of the centroid of its segmented pixels (a half-pixel error in the
    principal point, or fx taken from another field of view, would not)."""
    env = StackingEnv(render=True)
    try:
        env.reset(seed=3)
        renderer = mujoco.Renderer(env.model, height=height, width=width)
        renderer.enable_segmentation_rendering()
        renderer.update_scene(env.data, camera="front")
        segmentation = renderer.render()[..., 0]  # geom id per pixel
        renderer.close()
        for block, geom in env._block_geom.items():
            u, v, depth = project(env, "front", env.data.geom_xpos[geom], width, height)
            rows, cols = np.nonzero(segmentation == geom)
            assert depth > 0 and len(rows) > 100, f"{block} not in the front view"
            assert abs(u - cols.mean()) < 0.3 and abs(v - rows.mean()) < 0.3, (block, u, v, cols.mean(), rows.mean())
    finally:
        env.close()


def test_camera_matrix_from_fovy():
    env = StackingEnv(render=False)
    try:
        K = env.camera_matrix("wrist", 64, 48)
        fovy = env.model.cam_fovy[mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, "wrist")]
        assert K[1, 1] == K[0, 0] == pytest.approx(24 / np.tan(np.deg2rad(fovy) / 2))
        assert (K[0, 2], K[1, 2]) == (31.5, 23.5)
        with pytest.raises(KeyError, match="no camera 'nope'"):
            env.camera_matrix("nope", 64, 64)
    finally:
        env.close()
