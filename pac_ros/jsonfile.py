"""Reading the project's small JSON sidecars (dataset info, checkpoint meta) with errors
that name the file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: str | Path, error: type[Exception], missing: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``error(missing)`` if the file is absent, ``error`` naming
    the file and ``what`` it should hold if it is unreadable, not JSON or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data
