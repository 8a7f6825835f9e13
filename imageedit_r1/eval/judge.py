"""LLM-as-judge with the paper's Table 2 prompt: request, schema, reply parsing, one judge call.

The judge sees the ORIGINAL then the EDITED image and scores three criteria: request fulfillment
(0–4), image quality (0–3) and preservation (0–3); the total (0–10) is their sum, computed here,
never taken from the reply. Replies are read by ``parse_judgment``: strict JSON first (what
structured output returns), then JSON inside a code fence or inside prose, then a free-text reader
("Request Fulfillment: 3/4"). A reply that cannot be read, that holds a number outside a
criterion's range, or that is a refusal raises ``JudgeError``: the runner records it as a
failure, never as a score of 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from imageedit_r1.jsontext import embedded_json, fenced_blocks
from imageedit_r1.prompts import prompt_sha256, render_prompt

PROMPT_NAME = "judge"

# Criterion -> (maximum points, names a reply may use for it, lower case).
CRITERIA: dict[str, tuple[int, tuple[str, ...]]] = {
    "fulfillment": (4, ("fulfillment", "fulfilment", "request_fulfillment", "request fulfillment",
                        "request_fulfilment", "request fulfilment", "instruction_following")),
    "quality": (3, ("quality", "image_quality", "image quality", "visual_quality", "visual quality")),
    "preservation": (3, ("preservation", "content_preservation", "content preservation")),
}
MAX_TOTAL = sum(maximum for maximum, _ in CRITERIA.values())

# Reasoning comes first so that a schema-constrained model writes its rationale before committing
# to numbers (structured output generates properties in schema order).
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "description": "Brief justification of the three scores."},
        "fulfillment": {"type": "integer", "minimum": 0, "maximum": 4,
                        "description": "Request Fulfillment, 0-4 points."},
        "quality": {"type": "integer", "minimum": 0, "maximum": 3, "description": "Image Quality, 0-3 points."},
        "preservation": {"type": "integer", "minimum": 0, "maximum": 3, "description": "Preservation, 0-3 points."},
    },
    "required": ["reasoning", "fulfillment", "quality", "preservation"],
    "additionalProperties": False,
}
SCHEMA_NAME = "edit_judgment"


class JudgeError(RuntimeError):
    """A judgment that could not be obtained; ``kind`` says why (recorded, never scored)."""

    kind = "invalid_reply"

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class JudgmentParseError(JudgeError):
    kind = "invalid_reply"


class JudgeRefusal(JudgeError):
    kind = "refusal"


@dataclass
class Scores:
    fulfillment: float
    quality: float
    preservation: float
    reasoning: str = ""
    parsed_from: str = "json"  # json | fenced_json | embedded_json | text
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.fulfillment + self.quality + self.preservation

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total"] = self.total
        return out


def judge_prompt(edit_request: str) -> str:
    return render_prompt(PROMPT_NAME, edit_request=edit_request)


def judge_prompt_sha256() -> str:
    return prompt_sha256(PROMPT_NAME)


# ----------------------------------------------------------------------------- parsing

_REFUSAL_RE = re.compile(
    r"\b(?:i\s*(?:'m|am)\s+(?:sorry|unable|not able)|i\s+(?:can\s*not|can't|cannot|won't|will not)"
    r"|unable to (?:evaluate|assess|help|comply|view)|as an ai\b|against (?:my|our) (?:policy|policies)"
    r"|content polic|not (?:able|allowed) to (?:evaluate|assess|help))",
    re.IGNORECASE,
)
# "(0–4 points)" / "(0-3)" rubric ranges echoed by a judge would otherwise read as a score.
_RANGE_RE = re.compile(r"\(\s*\d+\s*(?:–|-|—|to)\s*\d+\s*(?:points?|pts)?\s*\)", re.IGNORECASE)
_NUMBER = r"(-?\d+(?:\.\d+)?)"


def looks_like_refusal(text: str) -> bool:
    """True when a reply reads as a model declining to evaluate ("I'm sorry, I can't ...")."""
    return bool(_REFUSAL_RE.search(text or ""))

_DENOMINATOR_RE = re.compile(r"\s*(?:/|out of|of)\s*(\d+)", re.IGNORECASE)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*" + _NUMBER + r"\s*(?:/\s*(\d+))?\s*(?:points?|pts)?\s*", value)
        if match:
            number = float(match.group(1))
            if match.group(2) is not None:
                return number if float(match.group(2)) > 0 else None
            return number
    if isinstance(value, dict):  # {"score": 3, "reason": ...}
        for key in ("score", "points", "value"):
            if key in value:
                return _number(value[key])
    return None


def _normalise_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower()).strip("_*")


def _all_or_nothing(found: dict[str, float], raw: str) -> bool:
    """True when every criterion was scored, False when none was; a partial reply is an error."""
    missing = [name for name in CRITERIA if name not in found]
    if missing and len(missing) < len(CRITERIA):
        raise JudgmentParseError(f"reply has no score for {', '.join(missing)}", raw=raw)
    return not missing


def _check_range(name: str, value: float, parsed_from: str, raw: str) -> float:
    maximum = CRITERIA[name][0]
    if not 0 <= value <= maximum:
        raise JudgmentParseError(f"{name} score {value:g} is outside 0-{maximum}", raw=raw)
    return value


def _scores_from_mapping(data: dict[str, Any], parsed_from: str, raw: str) -> Scores | None:
    # Some judges nest the scores ({"scores": {...}}); look one level down.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and _normalise_key(key) in ("scores", "evaluation", "result", "judgment"):
            flat.update({_normalise_key(k): v for k, v in value.items()})
        else:
            flat[_normalise_key(key)] = value
    found: dict[str, float] = {}
    notes: list[str] = []
    for name, (_, aliases) in CRITERIA.items():
        for alias in aliases:
            key = _normalise_key(alias)
            if key in flat:
                number = _number(flat[key])
                if number is None:
                    raise JudgmentParseError(f"{name} is not a number: {flat[key]!r}", raw=raw)
                if isinstance(flat[key], str) and "/" in flat[key]:
                    denominator = float(flat[key].split("/")[1].split()[0])
                    if denominator != CRITERIA[name][0]:
                        raise JudgmentParseError(
                            f"{name} given as {flat[key]!r}, not on the 0-{CRITERIA[name][0]} scale", raw=raw)
                found[name] = _check_range(name, number, parsed_from, raw)
                break
    if not _all_or_nothing(found, raw):
        return None
    reasoning = ""
    for key in ("reasoning", "explanation", "rationale", "justification", "comments", "analysis"):
        if isinstance(flat.get(key), str):
            reasoning = flat[key]
            break
    stated_total = _number(flat.get("total", flat.get("total_score", flat.get("overall"))))
    total = sum(found.values())
    if stated_total is not None and abs(stated_total - total) > 1e-6:
        notes.append(f"reply stated total {stated_total:g}; using the sum of the criteria, {total:g}")
    return Scores(found["fulfillment"], found["quality"], found["preservation"], reasoning, parsed_from, notes)


def _json_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON object in ``text``: fenced blocks first, then objects embedded in prose."""
    objects: list[tuple[str, dict[str, Any]]] = []
    for block in fenced_blocks(text):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            objects.append(("fenced_json", value))
    # Nested objects too: a judge may wrap its scores in an object of its own.
    objects += [("embedded_json", value) for value in embedded_json(text, nested=True) if isinstance(value, dict)]
    return objects


