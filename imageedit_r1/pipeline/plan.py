"""The plan: what the agents propose to do to an image, before the editor runs.

``ImageEditR1.plan(image, request)`` returns a ``Plan``; a person (or a verifier) may change it;
``ImageEditR1.execute(image, plan)`` runs the editor on it. A plan holds

- ``request``: the user's edit request;
- ``mode``: ``single-turn`` (all sub-requests in one editor call), ``multi-turn`` (one call per
  sub-request, each on the previous output) or ``original`` (the raw request, no agents);
- ``decomposition``: the decomposition agent's actions, subjects and goals (``None`` when the
  agents were skipped or the ``original`` fallback applied);
- ``sub_requests``: the sequencing agent's ordered sub-requests;
- ``instructions`` (derived): what the editor receives, one string per editor call;
- ``record``: what the agents did (repairs, raw answers, tokens, fallbacks, errors, seconds,
  model ids), carried into the run's trace;
- ``proposed``: the agents' own mode, sub-requests and decomposition, frozen at planning time;
- ``edits``: a log of changes made through the editing methods, each with who made it.

Change it through ``edit_sub_request``, ``add_sub_request``, ``remove_sub_request``,
``move_sub_request``, ``set_sub_requests``, ``set_mode`` (each logs who and what), or assign the
fields directly: ``changes()`` compares against ``proposed`` either way, so the trace always says
whether the executed plan differs from the agents' one. ``to_dict``/``from_dict`` (and the JSON
pair) round-trip a plan, e.g. through a web page or a file; ``from_dict`` validates its input and
raises ``PlanError`` (a ``ValueError``) saying what is wrong.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.masking import mask
from imageedit_r1.pipeline.config import MODES
from imageedit_r1.pipeline.trace import PLAN, Trace, record_of, record_problems

PLAN_FORMAT = 1
# Bounds on a plan that arrives from outside (a web page, a file): generous for real plans.
MAX_SUB_REQUESTS = 32
MAX_TEXT_CHARS = 2000
MAX_NESTING = 32  # a real plan nests about five deep; deeper input would exhaust the stack of whatever walks it


class PlanError(ValueError):
    """A plan is malformed or cannot be executed; the message says which field and why."""


def join_sub_requests(sub_requests: list[str]) -> str:
    """One instruction holding every sub-request, in order, as sentences (single-turn editing)."""
    sentences = [s.strip().rstrip(".;, ") for s in sub_requests if s and s.strip()]
    return " ".join(f"{sentence}." for sentence in sentences)


def _clean_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PlanError(f"{what} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise PlanError(f"{what} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise PlanError(f"{what} is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}")
    return text


def _clean_sub_requests(values: Any) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise PlanError(f"sub_requests must be a list of strings, got {type(values).__name__}")
    if len(values) > MAX_SUB_REQUESTS:
        raise PlanError(f"the plan has {len(values)} sub-requests; the limit is {MAX_SUB_REQUESTS}")
    return [_clean_text(value, f"sub-request {i + 1}") for i, value in enumerate(values)]


def _check_nesting(data: Any) -> None:
    """PlanError for objects and lists nested more than ``MAX_NESTING`` deep (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                raise PlanError(f"the plan nests objects and lists more than {MAX_NESTING} deep; a plan is a few levels deep")
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise PlanError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _decomposition_dict(decomposition: Decomposition | None) -> dict[str, Any] | None:
    if decomposition is None:
        return None
    return {**decomposition.to_dict(), "think": decomposition.think}


@dataclass
class Plan:
    """An editable, serialisable edit plan (see the module docstring)."""

    request: str
    mode: str
    decomposition: Decomposition | None = None
    sub_requests: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    proposed: dict[str, Any] = field(default_factory=dict)
    edits: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.request = _clean_text(self.request, "the edit request")
        self.mode = _check_mode(self.mode)
        if not self.proposed:
            self.proposed = self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {"mode": self.mode, "sub_requests": list(self.sub_requests),
                "decomposition": _decomposition_dict(self.decomposition)}

    # ------------------------------------------------------------------ what the editor receives

    @property
    def instructions(self) -> list[str]:
        """The editor's instruction per call: the raw request in ``original`` mode or when there are
        no sub-requests (the agents were bypassed), all sub-requests joined in ``single-turn``,
        one per call in ``multi-turn``."""
        subs = [s.strip() for s in self.sub_requests if isinstance(s, str) and s.strip()]
        if self.mode == "original" or not subs:
            return [self.request]
        if self.mode == "single-turn":
            return [join_sub_requests(subs)]
        return subs

    def validate(self) -> Plan:
        """Check the plan can be executed; raise ``PlanError`` otherwise. Returns the plan."""
        self.request = _clean_text(self.request, "the edit request")
        self.mode = _check_mode(self.mode)
        self.sub_requests = _clean_sub_requests(self.sub_requests)
        if not self.sub_requests and self.mode != "original" and self.proposed.get("sub_requests"):
            raise PlanError("every sub-request was removed; add one, or choose the 'original' mode "
                            "to send the request to the editor as it is")
        return self

    # ------------------------------------------------------------------ editing, with a log

    def _log(self, op: str, by: str, **details: Any) -> None:
        self.edits.append({"op": op, "by": by, **details})

    def edit_sub_request(self, index: int, text: str, *, by: str = "person") -> Plan:
        """Replace sub-request ``index`` (0-based) with ``text``."""
        self._check_index(index)
        before, after = self.sub_requests[index], _clean_text(text, f"sub-request {index + 1}")
        if before != after:
            self.sub_requests[index] = after
            self._log("edit", by, index=index, before=before, after=after)
        return self

    def add_sub_request(self, text: str, *, at: int | None = None, by: str = "person") -> Plan:
        """Insert ``text`` at position ``at`` (default: last)."""
        if len(self.sub_requests) >= MAX_SUB_REQUESTS:
            raise PlanError(f"a plan holds at most {MAX_SUB_REQUESTS} sub-requests")
        at = len(self.sub_requests) if at is None else at
        if not 0 <= at <= len(self.sub_requests):
            raise PlanError(f"cannot insert at position {at}: the plan has {len(self.sub_requests)} sub-requests")
        text = _clean_text(text, "the new sub-request")
        self.sub_requests.insert(at, text)
        self._log("add", by, index=at, after=text)
        return self

    def remove_sub_request(self, index: int, *, by: str = "person") -> Plan:
        self._check_index(index)
        removed = self.sub_requests.pop(index)
        self._log("remove", by, index=index, before=removed)
        return self

    def move_sub_request(self, index: int, to: int, *, by: str = "person") -> Plan:
        """Move sub-request ``index`` to position ``to`` (both 0-based)."""
        self._check_index(index)
        self._check_index(to)
        if index != to:
            text = self.sub_requests.pop(index)
            self.sub_requests.insert(to, text)
            self._log("move", by, index=index, to=to, text=text)
        return self

    def set_sub_requests(self, sub_requests: list[str], *, by: str = "person", reason: str | None = None) -> Plan:
        """Replace the whole list (e.g. from a form or a verifier), logging the before and after."""
        new = _clean_sub_requests(sub_requests)
        if new != self.sub_requests:
            details = {"before": list(self.sub_requests), "after": list(new)}
            if reason:
                details["reason"] = reason
            self.sub_requests = new
            self._log("replace", by, **details)
        return self

    def set_mode(self, mode: str, *, by: str = "person") -> Plan:
        mode = _check_mode(mode)
        if mode != self.mode:
            self._log("mode", by, before=self.mode, after=mode)
            self.mode = mode
        return self

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index < len(self.sub_requests):
            raise PlanError(f"no sub-request {index!r}: the plan has {len(self.sub_requests)} (0-based)")

    # ------------------------------------------------------------------ what changed

    def changes(self) -> list[dict[str, Any]]:
        """How the plan differs from the agents' proposal, field by field (empty: unchanged).

        Sub-request differences are reported per position: ``edit`` (text changed), ``add`` (a
        position the proposal did not have), ``remove`` (a proposed position now gone), or, when
        the same texts appear in another order, one ``reorder`` with both orders.
        """
        proposed, now = self.proposed, self._snapshot()
        found: list[dict[str, Any]] = []
        if proposed.get("mode") != now["mode"]:
            found.append({"field": "mode", "before": proposed.get("mode"), "after": now["mode"]})
        before, after = list(proposed.get("sub_requests") or []), now["sub_requests"]
        if before != after:
            if sorted(before) == sorted(after):
                found.append({"field": "sub_requests", "op": "reorder", "before": before, "after": after})
            else:
                for i in range(max(len(before), len(after))):
                    old = before[i] if i < len(before) else None
                    new = after[i] if i < len(after) else None
                    if old == new:
                        continue
                    op = "edit" if old is not None and new is not None else ("add" if old is None else "remove")
                    found.append({"field": "sub_requests", "op": op, "index": i, "before": old, "after": new})
        if proposed.get("decomposition") != now["decomposition"]:
            found.append({"field": "decomposition", "before": proposed.get("decomposition"),
                          "after": now["decomposition"]})
        return found

    @property
    def changed(self) -> bool:
        return bool(self.changes())

    def change_record(self) -> dict[str, Any]:
        """The trace's ``plan`` entry: whether and how the executed plan differs from the proposal."""
        changes = self.changes()
        authors = sorted({edit.get("by", "unknown") for edit in self.edits})
        if changes and not authors:
            authors = ["unknown"]  # changed by assigning fields directly: the author was not given
        return {
            "changed": bool(changes),
            "changed_by": authors if changes else [],
            "changes": changes,
            "edits": copy.deepcopy(self.edits),
            "proposed": copy.deepcopy(self.proposed),
        }

    def trace(self) -> dict[str, Any]:
        """The planning trace (status ``planned``): the agents' record with this plan's fields, as
        ``--dry-run`` prints it; an executed run's trace has the same keys plus the editing ones.
        Secrets are masked, as in every trace."""
        planned = Trace(request=self.request, mode=self.mode, status="planned",
                        decomposition=_decomposition_dict(self.decomposition), sub_requests=list(self.sub_requests),
                        instructions=self.instructions, plan=self.change_record())
        return mask({**record_of(self.record), **planned.to_dict((PLAN,))})

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``Plan.from_dict`` reads it back."""
        return {
            "format": PLAN_FORMAT,
            "request": self.request,
            "mode": self.mode,
            "decomposition": _decomposition_dict(self.decomposition),
            "sub_requests": list(self.sub_requests),
            "instructions": self.instructions,
            "proposed": copy.deepcopy(self.proposed),
            "edits": copy.deepcopy(self.edits),
            "record": copy.deepcopy(self.record),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str, **kwargs)

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """Rebuild a plan from ``to_dict``'s output, or from the planning trace ``trace()`` and
        ``--dry-run --json`` print (``instructions`` is derived and ignored)."""
        if not isinstance(data, dict):
            raise PlanError(f"a plan must be a JSON object, got {type(data).__name__}")
        _check_nesting(data)
        if "format" not in data and data.get("status") == "planned" and isinstance(data.get("plan"), dict):
            data = _plan_dict_from_trace(data)
        if data.get("format", PLAN_FORMAT) != PLAN_FORMAT:
            raise PlanError(f"unknown plan format {data.get('format')!r} (this version reads {PLAN_FORMAT})")
        for key in ("request", "mode"):
            if key not in data:
                raise PlanError(f"the plan has no {key!r}; keys present: {sorted(data)}")
        decomposition = data.get("decomposition")
        if decomposition is not None:
            try:
                decomposition = Decomposition.from_dict(decomposition)
            except ValueError as exc:
                raise PlanError(f"the plan's decomposition: {exc}") from exc
        for key in ("record", "proposed"):
            if not isinstance(data.get(key) or {}, dict):
                raise PlanError(f"the plan's {key!r} must be an object")
        problems = record_problems(data.get("record") or {})
        if problems:
            raise PlanError(f"the plan's {problems[0]}")
        edits = data.get("edits") or []
        if not isinstance(edits, list) or not all(isinstance(edit, dict) for edit in edits):
            raise PlanError("the plan's 'edits' must be a list of objects")
        return cls(
            request=data["request"],
            mode=data["mode"],
            decomposition=decomposition,
            sub_requests=_clean_sub_requests(data.get("sub_requests") or []),
            record=dict(data.get("record") or {}),
            proposed=dict(data.get("proposed") or {}),
            edits=list(edits),
        )

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"the plan is not valid JSON: {exc}") from exc
        except RecursionError:  # nested deeper than the parser's stack
            raise PlanError(f"the plan nests objects and lists more than {MAX_NESTING} deep; a plan is a few "
                            "levels deep") from None
        return cls.from_dict(data)


def _plan_dict_from_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """``to_dict``'s form of a planning trace: the agents' proposal and the edits come from
    ``trace["plan"]``, so a plan changed in the printed JSON still reads as changed."""
    change_record = trace["plan"]
    return {
        "format": PLAN_FORMAT,
        **{key: trace[key] for key in ("request", "mode", "decomposition", "sub_requests") if key in trace},
        "proposed": change_record.get("proposed") or {},
        "edits": change_record.get("edits") or [],
        "record": record_of(trace),
    }
