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
        yield value
        position = start + 1 if nested else end
