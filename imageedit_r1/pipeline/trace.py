"""What a run leaves behind: the trace (a JSON-able dict), the result, and the failure carrying it.

A trace leaves the pipeline with every secret masked (``imageedit_r1.masking``): in the result, in
the failure and in the file ``write_trace`` writes.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from imageedit_r1.masking import mask
from imageedit_r1.store import atomic_write_json


class EditFailed(RuntimeError):
    """A run could not produce an image; ``trace`` holds everything recorded up to the failure."""

    def __init__(self, message: str, trace: dict[str, Any]) -> None:
        super().__init__(mask(message))
        self.trace = mask(trace)

    def __reduce__(self):  # travels whole between processes (a Ray replica to the driver)
        return (type(self), (str(self), self.trace))


@dataclass
class EditResult:
    image: Any  # PIL.Image.Image
    trace: dict[str, Any]  # secrets masked

    def __post_init__(self) -> None:
        self.trace = mask(self.trace)

    def save_trace(self, path: str | os.PathLike) -> None:
        write_trace(path, self.trace)


def write_trace(path: str | os.PathLike, trace: dict[str, Any]) -> None:
    """Write a trace atomically, secrets masked: a killed run leaves no torn trace."""
    atomic_write_json(path, mask(trace))


class Trace(dict):
    """A run's trace; ``with trace.stage(name):`` adds that block's seconds to ``trace['seconds'][name]``."""

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self["seconds"][name] = round(self["seconds"].get(name, 0.0) + time.perf_counter() - start, 4)
