from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "pac_ros"
HERE = Path(__file__).resolve().parent


def share(folder, pattern="*"):
    return (f"share/{package_name}/{folder}", [p for p in glob(f"{folder}/{pattern}") if Path(p).is_file()])


def requirements(name):
    """Requirement lines of a requirements file (comments dropped): the one list pip and setup.py share."""
    lines = (line.split("#")[0].strip() for line in (HERE / name).read_text().splitlines())
    return [line for line in lines if line]


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml"),
        share("config", "*.xml"),
        share("models", "*.xml"),
        *(share(str(folder)) for folder in sorted(Path("models").iterdir()) if folder.is_dir()),  # shipped models
        share("msg", "*.msg"),  # schemas of the MCAP export (pac_ros/data/mcap.py)
    ],
    install_requires=["setuptools", *requirements("requirements.txt")],
    zip_safe=True,
    maintainer="pac_ros maintainers",
    maintainer_email="maintainers@pac-ros.dev",
    description="Perceiver-Actor-Critic policies on ROS 2 with an offline data loop",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "pac-ros = pac_ros.cli:main",
            "mujoco_bridge = pac_ros.nodes.mujoco_bridge:main",
            "expert = pac_ros.nodes.expert:main",
            "recorder = pac_ros.nodes.recorder:main",
            "policy = pac_ros.nodes.policy:main",
        ],
    },
)
