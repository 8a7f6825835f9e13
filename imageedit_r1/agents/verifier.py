"""The verifier: the judge agent scoring an edit against the request and the plan.

Two rubrics, both scored on 0-10:

- ``table2``: the evaluation judge's prompt (the paper's Table 2: fulfillment 0-4, quality 0-3,
  preservation 0-3; ``imageedit_r1.agents.judge``), read by the same tolerant parser, followed by
  the plan's sub-requests and a request to list the unmet ones in ``unmet``. The score is the
  rubric's total.
- ``checklist``: one line per sub-request, each met or not, with a note; the score is
  10 × (lines met) / (lines).

Either way the verdict names the sub-requests the edit missed (``unmet``, indices into the plan's
sub-requests; ``None`` when a table2 reply does not say), which is what a revised plan is built
from. The asking is the judge's (``imageedit_r1.agents.judge.Judge.ask``): a reply that cannot be
read is asked again (``JudgeConfig.reasks`` times at most); a refusal raises ``JudgeRefusal`` at
once; transport failures are the backend's (``RetriesExhausted``, ``BackendError``,
``RefusalError``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.agents.judge import (
    JUDGE_SCHEMA,
    MAX_TOTAL,
    Judge,
    JudgeError,
    JudgeRefusal,
    JudgmentParseError,
    judge_prompt,
    looks_like_refusal,
    parse_judgment,
)
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.jsontext import embedded_json, fenced_blocks
from imageedit_r1.prompts import prompt_sha256, render_prompt

MAX_SCORE = 10.0
_UNMET_KEYS = ("unmet", "unmet_sub_requests", "not_met", "unsatisfied", "missing")
_MET_KEYS = ("met", "satisfied", "done", "passed", "fulfilled", "ok")
_NOTE_KEYS = ("note", "reason", "comment", "explanation", "critique", "issue")

TABLE2_SCHEMA: dict[str, Any] = {
    **JUDGE_SCHEMA,
    "properties": {**JUDGE_SCHEMA["properties"],
                   "unmet": {"type": "array", "items": {"type": "integer"},
                             "description": "Numbers of the sub-requests the edited image does not satisfy."}},
    "required": [*JUDGE_SCHEMA["required"], "unmet"],
}
CHECKLIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer", "description": "The sub-request's number."},
                    "note": {"type": "string", "description": "What is wrong, when it is not met."},
                    "met": {"type": "boolean"},
                },
                "required": ["index", "note", "met"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["checks"],
    "additionalProperties": False,
}


@dataclass
class Verdict:
    """One verification. ``unmet``: indices into the sub-requests that were checked (None: unknown)."""

    score: float  # 0-10
    rubric: str
    scores: dict[str, Any]  # table2: fulfillment, quality, preservation, total; checklist: met, lines
    critique: str
    unmet: list[int] | None
    checks: list[dict[str, Any]] | None = None  # checklist: [{"sub_request", "met", "note"}]
    model: str = ""
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "rubric": self.rubric, "scores": self.scores, "critique": self.critique,
                "unmet": self.unmet, "checks": self.checks, "model": self.model, "calls": self.calls,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
                "notes": self.notes}


# ----------------------------------------------------------------------------- reading replies


def _json_mappings(text: str) -> list[Any]:
    """Every JSON value in ``text``: the whole reply, then fenced blocks, then values in prose."""
    values: list[Any] = []
    try:
        values.append(json.loads(text))
    except json.JSONDecodeError:
        pass
    for block in fenced_blocks(text):
        try:
            values.append(json.loads(block))
        except json.JSONDecodeError:
            continue
    values += embedded_json(text, nested=True)
    return values


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", str(text).lower()).strip()


def _index_of(value: Any, sub_requests: list[str]) -> int | None:
    """A 0-based index from a 1-based number ("2", 2) or from the sub-request's own text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(float(value))
        return number - 1 if 1 <= number <= len(sub_requests) else None
    if isinstance(value, str):
        wanted = _norm(value)
        for index, item in enumerate(sub_requests):
            if _norm(item) == wanted:
                return index
    return None


