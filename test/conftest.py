import itertools
import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

_domains = itertools.count()


def ros_domain_id() -> int:
    """A ROS_DOMAIN_ID per test, spread by process so parallel runs do not hear each other."""
    return 1 + (os.getpid() * 7 + next(_domains)) % 100


@pytest.fixture()
def ros():
    """rclpy initialised on a domain of this test's own; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    from pac_ros.nodes.common import init_ros

    domain = ros_domain_id()
    init_ros(domain_id=domain)
    try:
        yield domain
    finally:
        rclpy.try_shutdown()


@pytest.fixture(scope="module")
def env():
    """A stacking world without rendering, shared by a test module."""
    from pac_ros.sim.env import StackingEnv

    world = StackingEnv(render=False)
    yield world
    world.close()


@pytest.fixture(scope="session")
def collected(tmp_path_factory):
    """A small expert dataset (4 mixed-quality episodes, seed 0), collected once; read-only."""
    from pac_ros.collect import collect

    root = tmp_path_factory.mktemp("collected") / "ds"
    collect(root, 4, quality="mixed", seed=0)
    return root


@pytest.fixture
def collected_copy(collected, tmp_path):
    """A private copy of ``collected`` for a test to damage."""
    import shutil

    return shutil.copytree(collected, tmp_path / "ds")
