"""Where the package's shared files (config/, models/) live: source tree or install."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "pac_ros"


def share_file(folder: str, name: str) -> Path:
    """``folder/name`` (a file or a directory) from the source tree, an ament install, or a
    pip install's share/."""
    candidates = [Path(__file__).resolve().parent.parent / folder / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / folder / name)
    except Exception:  # no ament index, or the package is not installed there
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / folder / name)
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"{folder}/{name} not found; looked in {[str(p) for p in candidates]}")


def existing_or_shared(path: str | Path) -> Path:
    """``path`` if it exists (relative to the working directory), else the package's copy
    of it (e.g. ``models/pac_tiny_stacking`` of the source tree or install)."""
    path = Path(path)
    if path.exists() or path.is_absolute() or len(path.parts) < 2:
        return path
    try:
        return share_file(path.parts[0], str(Path(*path.parts[1:])))
    except FileNotFoundError:
        return path