def _unmet_from_reply(text: str, sub_requests: list[str], notes: list[str]) -> list[int] | None:
    for value in _json_mappings(text):
        if not isinstance(value, dict):
            continue
        for key, item in value.items():
            if _norm(key).replace(" ", "_") in _UNMET_KEYS:
                items = item if isinstance(item, list) else [item] if item not in (None, "") else []
                indices = [_index_of(entry, sub_requests) for entry in items]
                if any(index is None for index in indices):
                    notes.append(f"unmet entries outside the plan ignored: {item!r}")
                return sorted({index for index in indices if index is not None})
    match = re.search(r"\bunmet\b[^:\n]*:\s*([^\n]*)", text, re.IGNORECASE)
    if match:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        return sorted({n - 1 for n in numbers if 1 <= n <= len(sub_requests)})
    return None


def parse_table2_verdict(text: str | None, sub_requests: list[str]) -> Verdict:
    """Scores by the evaluation judge's parser; ``unmet`` from the same reply when it lists them."""
    raw = text or ""
    scores = parse_judgment(raw)  # raises JudgmentParseError / JudgeRefusal
    notes = list(scores.notes)
    unmet = _unmet_from_reply(raw, sub_requests, notes)
    return Verdict(score=MAX_SCORE * scores.total / MAX_TOTAL, rubric="table2",
                   scores={"fulfillment": scores.fulfillment, "quality": scores.quality,
                           "preservation": scores.preservation, "total": scores.total},
                   critique=scores.reasoning, unmet=unmet, raw=raw, notes=notes)


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = _norm(value)
        if word in ("true", "yes", "met", "satisfied", "done", "pass", "passed", "y", "1"):
            return True
        if word in ("false", "no", "not met", "unmet", "not satisfied", "fail", "failed", "n", "0"):
            return False
    return None


def _checks_from_json(value: Any, sub_requests: list[str]) -> dict[int, tuple[bool, str]] | None:
    entries = value.get("checks", value.get("checklist", value.get("items"))) if isinstance(value, dict) else value
    if not isinstance(entries, list) or not entries:
        return None
    found: dict[int, tuple[bool, str]] = {}
    for position, entry in enumerate(entries):
        if isinstance(entry, dict):
            lowered = {_norm(k).replace(" ", "_"): v for k, v in entry.items()}
            met = next((_truth(lowered[k]) for k in _MET_KEYS if k in lowered), None)
            note = next((str(lowered[k]) for k in _NOTE_KEYS if isinstance(lowered.get(k), str)), "")
            where = next((lowered[k] for k in ("index", "number", "id", "sub_request") if k in lowered), position + 1)
        else:
            met, note, where = _truth(entry), "", position + 1
            if met is None:  # a list of something else (numbers quoted in prose): not a checklist
                return None
        index = _index_of(where, sub_requests)
        if met is None or index is None:
            raise JudgmentParseError(f"checklist entry {position + 1} is not readable: {entry!r}")
        found[index] = (met, note)
    return found


_LINE_RE = re.compile(r"^\s*[-*#>\s]*\**\s*(\d+)\s*[.):\]]\s*(.*)$")
_NO_RE = re.compile(r"\b(not met|unmet|not satisfied|no|false|fail(?:ed)?|missing)\b|[✗✘❌]", re.IGNORECASE)
_YES_RE = re.compile(r"\b(met|yes|true|satisfied|done|pass(?:ed)?)\b|[✓✔✅]", re.IGNORECASE)


def _checks_from_text(text: str, sub_requests: list[str]) -> dict[int, tuple[bool, str]]:
    found: dict[int, tuple[bool, str]] = {}
    for line in text.replace("*", "").splitlines():
        match = _LINE_RE.match(line)
        if not match:
            continue
        index = _index_of(match.group(1), sub_requests)
        body = match.group(2)
        # The sub-request's own words ("... to scarlet") must not count as a verdict: read after it.
        if index is not None and _norm(sub_requests[index]) and _norm(body).startswith(_norm(sub_requests[index])):
            body = body[len(sub_requests[index]):]
        # The first verdict word decides: "met: no artifacts" is met, "not met" is not.
        no, yes = _NO_RE.search(body), _YES_RE.search(body)
        verdict = None if not (no or yes) else bool(yes) and (not no or yes.start() < no.start())
        if index is not None and verdict is not None:
            found[index] = (verdict, body.strip(" :-–—"))
    return found


