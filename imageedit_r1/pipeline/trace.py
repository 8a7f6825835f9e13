"""What a run leaves behind: the typed trace, the result carrying it as JSON, and the failure.

A trace leaves the pipeline with every secret masked (``imageedit_r1.masking``): in the result, in
the failure and in the file ``write_trace`` writes.
"""

from __future__ import annotations

import copy
import os
import time
import types
import typing
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from imageedit_r1 import __version__
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


# Which part of a run each field belongs to. ``PLAN``: what a ``Plan`` holds itself (or derives), so
# never in its record. ``RECORD``: what the agents did while planning; ``Plan.record`` carries it
# into the run's trace. ``RUN``: written by the editing step only.
PLAN, RECORD, RUN = "plan", "record", "run"


def _field(part: str, *, default: Any = MISSING, factory: Any = MISSING, optional: bool = False) -> Any:
    # ``optional`` fields are left out of the JSON while unset (None): they appear when they apply.
    metadata = {"part": part, "optional": optional}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(slots=True)
class Trace:
    """What one run did, field by field: the one definition of a trace's keys.

    ``EditResult.trace`` and ``EditFailed.trace`` are its ``to_dict()`` (plain JSON for users and
    files); ``Plan.record`` is its ``record()``; the command line's summaries read it back with
    ``from_dict``, which also reads traces of earlier versions (absent fields take their defaults).
    ``with trace.stage(name):`` adds that block's seconds to ``seconds[name]``.
    """

    request: str = _field(PLAN)  # the edit request, forum tags removed
    mode: str = _field(PLAN)  # single-turn | multi-turn | original
    status: str = _field(PLAN, default="running")  # running | ok | failed | refused | planned
    input: dict[str, Any] = _field(RECORD, factory=dict)  # width, height, pixel sha256 of the input
    decomposition: dict[str, Any] | None = _field(PLAN, default=None)  # actions, subjects, goals, think
    repairs: list[str] = _field(RECORD, factory=list)  # what the tolerant parser mended (decomposition)
    sequence_repairs: list[str] = _field(RECORD, factory=list)  # the same for the sequencer's answer
    raw_outputs: dict[str, list[str]] = _field(RECORD, factory=dict)  # every raw answer, per agent stage
    tokens: dict[str, dict[str, int]] = _field(RECORD, factory=dict)  # per stage: prompt, completion
    sub_requests: list[str] = _field(PLAN, factory=list)  # the sequencer's ordered list
    instructions: list[str] = _field(PLAN, factory=list)  # what the editor was sent, call by call
    editor: dict[str, Any] = _field(RUN, factory=dict)  # the editor's name and settings
    models: dict[str, str | None] = _field(RECORD, factory=dict)  # model id per agent
    seeds: list[int] = _field(RUN, factory=list)  # the seed of every editor call
    seconds: dict[str, float] = _field(RECORD, factory=dict)  # per stage, and total
    fallbacks: list[dict[str, Any]] = _field(RECORD, factory=list)  # stage, used, reason, dropped
    errors: list[dict[str, Any]] = _field(RECORD, factory=list)  # stage, type, message (kind, reason)
    output: dict[str, Any] | None = _field(RUN, default=None)  # width, height, sha256 of the edit; its file
    version: str | None = _field(RECORD, default=None)  # the package version that ran
    started_at: str | None = _field(RECORD, default=None)  # local time, ISO 8601
    plan: dict[str, Any] | None = _field(PLAN, default=None, optional=True)  # Plan.change_record()
    # How the plan was made: batch (requests planned together); in an evaluation also the shared
    # plan's key and the methods that share it (shared_by).
    planning: dict[str, Any] | None = _field(RECORD, default=None, optional=True)
    verify: dict[str, Any] | None = _field(RUN, default=None, optional=True)  # the verify stage's attempts
    refusal: dict[str, Any] | None = _field(RUN, default=None, optional=True)  # stage, reason, message
    worker: dict[str, Any] | None = _field(RUN, default=None, optional=True)  # the Ray replica that edited
    demo: dict[str, Any] | None = _field(RUN, default=None, optional=True)  # the offline demo's note

    @classmethod
    def start(cls, request: str, mode: str, **values: Any) -> Trace:
        """A new run's trace, stamped with this version and the time."""
        return cls(request=request, mode=mode, version=__version__,
                   started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **values)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add_seconds(name, time.perf_counter() - start)

    def add_seconds(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name`` (a batched stage adds its call's seconds to every request)."""
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 4)

    def to_dict(self, parts: tuple[str, ...] = (PLAN, RECORD, RUN)) -> dict[str, Any]:
        """The JSON-able trace, in field order (only the fields of ``parts``; unset optional ones left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["part"] in parts
                and not (f.metadata["optional"] and getattr(self, f.name) is None)}

    def record(self) -> dict[str, Any]:
        """The planning record a ``Plan`` carries into its run (a copy)."""
        return copy.deepcopy(self.to_dict((RECORD,)))

    def carry(self, record: dict[str, Any]) -> None:
        """Take a plan's record into this run's trace; the run keeps its own ``input`` (the image it edits)."""
        for name in RECORD_FIELDS:
            if name in record and name != "input":
                setattr(self, name, copy.deepcopy(record[name]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Read a trace written by this or an earlier version; keys it does not define are left out."""
        missing = [name for name in ("request", "mode") if name not in data]
        if missing:
            raise ValueError(f"not a trace: it has no {' or '.join(missing)}")
        return cls(**{name: data[name] for name in FIELDS if name in data})


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Trace))
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Trace) if f.metadata["part"] == RECORD)
PLAN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Trace) if f.metadata["part"] == PLAN)


def _allowed(hint: Any) -> tuple[type, ...]:
    """The runtime types a field's annotation admits (``dict[str, int] | None`` → dict, NoneType)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return tuple(typing.get_origin(arg) or arg for arg in args)


_RECORD_TYPES = {name: _allowed(hint) for name, hint in typing.get_type_hints(Trace).items() if name in RECORD_FIELDS}


_KIND_WORDS = {dict: "an object", list: "a list", str: "a string", type(None): "null"}


def record_problems(record: dict[str, Any]) -> list[str]:
    """What is wrong with a planning record read from outside (a page, a file): fields of the wrong type."""
    return [f"record[{name!r}] must be {' or '.join(_KIND_WORDS[kind] for kind in allowed)}"
            for name, allowed in _RECORD_TYPES.items() if name in record and not isinstance(record[name], allowed)]


def record_of(trace: dict[str, Any]) -> dict[str, Any]:
    """The record fields of a trace dict (a planning trace printed by ``--dry-run --json``, say)."""
    return {name: copy.deepcopy(trace[name]) for name in RECORD_FIELDS if name in trace}
