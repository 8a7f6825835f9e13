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

# A Markdown code fence with an optional language tag; group 1 is the body.
FENCE_RE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)


def unfence(text: str) -> str:
    """``text`` stripped, or the body of the one code fence that wraps all of it."""
    body = text.strip()
    fenced = FENCE_RE.fullmatch(body)
    return fenced.group(1).strip() if fenced else body


def fenced_blocks(text: str) -> list[str]:
    """The bodies of every code fence in ``text``, in order, stripped."""
    return [block.strip() for block in FENCE_RE.findall(text)]


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
