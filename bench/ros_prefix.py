"""Unpack ROS 2 (or any) wheels into a prefix, for a machine that has Python but no ROS and no pip
access (the lent GPU machine): no pip, no build, just the files where the wheels' loaders look.

    python bench/ros_prefix.py PREFIX WHEEL...     # then, on the machine:
    export PYTHONPATH=PREFIX/site AMENT_PREFIX_PATH=PREFIX _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
    export LD_LIBRARY_PATH=PREFIX/lib:$(ls -d PREFIX/site/ros_*.libs | tr '\\n' ':')

Packages go to PREFIX/site; a wheel's *.data/data files (the ROS libraries, share/ament_index)
to PREFIX, except headers, CMake files and static libraries, which nothing loads at run time.
The ros-wheels-bootstrapper's .pth, which sets LD_LIBRARY_PATH by re-executing Python, is not
read from a PYTHONPATH entry: the exports above do its job.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

SKIPPED = ("include/", "cmake/")


def destination(prefix: Path, member: str) -> Path | None:
    parts = member.split("/")
    if not parts[0].endswith(".data"):
        return prefix / "site" / member
    kind, rest = parts[1], "/".join(parts[2:])
    if any(s in rest for s in SKIPPED) or rest.endswith(".a"):
        return None
    if rest.startswith("lib/python3") and "/site-packages/" in rest:  # generated message packages
        return prefix / "site" / rest.split("/site-packages/", 1)[1]
    return prefix / rest if kind in ("data", "scripts", "headers") else prefix / "site" / rest


def unpack(prefix: Path, wheel: Path) -> int:
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            dest = None if info.is_dir() else destination(prefix, info.filename)
            if dest is None:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(info))
            if (info.external_attr >> 16) & 0o111:
                dest.chmod(0o755)
            count += 1
    return count


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    prefix = Path(sys.argv[1])
    files = sum(unpack(prefix, Path(w)) for w in sys.argv[2:])
    print(f"{len(sys.argv) - 2} wheels, {files} files -> {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
