"""A rule-based decomposition: the fallback when the decomposition agent's answer is unusable."""

from __future__ import annotations

import re

from imageedit_r1.decomposition import ACTIONS, Decomposition, canonical_action

_CLAUSE_SPLIT = re.compile(r"[.;!?\n]+|,\s*(?:and\s+|then\s+)?|\s+(?:and|then|also)\s+(?=[a-z]+\b)", re.IGNORECASE)
_LEADING_FILLER = re.compile(r"^(?:please|also|and|then|can you|could you|i want you to|i'd like you to)\s+", re.IGNORECASE)


def keyword_decomposition(request: str) -> Decomposition:
    """A rule-based decomposition: each clause of the request that opens with a known edit action
    becomes that action with the clause as its goal; other clauses extend the previous goal.
    A fallback when the agent's answer is unusable, not a substitute for the trained agent."""
    actions: list[str] = []
    goals: list[str] = []
    for clause in _CLAUSE_SPLIT.split(request):
        clause = _LEADING_FILLER.sub("", (clause or "").strip())
        if not clause:
            continue
        label = canonical_action(clause)
        # "Transformation" holds the catch-all verbs (make, change): an action only when nothing better came first.
        opens_action = label in ACTIONS and (label != "Transformation" or not actions)
        if opens_action:
            actions.append(label)
            goals.append(clause)
        elif goals:
            goals[-1] = f"{goals[-1]} and {clause}"
    if not actions:
        actions, goals = ["Transformation"], [request.strip()]
    return Decomposition(actions=list(dict.fromkeys(actions)), subjects=[], goals=goals, think="keyword fallback")
