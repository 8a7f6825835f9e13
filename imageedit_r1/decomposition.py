"""The one schema of a decomposition: tags, list encoding, render and parse.

Everything that reads or writes a decomposition (the prompt, the reward, the teacher labeller,
the sequencer, the exporters) goes through this module.

Output format (the decomposition agent's answer)::

    <think>free text</think>
    <action>["Recoloring"]</action>
    <subjects>["coat", "hair"]</subjects>
    <goals>["scarlet or copper red"]</goals>

Each list is a JSON array of strings: unambiguous where a goal contains commas
("red, white and blue"). ``check_format`` is the strict check used by the reward; ``parse`` is the
tolerant reader used at inference, which repairs near-misses and reports what it repaired.

Actions are read onto the closed action taxonomy of ``imageedit_r1.taxonomy`` (``canonicalized``).
"""

from __future__ import annotations

import ast
import json
import json.scanner
import re
from dataclasses import dataclass, field
from itertools import islice

from imageedit_r1.jsontext import FENCE_RE
from imageedit_r1.taxonomy import canonical_action

# ----------------------------------------------------------------------------- tags

THINK, ACTION, SUBJECTS, GOALS = "think", "action", "subjects", "goals"
TAGS: tuple[str, ...] = (THINK, ACTION, SUBJECTS, GOALS)
LIST_TAGS: tuple[str, ...] = (ACTION, SUBJECTS, GOALS)
# A list longer than this is not a decomposition but a degenerate rollout: the tolerant parser
# reads at most one item more, and the reward scores such a list 0.
MAX_LIST_ITEMS = 256

_OPEN = {tag: f"<{tag}>" for tag in TAGS}
_CLOSE = {tag: f"</{tag}>" for tag in TAGS}
_TAG_STRINGS = tuple(_OPEN.values()) + tuple(_CLOSE.values())
_WHITESPACE = re.compile(r"\s*")

# ----------------------------------------------------------------------------- the record


