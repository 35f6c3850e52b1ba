"""Running one fuzz case (lerobot_fuzz.py): write it out, import it under time and memory limits, and sort
the result.

- ``clean``: the import returned and its output validates;
- ``refused``: a PacRosError with a message, nothing at ``--out``;
- anything else is a failure: ``crash`` (another exception, a refusal that left output, an output that does
  not validate, an error that hit the memory limit), ``hang`` (over the time limit), ``memory`` (peak
  resident memory over the limit), ``write_outside`` (a file outside ``--out`` created, changed or
  removed), ``read_outside`` (a clean import of a case whose paths lead outside the dataset).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz_tree import snapshot
from lerobot_fuzz import OUTSIDE, Case
from lerobot_fuzz_bases import bases

from pac_ros.data.lerobot import import_lerobot
from pac_ros.data.validate import validate
from pac_ros.errors import PacRosError

SECRET = "secret.txt"
MEMORY_LIMIT = 200 << 20  # peak resident memory a case may add
ADDRESS_SPACE = 4 << 30  # address space a case may add before allocations fail (a safety net)
FAILURES = ("crash", "hang", "memory", "write_outside", "read_outside")


class Hang(BaseException):
    """Raised by the timer in a case over its time limit (a BaseException: no ``except Exception`` eats it)."""


def materialize(case: Case, work: Path) -> Path:
    """Write the case under ``work``: ``src`` (the mutated dataset) and ``outside`` (the base, untouched, and
    a secret). Returns ``src``."""
    src, outside = work / "src", work / OUTSIDE
    base = next(b for b in bases() if b.name == case.base)
    for rel, data in base.files.items():
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(data)
    (outside / SECRET).write_text("not part of any dataset\n")
    for rel, data in case.files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            p.mkdir()
        else:
            p.write_bytes(_fill(data, work))
    for rel, target in case.links.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(work / target, p.parent), p)
    return src


def _fill(data: bytes, work: Path) -> bytes:
    """Templates name the case's own outside copy: ``{ABS}`` absolutely, ``{OUT}`` relative to the source."""
    return data.replace(b"{ABS}", str(work / OUTSIDE).encode()).replace(b"{OUT}", OUTSIDE.encode())


@dataclass
class Outcome:
    kind: str  # clean | refused | one of FAILURES
    detail: str
    seconds: float

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _memory_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def run_case(case: Case, work: Path, time_limit: float = 20.0) -> Outcome:
    """Import the case from ``work/src`` into ``work/out`` and sort the result (see the module's docstring)."""
    import time

    work.mkdir(parents=True, exist_ok=True)
    src = materialize(case, work)
    out = work / "out"
    before = snapshot(work, out)
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + ADDRESS_SPACE
    if old_limit[1] != resource.RLIM_INFINITY:
        limit = min(limit, old_limit[1])
    _reset_peak()
    base_rss = _rss()

    def alarm(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    t0 = time.perf_counter()
    kind, detail = "clean", ""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, old_limit[1]))
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            import_lerobot(src, out, case.spec)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            resource.setrlimit(resource.RLIMIT_AS, old_limit)
    except Hang:
        kind, detail = "hang", f"over {time_limit} s"
    except PacRosError as exc:
        kind, detail = "refused", str(exc)
        if _memory_error(exc):
            kind = "crash"
            detail = f"hit the memory limit: {exc}"
        elif not detail.strip():
            kind, detail = "crash", f"{type(exc).__name__} without a message"
        elif out.exists() or out.is_symlink():
            kind, detail = "crash", f"refused but left {out}: {exc}"
    except BaseException as exc:  # noqa: BLE001 - sorting every other exception is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        kind = "crash"
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    finally:
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - t0
    peak = _peak_rss() - base_rss
    if kind == "clean":
        report = validate(out)
        if not report.ok:
            kind, detail = "crash", "imported, but the output does not validate: " + "; ".join(report.problems[:3])
        elif case.escapes:
            kind, detail = "read_outside", "imported although a path leads outside the dataset"
    after = snapshot(work, out)
    if before != after and kind not in ("crash", "hang"):
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        kind, detail = "write_outside", f"changed outside --out: {changed[:5]}"
    if kind in ("clean", "refused") and peak > MEMORY_LIMIT:
        kind, detail = "memory", f"peak resident memory +{peak / 2 ** 20:.0f} MiB"
    return Outcome(kind, detail, seconds)


def fresh(work: Path) -> None:
    """Empty ``work`` for the next case (symlinks removed, never followed)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
