"""Where a run's files go (the edited image, its trace beside it) and what the command line prints
about a run, read from its trace.

A finished edit is never lost to a writing error: ``write_edit`` writes the trace first, then the
image in the format its name asks for; when that fails (a format's size limit, a full disk), the
image goes to a PNG beside it under a name no file has yet (never over the input or another file),
one line names it, and the trace names the file written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imageedit_r1.pipeline.trace import Trace


def trace_path_for(out: str | os.PathLike) -> Path:
    """``<out>.trace.json``: the whole file name, so ``a.png`` and ``a.jpg`` in one folder keep a trace each."""
    out = Path(out)
    return out.with_name(out.name + ".trace.json")


# Extensions a user reaches for, in the order a note names them.
COMMON_EXTENSIONS = (".png", ".jpg", ".webp", ".tif", ".gif", ".bmp")


def alpha_extensions() -> str:
    """``.png, .webp, .tif or .gif``: the common extensions whose format keeps transparency here."""
    from imageedit_r1.images import keeps_alpha, output_format

    kept = [ext for ext in COMMON_EXTENSIONS if keeps_alpha(output_format(f"image{ext}"))]
    return ", ".join(kept[:-1]) + f" or {kept[-1]}" if len(kept) > 1 else "".join(kept)


def check_output(out: str | os.PathLike, setting: str = "--out") -> None:
    """Refuse, before any work, an image path that cannot be written: an extension Pillow cannot
    write (``ImageFormatError``) or a place that cannot hold the file (``ValueError``)."""
    from imageedit_r1.images import ImageFormatError, output_format
    from imageedit_r1.store import writable_problem

    try:
        output_format(out)
    except ImageFormatError as exc:
        raise ImageFormatError(f"{setting}: {exc}") from None
    problem = writable_problem(out)
    if problem:
        raise ValueError(f"{setting}: {problem}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def write_edit(image, trace: dict[str, Any], out: str | os.PathLike, *, trace_path: str | os.PathLike | None = None,
               say: Callable[[str], None] = _say) -> Path:
    """Write a finished edit: its trace (``trace_path``, by default ``<out>.trace.json``), then the
    image at ``out``; returns the image's path. When ``out`` cannot be written, the image goes to a PNG beside it under a free
    name (``<stem>.png``, else ``<stem>-1.png``, ...: never over an existing file) and ``say`` gets
    one line naming both; the trace records the file written (``output.file``)."""
    from imageedit_r1.images import has_alpha, keeps_alpha, output_format
    from imageedit_r1.pipeline.trace import write_trace
    from imageedit_r1.store import atomic_save_image, claim_free_path

    out = Path(out)
    trace_path = Path(trace_path) if trace_path is not None else trace_path_for(out)
    if has_alpha(image) and not keeps_alpha(output_format(out)):
        say(f"note: {out.name} cannot hold transparency; it is composited onto white ({alpha_extensions()} keep it)")
    trace["output"] = {**(trace.get("output") or {}), "file": out.name}
    write_trace(trace_path, trace)
    try:
        return atomic_save_image(image, out)
    except Exception as exc:  # noqa: BLE001 - any writing error: the edit itself is kept below
        reason = f"{type(exc).__name__}: {exc}"
        if output_format(out) == "PNG":
            raise OSError(f"could not write the edited image {out} ({reason}); its trace is {trace_path}") from exc
    fallback = claim_free_path(out.with_suffix(".png"))
    try:
        atomic_save_image(image, fallback)
    except BaseException:
        fallback.unlink(missing_ok=True)
        raise
    trace["output"].update(file=fallback.name, not_written={"file": out.name, "reason": reason})
    write_trace(trace_path, trace)
    say(f"warning: could not write {out} ({reason}); wrote {fallback} instead")
    return fallback


def print_summary(trace: dict[str, Any], image_path, trace_path) -> None:
    """What a user reads after a run: the files, the sub-requests, fallbacks, verify, seconds, tokens."""
    run = Trace.from_dict(trace)
    print(f"wrote {image_path} and {trace_path}")
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
