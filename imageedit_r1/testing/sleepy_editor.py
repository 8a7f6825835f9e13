"""A stand-in editor for orchestration tests and benchmarks: it sleeps, then returns a seeded image.

Use it as an evaluation method of kind ``callable`` (``target: imageedit_r1.testing.sleepy_editor:edit``).
It holds no model, so what a run measures with it is the orchestration alone. The output depends
only on the input's pixels, the request and the seed, so any replica makes the same bytes.

A request containing ``[refuse]`` raises ``EditRefusedError`` after the sleep.

Environment (read at each call, inherited by local Ray workers):
``IMAGEEDIT_R1_SLEEPY_SECONDS`` seconds per edit (default 0.5); ``IMAGEEDIT_R1_SLEEPY_LOG`` a file
that gets a JSON line when a call starts and one when it ends (``event``, ``pid``, ``id``, ``seed``,
``time``): which process edited what, and when.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from imageedit_r1.store import append_jsonl

SECONDS_VARIABLE = "IMAGEEDIT_R1_SLEEPY_SECONDS"
LOG_VARIABLE = "IMAGEEDIT_R1_SLEEPY_LOG"


def edit(image, request: str, *, seed: int | None = None, sample: Any = None):
    """Sleep, then tint ``image`` by a colour drawn from (request, seed); returns (image, trace)."""
    from PIL import Image

    started = time.time()
    log_path = os.environ.get(LOG_VARIABLE)
    sample_id = str(getattr(sample, "id", ""))
    if log_path:
        append_jsonl(log_path, {"event": "start", "pid": os.getpid(), "id": sample_id, "seed": seed, "time": started})
    time.sleep(float(os.environ.get(SECONDS_VARIABLE, "0.5")))
    if "[refuse]" in request:  # a permanent failure of one item, for failure-record tests
        from imageedit_r1.agents.editors.base import EditRefusedError

        raise EditRefusedError(f"refused: {request}")
    if log_path:
        append_jsonl(log_path, {"event": "end", "pid": os.getpid(), "id": sample_id, "seed": seed, "time": time.time()})
    digest = hashlib.sha256(f"{request}\x00{seed}".encode()).digest()
    tint = Image.new("RGB", image.size, tuple(digest[:3]))
    edited = Image.blend(image.convert("RGB"), tint, 0.5)
    return edited, {"request": request, "seed": seed, "sub_requests": [request]}
