"""The judge agent: the paper's Table 2 prompt, its schema, reply reading and one judgment.

The evaluation scores every edit with it (``imageedit_r1.eval``) and the verify stage builds its
rubrics on it (``imageedit_r1.agents.verifier``): one implementation of asking a VLM to judge an
edit, configured by ``imageedit_r1.endpoints.JudgeConfig``.

The judge sees the ORIGINAL then the EDITED image and scores three criteria: request fulfillment
(0–4), image quality (0–3) and preservation (0–3); the total (0–10) is their sum, computed here,
never taken from the reply. Replies are read by ``parse_judgment``: strict JSON first (what
structured output returns), then JSON inside a code fence or inside prose, then a free-text reader
("Request Fulfillment: 3/4"). A reply that cannot be read, that holds a number outside a
criterion's range, or that is a refusal raises ``JudgeError``: the runner records it as a
failure, never as a score of 0. An unreadable reply is asked again (``JudgeConfig.reasks``
times at most) through ``imageedit_r1.agents.asking``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any

from imageedit_r1.agents.asking import Answer, Ask, ask
from imageedit_r1.endpoints import JudgeConfig, build_endpoint
from imageedit_r1.jsontext import bracketed_span_bounds, fenced_blocks, lenient_literal
from imageedit_r1.prompts import prompt_sha256, render_prompt
from imageedit_r1.refusals import DECLINED, Refusal

PROMPT_NAME = "judge"

# Criterion -> (maximum points, names a reply may use for it, lower case).
CRITERIA: dict[str, tuple[int, tuple[str, ...]]] = {
    "fulfillment": (4, ("fulfillment", "fulfilment", "request_fulfillment", "request fulfillment",
                        "request_fulfilment", "request fulfilment", "instruction_following",
                        "fullfillment", "fullfilment", "request fullfillment", "request fullfilment")),
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


class JudgeRefusal(JudgeError, Refusal):
    """The judge declined to score (in words: no provider code, so ``reason`` is ``declined``)."""

    kind = "refusal"

    def __init__(self, message: str, raw: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(message, raw)
        self.reason = reason or DECLINED


@dataclass
class Scores:
    fulfillment: float
    quality: float
    preservation: float
    reasoning: str = ""
    parsed_from: str = "json"  # json | fenced_json | embedded_json | text (see parse_judgment)
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
#
# Replies are read when their three scores are unambiguous, in the shapes open judges (served by
# vLLM without a grammar) are seen to write: JSON, a Python dict literal, near-JSON (trailing
# commas, bare keys, JSON inside a JSON string), any of these in a code fence or in prose, scores
# as "3", "3/4", "3 out of 4" or {"score": 3}, a list of {"criterion", "score"} entries, labelled
# lines or a Markdown table; reasoning blocks (<think>…</think>, [THINK]…[/THINK], or everything
# before a lone </think>) are not part of the answer, and an answer wrapped in <answer> or GLM's
# <|begin_of_box|> is unwrapped. "Never guess": two readings that disagree (two objects with
# different scores, a criterion labelled twice with different numbers), a range ("3-4", "3 or 4"),
# unlabelled numbers, or a number on another scale make the reply invalid.

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
# A second number right after a score ("3-4", "3 or 4", "3 to 4"): a range, not a score.
_ALTERNATIVE_RE = re.compile(r"\s*(?:-|–|—|to|or)\s*\d", re.IGNORECASE)
# Reasoning the model wrote before its answer, and wrappers around the answer.
_THINK_BLOCK_RE = re.compile(r"<think>.*?</think>|\[THINK\].*?\[/THINK\]", re.IGNORECASE | re.DOTALL)
_LONE_THINK_END_RE = re.compile(r"^.*?(?:</think>|\[/THINK\])", re.IGNORECASE | re.DOTALL)
_UNCLOSED_THINK_RE = re.compile(r"(?:<think>|\[THINK\]).*\Z", re.IGNORECASE | re.DOTALL)
_WRAPPER_RE = re.compile(r"<\|begin_of_box\|>(.*?)<\|end_of_box\|>|<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_NAME_KEYS = ("criterion", "name", "aspect", "category", "metric", "dimension")
# A word that every label of a criterion (CRITERIA's aliases) contains.
_NAMES_A_CRITERION = re.compile(r"ful+fil|instruction|quality|preservation", re.IGNORECASE)
_SCORE_KEYS = ("score", "points", "value", "rating")


def answer_text(reply: str) -> str:
    """The answer part of a reply: reasoning blocks dropped (an unclosed one is all reasoning),
    ``<answer>`` / ``<|begin_of_box|>`` wrappers unwrapped."""
    text = _THINK_BLOCK_RE.sub(" ", reply)
    if re.search(r"</think>|\[/THINK\]", text, re.IGNORECASE):  # the opening tag was in the prompt
        text = _LONE_THINK_END_RE.sub(" ", text, count=1)
    text = _UNCLOSED_THINK_RE.sub(" ", text)  # cut off while thinking: no answer yet
    wrapped = [a or b for a, b in _WRAPPER_RE.findall(text)]
    return "\n".join(wrapped) if wrapped else text


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*" + _NUMBER + r"\s*(?:(?:/|out of)\s*(\d+))?\s*(?:points?|pts)?\s*", value,
                             re.IGNORECASE)
        if match:
            number = float(match.group(1))
            if match.group(2) is not None:
                return number if float(match.group(2)) > 0 else None
            return number
    if isinstance(value, dict):  # {"score": 3, "reason": ...}
        for key in _SCORE_KEYS:
            if key in value:
                return _number(value[key])
    return None


def _denominator(value: Any) -> float | None:
    if isinstance(value, str):
        match = re.search(r"(?:/|out of)\s*(\d+)", value, re.IGNORECASE)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        for key in _SCORE_KEYS:
            if key in value:
                return _denominator(value[key])
    return None


def _normalise_key(key: str) -> str:
    key = re.sub(r"\([^)]*\)", " ", str(key))  # "Request Fulfillment (0-4)"
    return re.sub(r"[\s\-]+", "_", key.strip().lower()).strip("_*:")


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


def _criterion_entries(items: list[Any]) -> dict[str, Any] | None:
    """``[{"criterion": "Image Quality", "score": 2}, ...]`` as ``{"image_quality": 2, ...}``."""
    flat: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            return None
        name = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)), None)
        score = next((item[k] for k in _SCORE_KEYS if k in item), None)
        if name is None or score is None:
            return None
        flat[_normalise_key(name)] = score
    return flat or None


def _flatten(data: dict[str, Any] | list[Any]) -> dict[str, Any]:
    if isinstance(data, list):
        return _criterion_entries(data) or {}
    # Some judges nest the scores ({"scores": {...}} or {"scores": [{"criterion": ..., "score": ...}]}).
    flat: dict[str, Any] = {}
    for key, value in data.items():
        nested = _normalise_key(key) in ("scores", "evaluation", "result", "judgment", "ratings", "criteria")
        if nested and isinstance(value, dict):
            flat.update({_normalise_key(k): v for k, v in value.items()})
        elif nested and isinstance(value, list) and _criterion_entries(value):
            flat.update(_criterion_entries(value))
        else:
            flat[_normalise_key(key)] = value
    return flat


def _scores_from_mapping(data: dict[str, Any] | list[Any], parsed_from: str, raw: str) -> Scores | None:
    flat = _flatten(data)
    found: dict[str, float] = {}
    notes: list[str] = []
    for name, (maximum, aliases) in CRITERIA.items():
        for alias in aliases:
            key = _normalise_key(alias)
            if key in flat:
                number = _number(flat[key])
                if number is None:
                    raise JudgmentParseError(f"{name} is not a number: {flat[key]!r}", raw=raw)
                denominator = _denominator(flat[key])
                if denominator is not None and denominator != maximum:
                    raise JudgmentParseError(f"{name} given as {flat[key]!r}, not on the 0-{maximum} scale", raw=raw)
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


def _literals(text: str) -> list[tuple[str, Any]]:
    """Every dict or list literal in ``text``: fenced blocks first, then those embedded in prose."""
    values: list[tuple[str, Any]] = []
    for block in fenced_blocks(text):
        value = lenient_literal(block)
        if value is not None:
            values.append(("fenced_json", value))
    # Nested values too: a judge may wrap its scores in an object of its own. A literal can only
    # be read as scores (or be rejected as partial ones) if it names a criterion: reading the
    # others would cost time quadratic in a flood of nested brackets, for nothing.
    # Where the criterion words are is found once; a span names one when a word lies within it.
    words = [(match.start(), match.end()) for match in _NAMES_A_CRITERION.finditer(text)]
    starts = [start for start, _ in words]
    for start, end in bracketed_span_bounds(text):
        first = bisect_left(starts, start)
        if first < len(words) and words[first][1] <= end and (value := lenient_literal(text[start:end])) is not None:
            values.append(("embedded_json", value))
    return values


def _one_reading(readings: list[Scores], raw: str) -> Scores | None:
    """The reading when every reading agrees on the three scores; an error when two disagree."""
    distinct = {(r.fulfillment, r.quality, r.preservation) for r in readings}
    if len(distinct) > 1:
        shown = "; ".join(f"{f:g}/{q:g}/{p:g}" for f, q, p in sorted(distinct))
        raise JudgmentParseError(f"reply holds conflicting scores ({shown}): ambiguous", raw=raw)
    return readings[0] if readings else None


def _scores_from_text(text: str, raw: str) -> Scores | None:
    clean = _RANGE_RE.sub(" ", text.replace("*", "").replace("#", "").replace("`", ""))
    lowered = clean.lower()
    found: dict[str, float] = {}
    for name, (maximum, aliases) in CRITERIA.items():
        values: set[float] = set()
        # Longest alias first so "request fulfillment" wins over "fulfillment" at the same place.
        taken: list[tuple[int, int]] = []
        for alias in sorted(aliases, key=len, reverse=True):
            label = re.escape(alias).replace(r"\ ", r"[\s_]+").replace("_", r"[\s_]+")
            pattern = re.compile(r"\b" + label + r"(?:\s*score)?\s*(?:[:=\-–—|]|is|was|of)\s*(?:\|\s*)?" + _NUMBER,
                                 re.IGNORECASE)
            for match in pattern.finditer(lowered):
                if any(start <= match.start() < end for start, end in taken):
                    continue
                taken.append(match.span())
                if _ALTERNATIVE_RE.match(lowered, match.end()):
                    raise JudgmentParseError(f"{name} is given as a range or alternatives: ambiguous", raw=raw)
                value = float(match.group(1))
                denominator = _DENOMINATOR_RE.match(lowered, match.end())
                if denominator and float(denominator.group(1)) != maximum:
                    raise JudgmentParseError(
                        f"{name} given as {value:g}/{denominator.group(1)}, not on the 0-{maximum} scale", raw=raw)
                values.add(_check_range(name, value, "text", raw))
        if len(values) > 1:
            shown = ", ".join(f"{v:g}" for v in sorted(values))
            raise JudgmentParseError(f"{name} is given more than once with different scores ({shown}): ambiguous",
                                     raw=raw)
        if values:
            found[name] = values.pop()
    if not _all_or_nothing(found, raw):
        return None
    return Scores(found["fulfillment"], found["quality"], found["preservation"], text.strip(), "text")


def parse_judgment(text: str | None) -> Scores:
    """Read a judge's reply into ``Scores``; raise ``JudgmentParseError`` or ``JudgeRefusal``.

    ``parsed_from`` says how: ``json`` (the whole answer is one literal), ``fenced_json`` /
    ``embedded_json`` (a literal in a code fence or in prose; every such literal must agree) or
    ``text`` (labelled scores; each criterion's labels must agree).
    """
    raw = text or ""
    if not raw.strip():
        raise JudgmentParseError("empty reply", raw=raw)
    stripped = answer_text(raw).strip()
    if not stripped:
        raise JudgmentParseError("reply holds reasoning but no answer", raw=raw)
    whole = lenient_literal(stripped)
    if whole is not None:
        scores = _scores_from_mapping(whole, "json", raw)
        if scores is not None:
            return scores
    readings = [scores for source, value in _literals(stripped)
                if (scores := _scores_from_mapping(value, source, raw)) is not None]
    scores = _one_reading(readings, raw)
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
    from imageedit_r1.images import resize

    return resize(image, size, 3)  # bicubic


class Judge:
    """One judge model behind a chat backend, asked with the Table 2 prompt (``config``: its
    ``JudgeConfig``; temperature 0 and seed 0 unless the config says otherwise).

    ``backend`` is an ``imageedit_r1.backends`` chat backend (or anything with the same ``chat``
    signature). A reply that cannot be read is asked again up to ``config.reasks`` times;
    transport retries are the backend's job. Token counts accumulate across asks and ride on a
    failure as ``ask_log`` (``imageedit_r1.agents.asking.ask_log_of``).
    """

    seed = 0

    def __init__(self, backend, config: JudgeConfig | None = None) -> None:
        self.backend = backend
        self.config = config or JudgeConfig(model=str(getattr(backend, "model", "") or ""))
        if self.config.reasks < 0:
            raise ValueError("reasks must be >= 0")
        self.name = self.config.name
        self.model = self.config.model
        self.prompt_sha256 = judge_prompt_sha256()

    def settings(self) -> dict[str, Any]:
        """What, besides the model id and the prompt, changes a score: part of the cache key."""
        return self.config.settings()

    def ask(self, prompt: str, original, edited, parse, *, json_schema: dict[str, Any], schema_name: str,
            max_asks: int | None = None) -> Answer:
        """Ask about ORIGINAL then EDITED (each scaled to ``max_image_side``) under ``prompt``; ``parse``
        reads the reply (``JudgmentParseError``: ask again). ``max_asks`` caps the asks (a budget)."""
        from imageedit_r1.backends import ChatMessage

        side = self.config.max_image_side
        message = ChatMessage(role="user", content=[prompt, fit_within(original, side), fit_within(edited, side)])
        reasks = self.config.reasks if max_asks is None else max(0, min(self.config.reasks, max_asks - 1))
        return ask(self.backend, Ask([message], parse, json_schema if self.config.structured else None),
                   reasks=reasks, unreadable=JudgmentParseError, schema_name=schema_name,
                   temperature=self.config.temperature, max_tokens=self.config.max_tokens, seed=self.seed)

    def __call__(self, original, edited, edit_request: str) -> Judgment:
        answer = self.ask(judge_prompt(edit_request), original, edited, parse_judgment, json_schema=JUDGE_SCHEMA,
                          schema_name=SCHEMA_NAME)
        log = answer.log
        return Judgment(answer.value, self.model, answer.reply.model or self.model, self.prompt_sha256,
                        answer.reply.text, log.prompt_tokens, log.completion_tokens, log.asks)


def build_judge(config: JudgeConfig) -> Judge:
    """A judge over the chat backend ``config`` names (its client is created here)."""
    return Judge(build_endpoint(config), config)
