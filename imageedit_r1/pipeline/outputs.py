"""Where a run's files go: the edited image (written atomically) and its trace beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def trace_path_for(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".trace.json")


def save_image(image, path: Path) -> None:
    """Write atomically: a killed run never leaves a half-written image that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=(path.suffix.lstrip(".") or "png").upper().replace("JPG", "JPEG"))
    os.replace(tmp, path)


def print_summary(trace: dict[str, Any], out) -> None:
    print(f"wrote {out} and {trace_path_for(out)}")
    if trace.get("sub_requests"):
        print("sub-requests:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(trace["sub_requests"])))
    for fallback in trace.get("fallbacks", []):
        print(f"fallback: the {fallback['stage']} stage used '{fallback['used']}' ({fallback['reason'][:120]})")
    verify = trace.get("verify")
    if verify:
        scores = ", ".join(
            f"{a['attempt']}.{c['candidate']}: " + (f"{c['score']:g}" if c.get("score") is not None else c["status"])
            for a in verify["attempts"] for c in a["candidates"])
        result = verify["result"] or {}
        print(f"verify: {scores or 'no edit'} (threshold {verify['threshold']:g}); kept attempt "
              f"{result.get('attempt')} candidate {result.get('candidate')}; stopped: {verify['stop_detail']}")
    seconds = ", ".join(f"{k} {v:.2f}s" for k, v in trace.get("seconds", {}).items())
    print(f"seconds: {seconds}")