def parse_checklist_verdict(text: str | None, sub_requests: list[str]) -> Verdict:
    """One verdict per sub-request (JSON first, then numbered lines); a partial checklist is an error."""
    raw = text or ""
    stripped = raw.strip()
    if not stripped:
        raise JudgmentParseError("empty reply", raw=raw)
    found: dict[int, tuple[bool, str]] | None = None
    for value in _json_mappings(stripped):
        try:
            found = _checks_from_json(value, sub_requests)
        except JudgmentParseError as exc:
            exc.raw = raw
            raise
        if found:
            break
    if not found:
        found = _checks_from_text(stripped, sub_requests)
    if not found:
        if looks_like_refusal(stripped):
            raise JudgeRefusal(f"verifier refused: {stripped[:200]}", raw=raw)
        raise JudgmentParseError(f"no checklist found in reply: {stripped[:200]!r}", raw=raw)
    missing = [i + 1 for i in range(len(sub_requests)) if i not in found]
    if missing:
        raise JudgmentParseError(f"checklist has no verdict for sub-request(s) {missing}", raw=raw)
    checks = [{"sub_request": item, "met": found[i][0], "note": found[i][1]} for i, item in enumerate(sub_requests)]
    met = sum(check["met"] for check in checks)
    unmet = [i for i, check in enumerate(checks) if not check["met"]]
    critique = "; ".join(f"{i + 1}. {checks[i]['sub_request']}: {checks[i]['note'] or 'not met'}" for i in unmet)
    return Verdict(score=MAX_SCORE * met / len(checks), rubric="checklist", scores={"met": met, "lines": len(checks)},
                   critique=critique or "every sub-request is met", unmet=unmet, checks=checks, raw=raw)


# ----------------------------------------------------------------------------- one verification


def verification_prompt(rubric: str, request: str, sub_requests: list[str]) -> str:
    if rubric == "checklist":
        return render_prompt("verify_checklist", edit_request=request, sub_requests=sub_requests)
    return judge_prompt(request) + "\n\n" + render_prompt("verify_plan", sub_requests=sub_requests)


def failure_record(exc: BaseException) -> dict[str, Any]:
    """How a verification failed: ``kind`` is ``refusal`` (with the provider's ``reason``, see
    ``imageedit_r1.refusals``), ``invalid_reply``, ``api_unavailable`` or ``api_error``."""
    from imageedit_r1.refusals import refusal_record
    from imageedit_r1.retry import RetriesExhausted

    record: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    refusal = refusal_record(exc)
    if refusal is not None:
        return {**record, "kind": "refusal", "reason": refusal["reason"]}
    if isinstance(exc, JudgeError):
        return {**record, "kind": exc.kind}
    if isinstance(exc, RetriesExhausted):
        return {**record, "kind": "api_unavailable"}
    return {**record, "kind": "api_error"}


class Verifier:
    """Scores an edit (ORIGINAL then EDITED image) against the request and its sub-requests.

    ``backend`` is an ``imageedit_r1.backends`` chat backend (OpenAI-compatible server, OpenAI,
    Gemini, a local model); ``config`` its ``JudgeConfig`` (structured output, image side, token
    limit, re-asks). Temperature 0, seed 0. Token counts accumulate across re-asks; on a failure
    they ride on the exception as ``ask_log`` (``imageedit_r1.agents.asking.ask_log_of``).
    """

    RUBRICS = ("table2", "checklist")

    def __init__(self, backend, config: JudgeConfig | None = None, *, rubric: str = "table2") -> None:
        if rubric not in self.RUBRICS:
            raise ValueError(f"rubric must be 'table2' or 'checklist', got {rubric!r}")
        self.judge = Judge(backend, config)
        self.backend = backend
        self.rubric = rubric

    @property
    def model(self) -> str:
        return str(getattr(self.backend, "model", "") or "")

    def prompt_sha256(self) -> str:
        names = ["verify_checklist"] if self.rubric == "checklist" else ["judge", "verify_plan"]
        return "+".join(prompt_sha256(name)[:16] for name in names)

    def __call__(self, original, edited, request: str, sub_requests: list[str], *, max_asks: int | None = None) -> Verdict:
        sub_requests = list(sub_requests) or [request]
        schema = CHECKLIST_SCHEMA if self.rubric == "checklist" else TABLE2_SCHEMA
        parse = parse_checklist_verdict if self.rubric == "checklist" else parse_table2_verdict
        answer = self.judge.ask(verification_prompt(self.rubric, request, sub_requests), original, edited,
                                lambda text: parse(text, sub_requests), json_schema=schema,
                                schema_name=f"verify_{self.rubric}", max_asks=max_asks)
        verdict = answer.value
        verdict.model = answer.reply.model or self.model
        verdict.prompt_tokens, verdict.completion_tokens = answer.log.prompt_tokens, answer.log.completion_tokens
        verdict.calls = answer.log.asks
        return verdict
