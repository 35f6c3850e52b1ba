from glob import glob

from setuptools import find_packages, setup

package_name = "pac_ros"


def share(folder, pattern="*"):
    return (f"share/{package_name}/{folder}", [p for p in glob(f"{folder}/{pattern}")])


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        share("launch", "*.py"),
        share("config", "*.yaml"),
        share("config", "*.xml"),
        share("models", "*.xml"),
        share("models/pac_tiny_stacking"),
        share("models/pac_tiny_suboptimal"),
        share("msg", "*.msg"),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "mujoco", "pyarrow", "pillow", "av", "safetensors", "tqdm"],
    zip_safe=True,
    maintainer="pac_ros maintainers",
    maintainer_email="maintainers@pac-ros.dev",
    description="Perceiver-Actor-Critic policies on ROS 2 with an offline data loop",
    license="Apache-2.0",
    tests_require=["pytest"],
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
