"""Where a run's files go and what the command line prints about them: the edited image, its trace beside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def trace_path_for(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".trace.json")


def print_summary(trace: dict[str, Any], out) -> None:
    print(f"wrote {out} and {trace_path_for(out)}")
    if trace.get("sub_requests"):
        print("sub-requests:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(trace["sub_requests"])))
    for fallback in trace.get("fallbacks", []):  # the reason whole: it is what a user acts on
        print(f"fallback: the {fallback['stage']} stage used '{fallback['used']}' ({fallback['reason']})")
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
    tokens = format_tokens(trace)
    if tokens:
        print(f"tokens: {tokens}")


def format_tokens(trace: dict[str, Any]) -> str:
    """``decompose 812 in + 64 out, sequence ...`` from the trace's per-stage token counts."""
    return ", ".join(f"{stage} {t.get('prompt', 0)} in + {t.get('completion', 0)} out"
                     for stage, t in (trace.get("tokens") or {}).items() if t)


def print_plan(plan: dict[str, Any], image: str | None = None) -> None:
    """A short summary of a ``--dry-run`` plan: what each agent decided and what the editor would get."""
    if image:
        print(f"plan for {image} ({plan.get('mode')}):")
    decomposition = plan.get("decomposition") or {}
    for key in ("actions", "subjects", "goals"):
        if decomposition.get(key):
            print(f"  {key}: {', '.join(map(str, decomposition[key]))}")
    if plan.get("sub_requests"):
        print("  sub-requests:\n" + "\n".join(f"    {i + 1}. {s}" for i, s in enumerate(plan["sub_requests"])))
    for i, instruction in enumerate(plan.get("instructions") or []):
        print(f"  editor instruction {i + 1}: {instruction}")
    for fallback in plan.get("fallbacks", []):
        print(f"  fallback: the {fallback['stage']} stage used '{fallback['used']}' ({fallback['reason']})")
    seconds = ", ".join(f"{k} {v:.2f}s" for k, v in plan.get("seconds", {}).items())
    if seconds:
        print(f"  seconds: {seconds}")
    if format_tokens(plan):
        print(f"  tokens: {format_tokens(plan)}")