@dataclass
class Decomposition:
    """A structured edit request: what to do (actions), to what (subjects), towards what (goals)."""

    actions: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    goals: list[str] = field(default_factory=list)
    think: str = ""

    def render(self) -> str:
        """The exact text the decomposition agent is trained to produce."""
        return render(self)

    def to_dict(self) -> dict[str, list[str]]:
        """The ground-truth encoding (no ``think``) used in exported datasets."""
        return {"actions": list(self.actions), "subjects": list(self.subjects), "goals": list(self.goals)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> Decomposition:
        """Build from a dict with keys actions/subjects/goals (``action`` is accepted too)."""
        if not isinstance(data, dict):
            raise ValueError(f"decomposition must be a dict, got {type(data).__name__}")
        actions = data.get("actions", data.get("action"))
        missing = [k for k, v in (("actions", actions), ("subjects", data.get("subjects")), ("goals", data.get("goals"))) if v is None]
        if missing:
            raise ValueError(f"decomposition is missing {missing}; keys present: {sorted(data)}")
        return cls(
            actions=_as_str_list(actions, "actions"),
            subjects=_as_str_list(data["subjects"], "subjects"),
            goals=_as_str_list(data["goals"], "goals"),
            think=str(data.get("think") or ""),
        )

    def canonicalized(self) -> Decomposition:
        """Actions mapped onto the taxonomy, duplicates dropped, order kept."""
        return Decomposition(
            actions=_dedupe([canonical_action(a) for a in self.actions if canonical_action(a)]),
            subjects=_dedupe([s.strip() for s in self.subjects if s.strip()]),
            goals=_dedupe([g.strip() for g in self.goals if g.strip()]),
            think=self.think,
        )


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _as_str_list(value, name: str) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of strings, got {type(value).__name__}")
    return [str(item) for item in value if str(item).strip()]


def render(decomposition: Decomposition) -> str:
    def encode(items: list[str]) -> str:
        return json.dumps(list(items), ensure_ascii=False)

    return (
        f"<think>{decomposition.think.strip()}</think>"
        f"<action>{encode(decomposition.actions)}</action>"
        f"<subjects>{encode(decomposition.subjects)}</subjects>"
        f"<goals>{encode(decomposition.goals)}</goals>"
    )


# ----------------------------------------------------------------------------- end of turn

# Qwen2.5-VL's chat template ends a turn with <|im_end|> and pads with <|endoftext|>. A trainer
# that decodes rollouts with skip_special_tokens=False (verl can) hands them to the reward at the
# end of a response; they are the end of the turn, not part of the answer.
END_OF_TURN_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")


# The tail of a reversed text made of those tokens and whitespace: matched from the start of the
# reversed text, it costs the length of the tail, never a search over the whole text.
_END_OF_TURN_TAIL_RE = re.compile("(?:" + "|".join(re.escape(tok[::-1]) for tok in END_OF_TURN_TOKENS) + r"|\s)*")


def strip_end_of_turn(text: str) -> str:
    """``text`` without the end-of-turn and padding tokens (``END_OF_TURN_TOKENS``), and the
    whitespace around them, at its end. Only at the end: such a token anywhere else is kept (and
    then breaks the strict format). Text that does not end in such a token is returned as is."""
    if not text.rstrip().endswith(END_OF_TURN_TOKENS):
        return text
    tail = _END_OF_TURN_TAIL_RE.match(text[::-1])
    return text[: len(text) - tail.end()]


# ----------------------------------------------------------------------------- strict check


# The C scanner behind json.loads, called directly: a fifth of json.loads' overhead per list.
_JSON_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def _strict_list(body: str) -> list[str] | None:
    """A JSON array of strings, or None."""
    body = body.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    if body[1:].lstrip()[:1] not in ('"', "]"):
        return None  # not an array of strings; spares scanning a flood of nested brackets
    try:
        value, end = _JSON_SCAN(body, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(body) or not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return value


def parse_strict(text: str) -> Decomposition | None:
    """The decomposition if ``text`` is exactly in the trained format, else None.

    Format rules: the four tags once each, in order, nothing but whitespace outside them, a
    non-empty ``<think>``, and each list a JSON array of strings. End-of-turn and padding
    tokens at the very end (``END_OF_TURN_TOKENS``) are not content and are ignored.
    """
    if not isinstance(text, str):
        return None
    text = strip_end_of_turn(text)
    # Plain string scanning: this runs on every RL rollout, and is several times faster than a
    # regex with lazy groups over a long <think>.
    bodies = []
    pos = 0
    for tag in TAGS:
        start = pos
        if not text.startswith(_OPEN[tag], start):  # most answers have no whitespace between tags
            start = _WHITESPACE.match(text, pos).end()
            if not text.startswith(_OPEN[tag], start):
                return None
        start += len(_OPEN[tag])
        end = text.find(_CLOSE[tag], start)
        if end < 0:
            return None
        body = text[start:end]
        if "<" in body and any(tag_string in body for tag_string in _TAG_STRINGS):
            return None  # a tag repeated or nested inside another body
        bodies.append(body)
        pos = end + len(_CLOSE[tag])
    if pos != len(text) and text[pos:].strip():
        return None
    think = bodies[0].strip()
    if not think:
        return None
    lists = [_strict_list(body) for body in bodies[1:]]
    if any(items is None for items in lists):
        return None
    actions, subjects, goals = lists
    return Decomposition(actions=actions, subjects=subjects, goals=goals, think=think)


def check_format(text: str) -> bool:
    return parse_strict(text) is not None


# ----------------------------------------------------------------------------- tolerant parse


class DecompositionParseError(ValueError):
    """The text holds no recoverable decomposition; ``text`` keeps the raw model output."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


@dataclass
class ParseResult:
    decomposition: Decomposition
    repairs: list[str]
    # List tags absent from the text (their lists are empty because nothing was said, not
    # because the model said "none"): the reward scores such a component 0.
    missing: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.repairs


_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
# Python literals longer than this are not decomposition lists; literal_eval costs ~2 µs a character.
_LITERAL_EVAL_LIMIT = 4096

# Tags as a model may write them: any case, up to 16 whitespace characters inside, the plural
# <actions>. A "/" or the tag name separates the whitespace runs, so no two quantifiers compete
# for the same characters, and each run is bounded: a match attempt at a "<" costs a constant,
# and every search below is linear in the text for any input (rollouts at temperature 1.0 end
# in floods of tags, brackets and newlines). The parser runs a fixed number of searches per
# response, never one per tag occurrence.
_TAG_NAMES = TAGS + ("actions",)
_WS = r"\s{0,16}"  # whitespace inside a tag, bounded: a search never rescans a long run per "<"
_OPEN_RE = {tag: re.compile(rf"<{_WS}{tag}{_WS}>", re.IGNORECASE) for tag in _TAG_NAMES}
_ANY_TAG_RE = re.compile(rf"<{_WS}(/{_WS})?(think|actions?|subjects|goals){_WS}>", re.IGNORECASE)


# A tag holds its name, and at most this many characters ("<", whitespace, "/", whitespace) come
# before the name. So a tag search may start just before the first occurrence of a name, found
# with str.find on the lower-cased text: a flood of "<" with no name in it then costs one fast
# scan instead of a regex match attempt per "<".
_NAMES = ("think", "action", "subjects", "goals")  # "action" also finds "actions"
_MAX_BEFORE_NAME = 34


def _search_from_name(pattern: re.Pattern, text: str, lowered: str | None, pos: int = 0,
                      names: tuple[str, ...] = _NAMES) -> re.Match | None:
    """``pattern.search(text, pos)`` for a tag pattern naming one of ``names``, skipping ahead."""
    if lowered is None:  # lower-casing changed the length: its indices are not the text's
        return pattern.search(text, pos)
    hits = [index for index in (lowered.find(name, pos) for name in names) if index >= 0]
    return pattern.search(text, max(pos, min(hits) - _MAX_BEFORE_NAME)) if hits else None


def _open_tag(text: str, lowered: str | None, name: str) -> re.Match | None:
    return _search_from_name(_OPEN_RE[name], text, lowered, names=(name,))


def _tag_bodies(text: str, repairs: list[str]) -> dict[str, str | None]:
    """Each tag's body: from its first opening to the next tag of any kind, which is its closing
    tag when the answer is well formed. A body that runs into another tag (an unclosed tag) is
    cut there, and one never closed (a response cut at max length) runs to the end of the text.
    Two searches per tag."""
    bodies: dict[str, str | None] = dict.fromkeys(TAGS)
    if "<" not in text:
        return bodies
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = None
    names = dict(zip(TAGS, TAGS, strict=True))
    if not _open_tag(text, lowered, ACTION) and _open_tag(text, lowered, "actions"):
        names[ACTION] = "actions"
        repairs.append("renamed <actions> to <action>")
    odd = False
    for tag, name in names.items():
        opening = _open_tag(text, lowered, name)
        if opening is None:
            continue
        following = _search_from_name(_ANY_TAG_RE, text, lowered, opening.end())
        closes = following is not None and following.group(1) is not None and following.group(2).lower() in (tag, name)
        if following is not None and not closes:
            repairs.append(f"{tag}: closed an unclosed tag")
        bodies[tag] = text[opening.end():following.start() if following is not None else len(text)]
        written = (opening.group(0), following.group(0)) if closes else (opening.group(0),)
        odd = odd or (name == tag and any(w not in (f"<{tag}>", f"</{tag}>") for w in written))
    if odd:
        repairs.append("normalised tag case or spacing")
    return bodies


def _first_items(values, *, unquote: bool = False, limit: int = MAX_LIST_ITEMS + 1) -> list[str]:
    """Up to ``limit`` non-empty items, stripped (and, for pieces split from free text, without
    the quotes around them); stops reading once it has them, so a flood of thousands of items
    costs no more than ``limit`` of them (one over the cap tells the reward the list is degenerate).
    Items of a JSON or Python list keep their quote characters: they are the item's own."""
    items = (str(value).strip() for value in values)
    if unquote:
        items = (item.strip("\"'").strip() for item in items)
    return list(islice((item for item in items if item), limit))


def _tolerant_list(body: str, tag: str, repairs: list[str]) -> list[str]:
    body = body.strip()
    fenced = FENCE_RE.search(body)
    if fenced:
        body = fenced.group("body").strip()
        repairs.append(f"{tag}: removed code fence")
    strict = _strict_list(body)
    if strict is not None:
        return _first_items(strict)
    if body.startswith("[") and body.endswith("]"):
        value = None
        if len(body) <= _LITERAL_EVAL_LIMIT:  # a Python list literal, as models sometimes write one
            try:
                value = ast.literal_eval(body)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        if isinstance(value, (list, tuple)):
            repairs.append(f"{tag}: read a non-JSON list literal")
            return _first_items(value)
        body = body[1:-1]
        repairs.append(f"{tag}: read a malformed bracketed list")
    elif body.startswith("["):
        body = body[1:]
        repairs.append(f"{tag}: read an unterminated list")
    if not body:
        return []
    lines = list(islice((line for line in body.splitlines() if line.strip()), MAX_LIST_ITEMS + 1))
    if len(lines) > 1:
        items = [_BULLET_RE.sub("", line) for line in lines]
        repairs.append(f"{tag}: split a line-separated list")
    else:
        items = body.split(",", MAX_LIST_ITEMS + 1) if "," in body else [body]
        repairs.append(f"{tag}: split a comma-separated list" if len(items) > 1 else f"{tag}: wrapped a bare item")
    return _first_items(items, unquote=True)


def parse(text: str) -> ParseResult:
    """Read a decomposition from model output, repairing near-misses.

    Repairs: code fences around the answer or a list, tag case and inner spaces (``< Action >``),
    a missing or empty ``<think>``, an unclosed last tag, comma- or line-separated or
    Python-literal lists, a plural ``<actions>`` tag. End-of-turn tokens at the end are not
    content (``strip_end_of_turn``). Raises ``DecompositionParseError`` when no action, subject
    or goal can be found at all. Time is linear in ``len(text)`` for any input.
    """
    if not isinstance(text, str):
        raise DecompositionParseError(f"expected text, got {type(text).__name__}", repr(text))
    strict = parse_strict(text)
    if strict is not None:
        return ParseResult(strict, [])

    repairs: list[str] = []
    work = strip_end_of_turn(text)
    if "```" in work and not _OPEN_RE[ACTION].search(work):
        fenced = FENCE_RE.search(work)
        if fenced:
            work = fenced.group("body")
            repairs.append("removed code fence around the answer")
    bodies = _tag_bodies(work, repairs)
    if all(bodies[tag] is None for tag in LIST_TAGS):
        raise DecompositionParseError("no <action>, <subjects> or <goals> tag found", text)
    think = (bodies[THINK] or "").strip()
    if bodies[THINK] is None:
        repairs.append("think: missing")
    lists = {}
    missing = tuple(tag for tag in LIST_TAGS if bodies[tag] is None)
    for tag in LIST_TAGS:
        if bodies[tag] is None:
            repairs.append(f"{tag}: missing")
            lists[tag] = []
        else:
            lists[tag] = _tolerant_list(bodies[tag], tag, repairs)
    if not repairs:
        repairs.append("extra text around the tags")
    decomposition = Decomposition(actions=lists[ACTION], subjects=lists[SUBJECTS], goals=lists[GOALS], think=think)
    return ParseResult(decomposition, repairs, missing)
