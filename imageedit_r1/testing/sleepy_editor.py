"""A stand-in editor for orchestration tests and benchmarks: it sleeps, then returns a seeded image.

Use it as an evaluation method of kind ``callable`` (``target: imageedit_r1.testing.sleepy_editor:edit``),
or as a pipeline's editor (``editor.name: imageedit_r1.testing.sleepy_editor:SleepyEditor``). It holds no model, so what a run measures with it is the orchestration alone. The output depends
only on the input's pixels, the request and the seed, so any replica makes the same bytes.

A request containing ``[refuse]`` raises ``EditRefusedError`` after the sleep; one containing
``[kill]`` SIGKILLs the process editing it, as an OOM kill or a native crash would.

``LoadsOnOneGpu`` and ``NeverLoads`` are the same editor behind a set-up (a class target: built once
per replica) that fails as a model does on a GPU another job holds: CUDA out of memory.

Environment (read at each call, inherited by local Ray workers):
``IMAGEEDIT_R1_SLEEPY_SECONDS`` seconds per edit (default 0.5); ``IMAGEEDIT_R1_SLEEPY_LOG`` a file
that gets a JSON line when a call starts and one when it ends (``event``, ``pid``, ``id``, ``seed``,
``time``): which process edited what, and when; ``IMAGEEDIT_R1_SLEEPY_LOADS`` the folder where
``LoadsOnOneGpu`` claims its one GPU.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from imageedit_r1.agents.editors.base import BaseEditor
from imageedit_r1.store import append_jsonl

SECONDS_VARIABLE = "IMAGEEDIT_R1_SLEEPY_SECONDS"
LOG_VARIABLE = "IMAGEEDIT_R1_SLEEPY_LOG"
LOADS_VARIABLE = "IMAGEEDIT_R1_SLEEPY_LOADS"
KILL = "[kill]"


def edit(image, request: str, *, seed: int | None = None, sample: Any = None):
    """Sleep, then tint ``image`` by a colour drawn from (request, seed); returns (image, trace)."""
    from PIL import Image

    started = time.time()
    log_path = os.environ.get(LOG_VARIABLE)
    sample_id = str(getattr(sample, "id", ""))
    if log_path:
        append_jsonl(log_path, {"event": "start", "pid": os.getpid(), "id": sample_id, "seed": seed, "time": started})
    time.sleep(float(os.environ.get(SECONDS_VARIABLE, "0.5")))
    if KILL in request:  # the process dies mid-edit, without a word
        os.kill(os.getpid(), signal.SIGKILL)
    if "[refuse]" in request:  # a permanent failure of one item, for failure-record tests
        from imageedit_r1.agents.editors.base import EditRefusedError

        raise EditRefusedError(f"refused: {request}")
    if log_path:
        append_jsonl(log_path, {"event": "end", "pid": os.getpid(), "id": sample_id, "seed": seed, "time": time.time()})
    digest = hashlib.sha256(f"{request}\x00{seed}".encode()).digest()
    tint = Image.new("RGB", image.size, tuple(digest[:3]))
    edited = Image.blend(image.convert("RGB"), tint, 0.5)
    return edited, {"request": request, "seed": seed, "sub_requests": [request]}


class SleepyEditor(BaseEditor):
    """``edit`` behind the editing agent's contract (``imageedit_r1.agents.editors``)."""

    name = "sleepy"
    model_id = "sleepy"

    def _edit(self, image, instruction: str, *, seed: int | None):
        return edit(image, instruction, seed=seed)[0]


class OutOfMemoryError(RuntimeError):
    """Stands in for ``torch.OutOfMemoryError`` (a ``RuntimeError`` too) without importing torch."""


def _cuda_out_of_memory() -> OutOfMemoryError:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "?")
    return OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB. GPU {gpu} has a total capacity of "
                            "79.19 GiB of which 1.02 GiB is free (another process holds the rest)")


class LoadsOnOneGpu:
    """The sleepy editor behind a model that fits on one GPU only: the first replica to load it claims
    ``$IMAGEEDIT_R1_SLEEPY_LOADS/claimed``; every other load raises CUDA out of memory."""

    def __init__(self) -> None:
        folder = Path(os.environ[LOADS_VARIABLE])
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(folder / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise _cuda_out_of_memory() from None

    def __call__(self, image, request: str, *, seed: int | None = None, sample: Any = None):
        return edit(image, request, seed=seed, sample=sample)


class NeverLoads(LoadsOnOneGpu):
    """The sleepy editor behind a model that loads on no GPU: every load raises CUDA out of memory."""

    def __init__(self) -> None:
        raise _cuda_out_of_memory()
