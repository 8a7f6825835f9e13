"""What every command line of the project does alike: error lines (secrets masked) and Ctrl-C."""

from __future__ import annotations

import os
import sys
import threading

INTERRUPTED = "interrupted: re-run the same command to resume"


def print_error(exc: BaseException | str) -> None:
    """``error: …`` on stderr, one line per line of the message (a list of problems stays readable),
    every secret masked (``imageedit_r1.masking``): an error may quote a key, a URL with one, a header."""
    from imageedit_r1.masking import mask_text

    lines = mask_text(str(exc)).splitlines() or [type(exc).__name__]
    for line in lines:
        print(f"error: {line.strip()}" if line.strip() else "", file=sys.stderr)


def interrupted() -> int:
    """Ctrl-C: one line instead of a traceback; exit status 130 (128 + SIGINT), as shells report it.

    Work already finished is on disk (every store here appends atomically), so the same command
    resumes. Worker threads still busy with a request would hold the interpreter open until they
    return; the process exits at once instead.
    """
    print(f"\n{INTERRUPTED}" if _progress_bar_open() else INTERRUPTED, file=sys.stderr, flush=True)
    sys.stdout.flush()
    if threading.active_count() > 1:
        os._exit(130)
    return 130


def _progress_bar_open() -> bool:
    try:
        from tqdm import tqdm
    except ImportError:
        return False
    return bool(getattr(tqdm, "_instances", None))
