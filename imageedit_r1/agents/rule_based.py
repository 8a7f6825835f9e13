"""A rule-based decomposition: the fallback when the decomposition agent's answer is unusable.

It never drops an operation: every clause of the request ends up in a goal. A clause that opens
with an edit verb of the taxonomy ("remove", "make", "change", ...) starts an operation of its
own; any other clause ("and possibly the hair", "white") extends the operation before it, or
starts one when it comes first.
"""

from __future__ import annotations

import re

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.request_text import clean_request
from imageedit_r1.taxonomy import ACTIONS, canonical_action

_CLAUSE_SPLIT = re.compile(r"[.;!?\n]+|,\s*(?:and\s+|then\s+)?|\s+(?:and|then|also)\s+(?=[a-z]+\b)", re.IGNORECASE)
_LEADING_FILLER = re.compile(
    r"^(?:please|also|and|then|can you|could you|can someone|could someone|would you|i want you to|"
    r"i'd like you to|i would like you to)\s+",
    re.IGNORECASE,
)


def keyword_decomposition(request: str) -> Decomposition:
    """A rule-based decomposition, one goal per operation of the request (see the module docstring);
    ``actions`` are the operations' taxonomy labels, in order, without repeats. A fallback when
    the agent's answer is unusable, not a substitute for the trained agent."""
    operations = keyword_operations(request)
    actions = [label for label, _ in operations]
    goals = [text for _, text in operations]
    return Decomposition(actions=list(dict.fromkeys(actions)), subjects=[], goals=goals, think="keyword fallback")


def keyword_operations(request: str) -> list[tuple[str, str]]:
    """(taxonomy label, the operation's words) for every operation of the request, in order (see
    the module docstring); never empty."""
    request = clean_request(request)
    actions: list[str] = []
    goals: list[str] = []
    for clause in _CLAUSE_SPLIT.split(request):
        clause = (clause or "").strip()
        while True:  # "please also remove ..." has two fillers
            shorter = _LEADING_FILLER.sub("", clause)
            if shorter == clause:
                break
            clause = shorter
        if not clause:
            continue
        label = canonical_action(clause)
        if label in ACTIONS or not goals:
            actions.append(label if label in ACTIONS else "Transformation")
            goals.append(clause)
        else:
            goals[-1] = f"{goals[-1]} and {clause}"
    if not goals:
        actions, goals = ["Transformation"], [request.strip()]
    return list(zip(actions, goals, strict=True))