def _scores_from_text(text: str, raw: str) -> Scores | None:
    clean = _RANGE_RE.sub(" ", text.replace("*", "").replace("#", "").replace("`", ""))
    lowered = clean.lower()
    found: dict[str, float] = {}
    for name, (maximum, aliases) in CRITERIA.items():
        # Longest alias first so "request fulfillment" wins over "fulfillment".
        for alias in sorted(aliases, key=len, reverse=True):
            label = re.escape(alias).replace(r"\ ", r"[\s_]+").replace("_", r"[\s_]+")
            pattern = re.compile(label + r"(?:\s*score)?\s*(?:[:=\-–—]|is|was|of)\s*" + _NUMBER, re.IGNORECASE)
            match = pattern.search(lowered)
            if not match:
                continue
            value = float(match.group(1))
            denominator = _DENOMINATOR_RE.match(lowered, match.end())
            if denominator and float(denominator.group(1)) != maximum:
                raise JudgmentParseError(
                    f"{name} given as {value:g}/{denominator.group(1)}, not on the 0-{maximum} scale", raw=raw)
            found[name] = _check_range(name, value, "text", raw)
            break
    if not _all_or_nothing(found, raw):
        return None
    return Scores(found["fulfillment"], found["quality"], found["preservation"], text.strip(), "text")


