"""What the import fuzzers compare before and after a case: nothing outside ``--out`` may change."""
from __future__ import annotations

import os
from pathlib import Path


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``root`` but ``skip`` (and what is in it) -> (type, size, mtime ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns)
    return out
