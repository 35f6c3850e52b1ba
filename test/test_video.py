"""Demo videos: re-rendered from recorded states at a watchable size, captioned, written as GIF or MP4."""
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pac_ros.sim.env import StackingEnv
from pac_ros.sim.video import caption, episode_video, pick_episodes, render_states, write_gif, write_video


@pytest.fixture(scope="module")
def rollout():
    """Five steps of a seeded episode: what a recorder keeps (joints, block poses, the spec's images)."""
    env = StackingEnv(render=True)
    obs = env.reset(seed=3)
    rows = []
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows.append(obs)
        command = obs["joint_positions"] + rng.uniform(-1, 1, env.spec.action_dim) * env.spec.max_step
        obs = env.step(command)[0]
    rows.append(obs)
    yield env, rows
    env.close()


def test_recorded_states_re_render_the_policy_view(rollout):
    env, rows = rollout
    q = np.stack([r["joint_positions"] for r in rows]).astype(np.float32)
    feats = np.stack([r["features"] for r in rows]).astype(np.float32)
    small = env.spec.cameras[0].width
    frames = render_states(env, q, feats, size=small)
    for frame, row in zip(frames, rows):
        seen = np.concatenate([row["images"][c] for c in env.spec.camera_names], axis=1)
        assert frame.shape == seen.shape
        assert np.abs(frame.astype(int) - seen.astype(int)).mean() < 3.0  # the same scene, to rounding
    big = render_states(env, q[:1], feats[:1], size=320)[0]
    assert big.shape == (320, 320 * len(env.spec.cameras), 3) and big.std() > 10


def test_episode_video_is_captioned_with_instruction_and_outcome(rollout):
    env, rows = rollout
    episode = SimpleNamespace(
        joint_positions=np.stack([r["joint_positions"] for r in rows]),
        features=np.stack([r["features"] for r in rows]),
        instruction=rows[0]["instruction"], episode_index=0, meta={"length": len(rows), "success": False})
    frames = episode_video(episode, env, size=96)
    assert len(frames) == len(rows)
    h, w = frames[0].shape[:2]
    assert w == 96 * len(env.spec.cameras) and h > 96 and h % 2 == 0 and w % 2 == 0
    band = frames[0][h - (h - 96) // 2:]  # the outcome's band: FAIL in red
    red = (band[..., 0] > 200) & (band[..., 1] < 120)
    assert red.any()
    episode.features = None
    with pytest.raises(ValueError, match="no block poses"):
        episode_video(episode, env)


def test_caption_and_writers(tmp_path):
    frames = [np.full((40, 60, 3), 80 * i, np.uint8) for i in range(3)]
    out = caption(frames, "put the red block on the blue block", "SUCCESS in 2 steps", (0, 255, 0), band=20)
    assert [f.shape for f in out] == [(80, 60, 3)] * 3
    assert (out[0][:20] > 200).any() and (out[0][-20:, :, 1] > 200).any()  # white top text, green bottom text
    gif = write_gif(out, tmp_path / "a.gif", fps=10)
    with Image.open(gif) as im:
        assert im.n_frames == 3 and im.size == (60, 80)
    assert write_video(out, tmp_path / "b", 10, fmt="gif").name == "b.gif"
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "c.gif", 10)


def test_mp4_when_pyav_is_installed(tmp_path):
    av = pytest.importorskip("av")
    frames = caption([np.full((40, 60, 3), 30 * i, np.uint8) for i in range(4)], "top", "bottom", band=20)
    path = write_video(frames, tmp_path / "v", 10, fmt="mp4")
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert path.suffix == ".mp4" and len(decoded) == 4 and decoded[0].shape == (80, 60, 3)


def test_pick_a_success_and_a_failure_when_there_are_both():
    metas = [{"episode_index": i, "success": s} for i, s in enumerate([False, True, True, False])]
    assert [m["episode_index"] for m in pick_episodes(metas)] == [1, 0]
    assert pick_episodes(metas[1:3]) == metas[1:3]
