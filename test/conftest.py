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
