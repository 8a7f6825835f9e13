"""What a run leaves behind: the trace (a JSON-able dict), the result, and the failure carrying it."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EditFailed(RuntimeError):
    """A run could not produce an image; ``trace`` holds everything recorded up to the failure."""

    def __init__(self, message: str, trace: dict[str, Any]) -> None:
        super().__init__(message)
        self.trace = trace

    def __reduce__(self):  # travels whole between processes (a Ray replica to the driver)
        return (type(self), (str(self), self.trace))


@dataclass
class EditResult:
    image: Any  # PIL.Image.Image
    trace: dict[str, Any]

    def save_trace(self, path: str | os.PathLike) -> None:
        write_trace(path, self.trace)


def write_trace(path: str | os.PathLike, trace: dict[str, Any]) -> None:
    """Write a trace atomically (temporary file, then rename): a killed run leaves no torn trace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(trace, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Trace(dict):
    """A run's trace; ``with trace.stage(name):`` adds that block's seconds to ``trace['seconds'][name]``."""

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self["seconds"][name] = round(self["seconds"].get(name, 0.0) + time.perf_counter() - start, 4)
