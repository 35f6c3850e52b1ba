"""Where the package's shared files (config/, models/) live: source tree or install."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "pac_ros"


def share_file(folder: str, name: str) -> Path:
    """``folder/name`` from the source tree, an ament install, or a pip install's share/."""
    candidates = [Path(__file__).resolve().parent.parent / folder / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / folder / name)
    except Exception:  # no ament index, or the package is not installed there
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / folder / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder}/{name} not found; looked in {[str(p) for p in candidates]}")
