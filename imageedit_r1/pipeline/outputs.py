"""Where a run's files go and what the command line prints about them: the edited image, its trace
beside it, and the summaries read from a trace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imageedit_r1.pipeline.trace import Trace


def trace_path_for(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".trace.json")


def print_summary(trace: dict[str, Any], out) -> None:
    """What a user reads after a run: the files, the sub-requests, fallbacks, verify, seconds, tokens."""
    run = Trace.from_dict(trace)
    print(f"wrote {out} and {trace_path_for(out)}")
    if run.sub_requests:
        print("sub-requests:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(run.sub_requests)))
    for fallback in run.fallbacks:
        print(format_fallback(fallback))
    if run.verify:
        scores = ", ".join(
            f"{a['attempt']}.{c['candidate']}: " + (f"{c['score']:g}" if c.get("score") is not None else c["status"])
            for a in run.verify["attempts"] for c in a["candidates"])
        result = run.verify["result"] or {}
        print(f"verify: {scores or 'no edit'} (threshold {run.verify['threshold']:g}); kept attempt "
              f"{result.get('attempt')} candidate {result.get('candidate')}; stopped: {run.verify['stop_detail']}")
    print(f"seconds: {format_seconds(run)}")
    if format_tokens(run):
        print(f"tokens: {format_tokens(run)}")


def format_fallback(fallback: dict[str, Any]) -> str:
    # The reason whole: it is what a user acts on.
    return f"fallback: the {fallback['stage']} stage used '{fallback['used']}' ({fallback['reason']})"


def format_seconds(run: Trace) -> str:
    return ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in run.seconds.items())


def format_tokens(run: Trace) -> str:
    """``decompose 812 in + 64 out, sequence ...`` from the trace's per-stage token counts."""
    return ", ".join(f"{stage} {t.get('prompt', 0)} in + {t.get('completion', 0)} out"
                     for stage, t in run.tokens.items() if t)


def print_plan(plan: dict[str, Any], image: str | None = None) -> None:
    """A short summary of a ``--dry-run`` plan (its planning trace): what each agent decided and
    what the editor would get."""
    planned = Trace.from_dict(plan)
    if image:
        print(f"plan for {image} ({planned.mode}):")
    decomposition = planned.decomposition or {}
    for key in ("actions", "subjects", "goals"):
        if decomposition.get(key):
            print(f"  {key}: {', '.join(map(str, decomposition[key]))}")
    if planned.sub_requests:
        print("  sub-requests:\n" + "\n".join(f"    {i + 1}. {s}" for i, s in enumerate(planned.sub_requests)))
    for i, instruction in enumerate(planned.instructions):
        print(f"  editor instruction {i + 1}: {instruction}")
    for fallback in planned.fallbacks:
        print(f"  {format_fallback(fallback)}")
    if format_seconds(planned):
        print(f"  seconds: {format_seconds(planned)}")
    if format_tokens(planned):
        print(f"  tokens: {format_tokens(planned)}")
