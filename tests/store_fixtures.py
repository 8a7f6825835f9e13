"""A run lock held by another process, as a second run meets it (the lock is re-entrant within one)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HOLD = """
import sys, time
from imageedit_r1.store import run_lock
with run_lock(sys.argv[1], single_file=sys.argv[2] == "file"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def lock_held_elsewhere(target, *, single_file: bool = False):
    """Yield the pid of a process that holds ``run_lock(target)`` until the block ends."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(target), "file" if single_file else "folder"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout.readline().strip() == "held"
        yield process.pid
    finally:
        process.kill()
        process.wait()
