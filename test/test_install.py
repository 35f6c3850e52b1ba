"""The package as a ROS 2 install gets it: package.xml declares what the code imports, and a real
`colcon build` installs executables that run from the install space, not the source tree."""
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ros_domain_id

ROOT = Path(__file__).resolve().parent.parent
# import name -> rosdep key (package.xml) for Python packages that have one
ROSDEP_KEYS = {"numpy": "python3-numpy", "yaml": "python3-yaml", "PIL": "python3-pil", "tqdm": "python3-tqdm",
               "matplotlib": "python3-matplotlib"}
PIP_NAMES = {"PIL": "pillow", "yaml": "pyyaml"}  # import name -> requirement name, where they differ


def imported_modules(paths) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"pac_ros", "__future__"}


def requirement_names(name: str) -> set[str]:
    lines = (line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines())
    return {line.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for line in lines if line}


def test_package_xml_declares_every_ros_package_and_python_key_the_code_imports():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    declared = {d.name for d in package.exec_depends}
    imports = imported_modules([*ROOT.glob("pac_ros/**/*.py"), *ROOT.glob("launch/*.py")])
    runtime_pip = requirement_names("requirements.txt")
    test_pip = requirement_names("requirements-test.txt")
    ros = set()
    for module in sorted(imports):
        if module in ROSDEP_KEYS:
            assert ROSDEP_KEYS[module] in declared, f"package.xml lacks {ROSDEP_KEYS[module]} ({module})"
            assert PIP_NAMES.get(module, module).lower() in runtime_pip, f"requirements.txt lacks {module}"
        elif PIP_NAMES.get(module, module).lower() in runtime_pip:
            continue  # pip-only, documented in package.xml's comment
        elif module in ("d3rlpy", "structlog"):  # the experiment's optional peers
            assert "d3rlpy" in test_pip
        else:
            ros.add(module)
            assert module in declared, f"package.xml lacks <exec_depend>{module}</exec_depend>"
    undeclared_python = {d for d in declared if d.startswith("python3-")} - set(ROSDEP_KEYS.values())
    assert not undeclared_python, f"keys without an import: {undeclared_python}"
    unused = {d for d in declared if not d.startswith("python3-")} - ros
    assert not unused, f"package.xml declares ROS packages nothing imports: {unused}"
    comment = (ROOT / "package.xml").read_text()
    for module in ("torch", "mujoco", "pyarrow", "safetensors", "rosbags", "tensorboard"):
        assert module in runtime_pip and module in comment, module


def installed_env(tmp_path: Path) -> dict:
    """The test's environment without the source tree or an earlier workspace on any path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH")}
    env["COLCON_HOME"] = str(tmp_path / "colcon_home")  # no user defaults
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["ROS_DOMAIN_ID"] = str(ros_domain_id())
    env["PYTHON"] = sys.executable
    return env


def test_colcon_build_installs_a_package_that_runs_from_the_install_space(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "pac_ros").symlink_to(ROOT)
    env = installed_env(tmp_path)
    # README.md, "On a ROS 2 install": the build, with the Python that has the requirements
    build = subprocess.run([sys.executable, "-m", "colcon", "build", "--packages-select", "pac_ros"],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr

    prefix = ws / "install" / "pac_ros"
    share = prefix / "share" / "pac_ros"
    for exe in ("policy", "recorder", "mujoco_bridge", "expert"):
        assert os.access(prefix / "lib" / "pac_ros" / exe, os.X_OK), exe
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "pac_ros").is_file()
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    expected = [p.relative_to(ROOT) for folder in ("launch", "config", "models", "msg")
                for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert {"launch/robot.launch.py", "config/robot_nodes.yaml", "models/stacking.xml",
            "models/pac_tiny_suboptimal/model.safetensors", "msg/EpisodeEvent.msg"} <= {str(p) for p in expected}
    missing = [str(p) for p in expected if not (share / p).is_file()]
    assert not missing, f"not installed: {missing}"

    # the install space, sourced, from a directory with no config/ or models/ of its own
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    setup = ws / "install" / "setup.bash"
    probe = subprocess.run(["bash", "-c", f'source "{setup}" && "$PYTHON" -c "{LOCATE}"'], cwd=run_dir, env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    located = dict(line.split("=", 1) for line in probe.stdout.split())
    assert Path(located["module"]).is_relative_to(prefix), located
    assert Path(located["ament_share"]) == share
    for key in ("config", "model", "msg_dir"):
        assert Path(located[key]).is_relative_to(share), (key, located)

    # an installed node starts, loads the shipped model from share/, and stops on SIGINT
    policy = subprocess.Popen(
        ["bash", "-c", f'source "{setup}" && exec "{prefix}/lib/pac_ros/policy" --ros-args '
                       f'-p checkpoint:=models/pac_tiny_suboptimal -p device:=cpu -p autostart:=true'],
        cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = policy.stdout.readline()
            lines.append(line)
            if "PAC policy pac_tiny_suboptimal@" in line or not line:
                break
        assert "PAC policy pac_tiny_suboptimal@" in lines[-1], "".join(lines)
    finally:
        policy.send_signal(signal.SIGINT)
        output, _ = policy.communicate(timeout=30)
    assert policy.returncode == 0, "".join(lines) + output


LOCATE = ("import pac_ros, pac_ros.paths as p, pac_ros.data.mcap as m; "
          "from ament_index_python.packages import get_package_share_directory as d; "
          "print('module=' + pac_ros.__file__); print('ament_share=' + d('pac_ros')); "
          "print('config=' + str(p.share_file('config', 'stacking.yaml'))); "
          "print('model=' + str(p.existing_or_shared('models/pac_tiny_suboptimal'))); "
          "print('msg_dir=' + str(m.package_msg_files()[0]))")
