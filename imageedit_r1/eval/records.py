"""What the evaluation runner writes: the items, the edit and judgment records, failures and the summary.

An edit record is keyed by (benchmark, sample, method config hash) and holds the method's labels,
the request and, when it worked, the image paths and hash; a judgment record adds the judge, its
model, prompt hash and settings, and the scores. A failure never becomes a score: its record has
``status: "failed"``, an ``error_kind`` (``classify_failure``) and whether the next run retries it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from imageedit_r1.agents.judge import JudgeError
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import MethodConfig
from imageedit_r1.images import ImageLoadError
from imageedit_r1.refusals import find_refusal, refusal_record

RAW_REPLY_LIMIT = 4000


@dataclass
class Item:
    benchmark: str
    sample: Any
    method: MethodConfig

    @property
    def sample_id(self) -> str:
        return str(self.sample.id)


@dataclass
class Summary:
    plans: Counter = field(default_factory=Counter)  # made, failed (each shared by its agents' methods)
    edits: Counter = field(default_factory=Counter)
    judgments: Counter = field(default_factory=Counter)
    failure_kinds: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    setup_errors: list[str] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)  # Ray: retired replicas (node, GPU, why), quarantined items

    def lines(self) -> list[str]:
        out = [
            *(["plans:      " + ", ".join(f"{k} {v}" for k, v in sorted(self.plans.items()))] if self.plans else []),
            "edits:      " + ", ".join(f"{k} {v}" for k, v in sorted(self.edits.items())) if self.edits else "edits: none",
            "judgments:  " + ", ".join(f"{k} {v}" for k, v in sorted(self.judgments.items()))
            if self.judgments else "judgments: none",
        ]
        if self.failure_kinds:
            out.append("failures:   " + ", ".join(f"{k} {v}" for k, v in sorted(self.failure_kinds.items())))
        out.append(f"tokens:     {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion")
        cost = f"cost:       ${self.cost_usd:,.4f}"
        if self.unpriced_calls:
            cost += f" (+ {self.unpriced_calls} calls with no price in the config)"
        out.append(cost)
        out.extend(f"not run:    {error}" for error in self.setup_errors)
        out.extend(f"replicas:   {note}" for note in self.replicas)
        return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- failures


def classify_failure(exc: BaseException) -> tuple[str, bool]:
    """(kind, retry on the next run?) for an exception raised while editing or judging.

    A refusal (a safety block or a declining model, however deeply wrapped: a pipeline failure
    carries the editor's refusal as its cause) is ``refusal`` and permanent: the same input gets
    the same answer, so only ``retry_failed`` pays for it again.
    """
    from imageedit_r1.retry import RetriesExhausted

    if getattr(exc, "failure_kind", None):  # errors that know their kind (a lost Ray replica)
        return exc.failure_kind, bool(getattr(exc, "retryable", True))
    if find_refusal(exc) is not None:
        return "refusal", False
    if isinstance(exc, JudgeError):
        return exc.kind, False
    if isinstance(exc, RetriesExhausted):
        return "api_unavailable", True
    if isinstance(exc, (ImageLoadError, FileNotFoundError)):
        return "input_error", False
    try:
        from imageedit_r1.backends import BackendError
    except ImportError:  # backends not installed: only the generic kinds apply
        BackendError = ()  # noqa: N806
    if BackendError and isinstance(exc, BackendError):
        return "api_error", False
    return "error", True


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """The fields a failed record gets: status, error_kind, error, retryable (and the refusal)."""
    kind, retryable = classify_failure(exc)
    fields: dict[str, Any] = {"status": "failed", "error_kind": kind, "error": f"{type(exc).__name__}: {exc}",
                              "retryable": retryable}
    if kind == "refusal":
        fields["refusal"] = refusal_record(exc)
    return fields


# ----------------------------------------------------------------------------- records


def edit_record(item: Item) -> dict[str, Any]:
    """The fields every edit record starts with: which item and which method."""
    method = item.method
    return {"benchmark": item.benchmark, "sample_id": item.sample_id, "method": method.name,
            "method_label": method.label or method.name, "method_group": method.group,
            "method_hash": method.config_hash(), "request": item.sample.request}


def judgment_record(item: Item, judge: JudgeConfig, settings: dict[str, Any], prompt_sha256: str,
                    edited_sha256: str | None) -> dict[str, Any]:
    """The fields every judgment record starts with: the item, the judge and what it was shown."""
    record = edit_record(item)
    request = record.pop("request")
    record.update(judge=judge.name, judge_backend=judge.backend, judge_model=judge.model,
                  prompt_sha256=prompt_sha256, judge_settings=settings, request=request,
                  edited_sha256=edited_sha256)
    return record


def scored_fields(judgment: Any) -> dict[str, Any]:
    """The fields a scored judgment record gets from a ``Judgment``."""
    scores = judgment.scores
    return {"status": "scored", "fulfillment": scores.fulfillment, "quality": scores.quality,
            "preservation": scores.preservation, "total": scores.total, "reasoning": scores.reasoning,
            "parsed_from": scores.parsed_from, "notes": scores.notes, "served_model": judgment.served_model,
            "calls": judgment.calls, "raw": judgment.raw[:RAW_REPLY_LIMIT]}
