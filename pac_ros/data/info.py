"""What a dataset holds, from its index alone (no episode file is opened): `pac-ros dataset info`."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pac_ros.data import format as fmt
from pac_ros.data.reader import Dataset


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "p50": float(np.percentile(v, 50)), "mean": float(v.mean()),
            "p90": float(np.percentile(v, 90)), "max": float(v.max())}


def source_label(episode: dict[str, Any]) -> str:
    """Where an episode came from: its source, with the acting checkpoint or the expert quality."""
    label = episode.get("source") or "unknown"
    detail = episode.get("checkpoint") or (episode.get("metadata") or {}).get("quality")
    return f"{label} ({detail})" if detail else label


def summarize(ds: Dataset) -> dict[str, Any]:
    """Counts, success, returns, sources, instructions, cameras, rates, drops and size, as plain JSON types."""
    eps = ds.episodes
    n = len(eps)
    successes = sum(bool(e.get("success")) for e in eps)
    by_source: dict[str, dict[str, Any]] = {}
    for e in eps:
        s = by_source.setdefault(source_label(e), {"episodes": 0, "successes": 0})
        s["episodes"] += 1
        s["successes"] += bool(e.get("success"))
    rates = [e["achieved_rate_hz"] for e in eps if e.get("achieved_rate_hz")]
    drops = [int(e.get("dropped") or 0) for e in eps]
    return {
        "root": str(ds.root),
        "spec": ds.spec.name,
        "spec_fingerprint": ds.spec.fingerprint(),
        "fingerprint": ds.fingerprint(),
        "episodes_without_content_digest": sum(fmt.CONTENT_KEY not in e for e in eps),
        "episodes": n,
        "steps": ds.total_steps,
        "successes": successes,
        "success_rate": successes / n if n else None,
        "length": _quantiles([e["length"] for e in eps]),
        "return": _quantiles([float(e.get("return") or 0.0) for e in eps]),
        "sources": by_source,
        "instructions": dict(Counter(e["instruction"] for e in eps).most_common()),
        "cameras": {c.name: f"{c.width}x{c.height} {c.encoding}" for c in ds.spec.cameras},
        "block_features": ds.has_features,
        "control_rate_hz": ds.spec.control_rate_hz,
        "achieved_rate_hz": _quantiles(rates),
        "dropped": {"total": int(sum(drops)), "episodes_with_drops": int(sum(d > 0 for d in drops))},
        "bytes": ds.size_bytes(),
    }


def format_summary(s: dict[str, Any]) -> list[str]:
    def q(d: dict[str, float] | None, fmt: str) -> str:
        if d is None:
            return "-"
        return " ".join(f"{k} {format(v, fmt)}" for k, v in d.items())

    rate = "-" if s["success_rate"] is None else f"{s['success_rate']:.1%}"
    steps = max(s["steps"], 1)
    lines = [
        f"dataset:       {s['root']}",
        f"spec:          {s['spec']} ({s['spec_fingerprint']})",
        f"fingerprint:   {s['fingerprint']} (what checkpoints trained on it record; "
        + ("of the episodes' contents)" if not s["episodes_without_content_digest"] else
           f"{s['episodes_without_content_digest']} episode(s) by file, written before content digests)"),
        f"episodes:      {s['episodes']}, steps {s['steps']}",
        f"success:       {s['successes']}/{s['episodes']} = {rate}",
        f"length:        {q(s['length'], '.0f')}",
        f"return:        {q(s['return'], '.3f')}",
        f"control rate:  spec {s['control_rate_hz']:g} Hz; achieved {q(s['achieved_rate_hz'], '.2f')}",
        f"dropped:       {s['dropped']['total']} messages in {s['dropped']['episodes_with_drops']} episodes",
        "cameras:       " + (", ".join(f"{k} {v}" for k, v in s["cameras"].items()) or "none"),
        f"block poses:   {'yes' if s['block_features'] else 'no'}",
        f"size on disk:  {s['bytes'] / 1e6:.2f} MB ({s['bytes'] / steps:.0f} bytes/step)",
        "sources:",
    ]
    for name, src in s["sources"].items():
        lines.append(f"  {name:30s} {src['episodes']:6d} episodes, {src['successes']} successes")
    lines.append("instructions:")
    for text, count in s["instructions"].items():
        lines.append(f"  {count:6d}  {text}")
    return lines
