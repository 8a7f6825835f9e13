"""JSON inside model text: a code fence around the answer, fenced blocks, values in prose.

Models asked for JSON often wrap it in a Markdown code fence (```json … ```) or put prose
around it. These helpers find the JSON; deciding which value is the answer, and how strict to
be about it, stays with each reader (a strict reader only ``unfence``-s, a tolerant one also
looks at ``fenced_blocks`` and ``embedded_json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# A Markdown code fence with an optional language tag; the group "body" is its content.
# The language tag and the whitespace after it are taken atomically (a lookahead, then a
# backreference to what it saw), so that an unclosed fence over a long tail scans it once
# instead of once per character: model output is adversarial input to every parser here.
FENCE_RE = re.compile(r"```(?=([a-zA-Z]*\s{0,16}))\1(?P<body>.*?)```", re.DOTALL)


def unfence(text: str) -> str:
    """``text`` stripped, or the body of the one code fence that wraps all of it."""
    body = text.strip()
    fenced = FENCE_RE.fullmatch(body)
    return fenced.group("body").strip() if fenced else body


def fenced_blocks(text: str) -> list[str]:
    """The bodies of every code fence in ``text``, in order, stripped."""
    return [match.group("body").strip() for match in FENCE_RE.finditer(text)]


def embedded_json(text: str, *, nested: bool = False) -> Iterator[Any]:
    """Each JSON object or array written in ``text`` (prose around it is fine), in order.

    ``nested=False`` yields only outermost values (scanning resumes after each one);
    ``nested=True`` also yields the objects and arrays inside them.
    """
    decoder = json.JSONDecoder()
    position = 0
    while True:
        starts = [index for index in (text.find("{", position), text.find("[", position)) if index >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        except RecursionError:  # nested deeper than the stack: no value, and none inside it either
            position = _past_brackets(text, start)
            continue
        yield value
        position = start + 1 if nested else end


def _past_brackets(text: str, start: int) -> int:
    """The index after the bracket that closes the one at ``start`` (the end of ``text`` if none),
    counting brackets only: skipping a degenerate region in one linear pass instead of retrying
    the decoder at each of its brackets."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


# ----------------------------------------------------------------------------- lenient literals

# Open models asked for JSON without a grammar also answer in near-JSON: a Python dict literal
# (single quotes, True/None), a trailing comma, bare keys, or JSON encoded once more as a string.
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_BARE_KEY = re.compile(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_ \-]*?)\s*:(?!//)')


def lenient_literal(text: str) -> Any:
    """The value of one dict or list literal written in a near-JSON way, or None when it is not one.

    Tried in order: JSON; a Python literal (``ast.literal_eval``: single quotes, ``True``, tuples);
    JSON with trailing commas removed and bare keys quoted. A JSON string that holds JSON is
    decoded once more. Only dicts and lists count: a bare number or word is never a literal here.
    """
    import ast

    body = text.strip()
    if not body or body[0] not in "{[\"'":
        return None
    value: Any = None
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):  # nesting deeper than the stack: no literal here
        try:
            value = ast.literal_eval(body)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            relaxed = _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2).strip()}":', _TRAILING_COMMA.sub(r"\1", body))
            try:
                value = json.loads(relaxed)
            except (json.JSONDecodeError, RecursionError):
                return None
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        return lenient_literal(value)
    if isinstance(value, tuple):
        value = list(value)
    return value if isinstance(value, (dict, list)) else None


def bracketed_spans(text: str) -> Iterator[str]:
    """Every balanced ``{...}`` / ``[...]`` span of ``text`` (outer and nested, in order of their
    opening), skipping brackets inside single- or double-quoted strings."""
    for start, end in bracketed_span_bounds(text):
        yield text[start:end]


def bracketed_span_bounds(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each span ``bracketed_spans`` yields, in the same order."""
    openers: list[int] = []
    quote: str | None = None
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'" and openers:
            # An apostrophe in prose ("don't") is no string: only quotes inside a bracket count,
            # and only where a literal could open one (after a bracket, a comma, a colon or a space).
            before = text[index - 1] if index else " "
            if char == '"' or before in "{[,: \n\t":
                quote = char
        elif char in "{[":
            openers.append(index)
        elif char in "}]" and openers:
            start = openers.pop()
            if (text[start], char) in (("{", "}"), ("[", "]")):
                spans.append((start, index + 1))
        index += 1
    return sorted(spans)


def lenient_literals(text: str) -> Iterator[Any]:
    """Each dict or list literal in ``text`` that ``lenient_literal`` reads (outer and nested)."""
    for span in bracketed_spans(text):
        value = lenient_literal(span)
        if value is not None:
            yield value
