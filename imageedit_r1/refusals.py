"""Refusals: a provider or model declined the work on policy grounds, told apart from failures.

A refusal (a safety block, a content-policy rejection, a model that declines) is not worth another
attempt: the same input gets the same answer. Every refusal exception of the project (the hosted
editors' ``EditRefusedError``, the chat backends' ``RefusalError``, the judge's ``JudgeRefusal``)
is a ``Refusal`` and carries ``reason``: the provider's own code (``IMAGE_SAFETY``,
``PROHIBITED_CONTENT``, ``moderation_blocked``, ``content_filter``, ...) or ``declined`` when the
model only said so in words. ``find_refusal`` finds one however deeply it was wrapped (a pipeline
failure, a retry wrapper), so the pipeline trace and the evaluation records can say ``refusal``
with that reason.
"""

from __future__ import annotations

from typing import Any

DECLINED = "declined"  # the model declined in its own words; no provider code


class Refusal(Exception):
    """Mixed into every refusal exception; ``reason`` is the provider's code for the block."""

    reason: str = DECLINED


def find_refusal(exc: BaseException | None) -> Refusal | None:
    """The ``Refusal`` behind ``exc``: itself, its cause (``raise ... from``), or a retry wrapper's last error."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, Refusal):
            return current
        # Only explicit wrapping (``raise ... from refusal``, a retry wrapper's last error): an
        # error merely raised while a refusal was being handled is not that refusal.
        pending += [current.__cause__, getattr(current, "last_error", None)]
    return None


def refusal_record(exc: BaseException | None) -> dict[str, Any] | None:
    """``{"reason", "message"}`` of the refusal behind ``exc``, or None when it is no refusal."""
    refusal = find_refusal(exc)
    if refusal is None:
        return None
    return {"reason": refusal.reason or DECLINED, "message": str(refusal)[:1000]}
