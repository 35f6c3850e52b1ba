"""The recorder's pairing rules, without ROS."""
import numpy as np

from pac_ros.data.recording import EpisodeAssembler
from pac_ros.spec import default_spec

SPEC = default_spec()
DT = SPEC.control_period


def obs(a, t, value=None, features=True):
    q = np.full(SPEC.action_dim, t if value is None else value)
    a.add_joint_state(t, q, now=t)
    for cam in SPEC.camera_names:
        a.add_image(cam, t, np.full(SPEC.cameras[0].shape, int(t * 10) % 255, np.uint8), now=t)
    if features:
        a.add_block_poses(t, np.full(SPEC.feature_dim, t), now=t)


def test_commands_pair_with_the_observation_they_were_computed_from():
    a = EpisodeAssembler(SPEC, features=True)
    a.reset(start=-1.0, instruction="put the red block on the blue block")
    for k in range(5):
        t = k * DT
        obs(a, t)
        a.add_command(t, np.full(SPEC.action_dim, 100.0 + k), now=t)
        if k:
            a.add_reward(0.5)  # published after observation k: belongs to step k-1
    steps, final = a.finish()
    assert [s.timestamp for s in steps] == [k * DT for k in range(4)]  # step 4 is at the final obs
    for k, s in enumerate(steps):
        assert s.joint_positions[0] == k * DT and s.action[0] == 100.0 + k
        assert s.images["front"][0, 0, 0] == int(k * DT * 10) % 255 and s.features[0] == k * DT
        assert s.reward == 0.5
    assert final["timestamp"] == 4 * DT and final["joint_positions"][0] == 4 * DT
    assert a.stats.dropped_commands == 0 and a.stats.ignored_commands == 1


def test_command_waits_for_late_observation_then_drops_when_hopeless():
    a = EpisodeAssembler(SPEC)
    a.reset(start=-1.0, instruction="x")
    a.add_command(0.0, np.zeros(SPEC.action_dim), now=0.0)  # command before its observation
    assert not a.steps
    obs(a, 0.0, features=False)
    assert len(a.steps) == 1  # resolved once the observation arrived
    obs(a, 3 * DT, features=False)
    a.add_command(1.5 * DT, np.zeros(SPEC.action_dim), now=3 * DT)  # no observation near that stamp
    assert a.stats.dropped_commands == 1
    a.add_command(5 * DT, np.zeros(SPEC.action_dim), now=3 * DT)
    assert a.stats.dropped_commands == 1  # its observation may still come
    obs(a, 8 * DT, features=False)  # data moved past it: it will never be matched
    assert a.stats.dropped_commands == 2 and len(a.steps) == 1


def test_late_messages_gaps_and_success_cut():
    a = EpisodeAssembler(SPEC)
    a.reset(start=-1.0, instruction="x")
    for k in range(3):
        obs(a, k * DT, features=False)
        a.add_command(k * DT, np.zeros(SPEC.action_dim), now=k * DT)
    a.add_joint_state(0.5 * DT, np.zeros(SPEC.action_dim), now=3 * DT)  # older than the newest
    assert a.stats.late_messages == 1
    obs(a, 20 * DT, features=False)  # a 1.8 s silence
    assert {g[0] for g in a.stats.gaps} >= {"joint_states", "image:front"}
    a.add_success(True)
    assert a.success_at == 20 * DT
    a.add_command(20 * DT, np.zeros(SPEC.action_dim), now=20 * DT)
    steps, final = a.finish(until=a.success_at)
    assert len(steps) == 3 and final["timestamp"] == 20 * DT  # the command at success is not a step


def test_core_converts_images_and_asks_each_episode_whether_to_pair_poses(tmp_path):
    import fake_msgs

    from pac_ros.data import Dataset, DatasetWriter
    from pac_ros.data.recording import RecorderCore, commit_episode

    episodes, wanted = [], iter([False, True])
    core = RecorderCore(SPEC, episodes.append, features=lambda: next(wanted))
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[..., 0] = 200  # blue, as bgr8 bytes
    rows = np.concatenate([bgr.reshape(60, -1), np.full((60, 16), 9, np.uint8)], axis=1)
    t = 1.0
    for k, instruction in enumerate(SPEC.instructions()[:2]):
        core.on_instruction(instruction)
        for i in range(4):
            t = round(t + DT, 9)
            core.on_joint_state(fake_msgs.joint_state(t, SPEC.joint_names, 0.5 * (SPEC.lower + SPEC.upper)), t)
            for cam in SPEC.camera_names:
                msg = fake_msgs.NS(header=fake_msgs.header(t), height=60, width=80, encoding="bgr8", is_bigendian=0,
                                   step=rows.shape[1], data=rows.tobytes())
                core.on_image(cam, msg, t)
            core.on_block_poses(fake_msgs.pose_array(t, np.full(SPEC.feature_dim, 0.1)), t)
            if i < 3:
                core.on_command(fake_msgs.joint_state(t, SPEC.joint_names, 0.5 * (SPEC.lower + SPEC.upper)), t)
    core.stop("end")
    assert core.rejected == 0 and len(episodes) == 2
    first, second = episodes
    assert not first.has_features and all(s.features is None for s in first.steps)
    assert second.has_features and second.final["features"] is not None
    image = first.steps[0].images["front"]
    assert image.shape == SPEC.cameras[0].shape and np.all(image == [0, 0, 200])  # the spec's size, rgb8
    with DatasetWriter(tmp_path / "ds", SPEC, features=False) as writer:
        for episode in (first, second.without_features()):
            commit_episode(writer, episode)
    ds = Dataset(tmp_path / "ds", SPEC)
    assert len(ds) == 2 and not ds.has_features
    assert np.all(ds.load_episode(1).images["front"] == [0, 0, 200])


def test_an_episode_started_by_an_instruction_older_than_the_recorder_is_flagged():
    import fake_msgs

    from pac_ros.data.recording import RecorderCore

    episodes = []
    core = RecorderCore(SPEC, episodes.append, features=False)
    q = 0.5 * (SPEC.lower + SPEC.upper)
    t = 1.0
    for joined in (True, False):  # a latched instruction after a restart, then the next reset
        core.on_instruction(SPEC.instructions()[0], joined=joined)
        for _ in range(3):
            t = round(t + DT, 9)
            core.on_joint_state(fake_msgs.joint_state(t, SPEC.joint_names, q), t)
            for cam in SPEC.cameras:
                core.on_image(cam.name, fake_msgs.image(t, np.zeros(cam.shape, np.uint8), cam.encoding), t)
            core.on_command(fake_msgs.joint_state(t, SPEC.joint_names, q), t)
    core.stop("end")
    assert [e.metadata["joined_in_progress"] for e in episodes] == [True, False]