def parse_judgment(text: str | None) -> Scores:
    """Read a judge's reply into ``Scores``; raise ``JudgmentParseError`` or ``JudgeRefusal``."""
    raw = text or ""
    stripped = raw.strip()
    if not stripped:
        raise JudgmentParseError("empty reply", raw=raw)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        scores = _scores_from_mapping(value, "json", raw)
        if scores is not None:
            return scores
    for source, obj in _json_objects(stripped):
        scores = _scores_from_mapping(obj, source, raw)
        if scores is not None:
            return scores
    scores = _scores_from_text(stripped, raw)
    if scores is not None:
        return scores
    if looks_like_refusal(stripped):
        raise JudgeRefusal(f"judge refused: {stripped[:200]}", raw=raw)
    raise JudgmentParseError(f"no scores found in reply: {stripped[:200]!r}", raw=raw)


# ----------------------------------------------------------------------------- one judge call


@dataclass
class Judgment:
    scores: Scores
    requested_model: str
    served_model: str
    prompt_sha256: str
    raw: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 1


def fit_within(image, max_side: int | None):
    """``image`` scaled down (bicubic) so its longer side is at most ``max_side`` pixels; None: as is."""
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resample=3)  # bicubic


class Judge:
    """One judge model behind a chat backend, asked with the Table 2 prompt at temperature 0.

    ``backend`` is an ``imageedit_r1.backends`` chat backend (or anything with the same ``chat``
    signature). A reply that cannot be read is asked again up to ``invalid_reply_attempts`` times
    in total; transport retries are the backend's job. Token counts accumulate across attempts.
    """

    def __init__(self, backend, *, name: str, model: str, provider: str = "openai", structured: bool = True,
                 max_tokens: int = 1024, max_image_side: int | None = 1024, invalid_reply_attempts: int = 2,
                 seed: int | None = 0) -> None:
        if invalid_reply_attempts < 1:
            raise ValueError("invalid_reply_attempts must be >= 1")
        self.backend = backend
        self.name = name
        self.model = model
        self.provider = provider
        self.structured = structured
        self.max_tokens = max_tokens
        self.max_image_side = max_image_side
        self.invalid_reply_attempts = invalid_reply_attempts
        self.seed = seed
        self.prompt_sha256 = judge_prompt_sha256()

    def settings(self) -> dict[str, Any]:
        """What, besides the model id and the prompt, changes a score: part of the cache key."""
        return {"provider": self.provider, "structured": self.structured, "temperature": 0.0,
                "max_image_side": self.max_image_side, "max_tokens": self.max_tokens}

    def __call__(self, original, edited, edit_request: str) -> Judgment:
        from imageedit_r1.backends import ChatMessage

        message = ChatMessage(role="user", content=[
            judge_prompt(edit_request), fit_within(original, self.max_image_side), fit_within(edited, self.max_image_side)])
        prompt_tokens = completion_tokens = 0
        last_error: JudgmentParseError | None = None
        for attempt in range(1, self.invalid_reply_attempts + 1):
            response = self.backend.chat(
                [message], json_schema=JUDGE_SCHEMA if self.structured else None, schema_name=SCHEMA_NAME,
                temperature=0.0, max_tokens=self.max_tokens, seed=self.seed)
            prompt_tokens += int(response.prompt_tokens or 0)
            completion_tokens += int(response.completion_tokens or 0)
            try:
                scores = parse_judgment(response.text)
            except JudgmentParseError as exc:
                last_error = exc
                continue
            except JudgeRefusal as exc:
                exc.usage = (prompt_tokens, completion_tokens)
                raise
            return Judgment(scores, self.model, response.model or self.model, self.prompt_sha256,
                            response.text, prompt_tokens, completion_tokens, attempt)
        assert last_error is not None
        last_error.usage = (prompt_tokens, completion_tokens)
        raise last_error
