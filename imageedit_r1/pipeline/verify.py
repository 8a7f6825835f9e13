"""The verify stage: score each edit against the request and the plan, refine within a budget,
keep the best.

Attempt 1 is the pipeline's own edit (candidate 1 uses the run's seed, so it is exactly the edit
the plain pipeline makes). Each candidate is scored by the ``Verifier``; the loop stops as soon as
one reaches ``threshold``. Otherwise the next attempt is built by the strategy:

- ``seed``: the same plan on the original image with new seeds;
- ``replan``: a revised ``Plan`` from the best edit's critique: the sub-requests it names as
  unmet (``Plan.set_sub_requests(..., by="verifier")``, so the plan's log says who changed what
  and why), applied to the best edit so far, with the seeds of attempt 1;
- ``both``: the revised plan with new seeds.

When the critique names no unmet sub-request (or names all of them), there is nothing to revise
and the attempt takes a new seed on the original instead; the trace says so.

Candidate ``k`` of a run (counted over attempts from 0) uses seed ``base + 1000·k``; step ``i`` of
a multi-turn plan adds ``i``. Where the editor can batch (``editor.can_batch``, the diffusers
editors), an attempt's candidates are one batched editor call.

Budgets: ``max_calls`` (editor calls + verifier asks; a batched editor call counts once),
``max_seconds`` and ``max_cost_usd`` (verifier tokens and editor images at ``prices``). Attempt 1
always runs; a later attempt starts only when its estimate fits what is left: its calls exactly,
its seconds and cost as the mean of the attempts so far.

A verifier that fails or refuses stops the loop; the result is the best verified edit so far, or
attempt 1's first edit when none was verified, and the trace records the failure. An editor that
fails on a later attempt stops the loop the same way; on attempt 1 its error is the run's error.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imageedit_r1.agents.asking import ask_log_of
from imageedit_r1.agents.verifier import Verdict, Verifier, failure_record
from imageedit_r1.costs import cost_usd
from imageedit_r1.images import image_sha256
from imageedit_r1.pipeline.config import VerifyConfig
from imageedit_r1.pipeline.plan import Plan

SEED_STRIDE = 1000

STOP_REASONS = {
    "threshold": "an edit reached the threshold",
    "attempts": "no attempts left",
    "budget_calls": "the next attempt would exceed max_calls",
    "budget_seconds": "the next attempt would exceed max_seconds",
    "budget_cost": "the next attempt would exceed max_cost_usd",
    "verifier_failed": "the verifier failed; the best edit so far is kept",
    "verifier_refused": "the verifier refused; the best edit so far is kept",
    "editor_failed": "the editor failed on a refinement; the best edit so far is kept",
}


@dataclass
class AttemptPlan:
    """What one attempt asks of the editor (a ``Plan``), and on which image."""

    plan: Plan
    source: str = "original"  # "original" or "attempt A candidate C" (the edit it refines)
    changed_by: str | None = None  # "verifier" when revised from a critique
    change: str = ""

    @property
    def instructions(self) -> list[str]:
        return self.plan.instructions

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.plan.mode, "sub_requests": list(self.plan.sub_requests),
                "instructions": self.instructions, "source": self.source, "changed_by": self.changed_by,
                "change": self.change, "edits": copy.deepcopy(self.plan.edits)}


@dataclass
class Candidate:
    attempt: int  # 1-based
    index: int  # 1-based within the attempt
    image: Any
    seed: int
    verdict: Verdict | None = None

    @property
    def label(self) -> str:
        return f"attempt {self.attempt} candidate {self.index}"


@dataclass
class Spend:
    editor_calls: int = 0
    verifier_calls: int = 0
    images: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0

    @property
    def calls(self) -> int:
        return self.editor_calls + self.verifier_calls

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "editor_calls": self.editor_calls, "verifier_calls": self.verifier_calls,
                "images": self.images, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 4),
                "cost_usd": round(self.cost_usd, 6)}


def edit_candidates(editor, source, instructions: list[str], seeds: list[int]) -> tuple[list[Any], int, bool]:
    """One attempt's edits: (images, editor calls, batched?). One call for all candidates where the
    editor can batch and the plan is one instruction; else candidate by candidate, step by step."""
    if len(seeds) > 1 and len(instructions) == 1 and getattr(editor, "can_batch", False):
        return list(editor.edit_batch(source, instructions[0], seeds=seeds)), 1, True
    images = []
    for seed in seeds:
        current = source
        for step, instruction in enumerate(instructions):
            current = editor.edit(current, instruction, seed=seed + step)
        images.append(current)
    return images, len(seeds) * len(instructions), False


class RefineLoop:
    """Runs the verify stage for one image; ``clock`` (seconds) is injectable for tests."""

    def __init__(self, config: VerifyConfig, verifier: Verifier, editor, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.verifier = verifier
        self.editor = editor
        self.clock = clock

    # ------------------------------------------------------------------ budget

    def _attempt_calls(self, plan: AttemptPlan) -> int:
        n = self.config.candidates
        batched = n > 1 and len(plan.instructions) == 1 and getattr(self.editor, "can_batch", False)
        return (1 if batched else n * len(plan.instructions)) + n  # + one verifier ask per candidate

    def _over_budget(self, plan: AttemptPlan, spend: Spend, attempts: list[dict[str, Any]], elapsed: float) -> str | None:
        config = self.config
        if config.max_calls is not None and spend.calls + self._attempt_calls(plan) > config.max_calls:
            return "budget_calls"
        if config.max_seconds is not None:
            mean = sum(a["seconds"] for a in attempts) / len(attempts)
            if elapsed + mean > config.max_seconds:
                return "budget_seconds"
        if config.max_cost_usd is not None:
            mean = sum(a["cost_usd"] for a in attempts) / len(attempts)
            if spend.cost_usd + mean > config.max_cost_usd:
                return "budget_cost"
        return None

    def _cost(self, prompt_tokens: int = 0, completion_tokens: int = 0, images: int = 0) -> float:
        return cost_usd(self.config.prices, prompt_tokens, completion_tokens, images)

    # ------------------------------------------------------------------ strategy

    def _seeds(self, base_seed: int, first_candidate: int) -> list[int]:
        return [base_seed + SEED_STRIDE * (first_candidate + c) for c in range(self.config.candidates)]

    def _next(self, first: AttemptPlan, checked: list[str], best: Candidate,
              attempt: int) -> tuple[AttemptPlan, str, int]:
        """(plan, strategy used, index of its first candidate's seed) for the attempt after ``attempt``."""
        fresh_seeds = attempt * self.config.candidates
        if self.config.strategy == "seed":
            return first, "seed", fresh_seeds
        unmet = best.verdict.unmet if best.verdict else None
        if not unmet or len(unmet) >= len(checked):
            why = "the critique names no unmet sub-request" if not unmet else "every sub-request is unmet"
            return AttemptPlan(first.plan, change=f"{why}: a new seed instead"), "seed", fresh_seeds
        change = (f"refine {best.label} with the unmet sub-request(s) {[i + 1 for i in unmet]}: "
                  f"{best.verdict.critique[:300]}")
        revised = copy.deepcopy(first.plan)
        revised.set_sub_requests([checked[i] for i in unmet], by="verifier", reason=change)
        plan = AttemptPlan(revised, source=best.label, changed_by="verifier", change=change)
        if self.config.strategy == "replan":
            return plan, "replan", 0
        return plan, "both", fresh_seeds

    # ------------------------------------------------------------------ the loop

    def run(self, original, plan: Plan, base_seed: int, trace) -> Any:
        """Edit ``original`` by ``plan``, verify and refine; return the chosen image and write
        ``trace['verify']``. The verifier checks every edit against the request and the plan's
        sub-requests (the request itself when the plan has none).

        ``trace`` is the run's ``Trace``: editor and verifier seconds go to its ``edit`` and
        ``verify`` stages, every editor call's seed to ``seeds``, failures to ``errors``.
        """
        config = self.config
        request = plan.request
        sub_requests = list(plan.sub_requests) or [request]
        first = AttemptPlan(plan)
        record: dict[str, Any] = {
            "rubric": config.rubric, "threshold": config.threshold, "strategy": config.strategy,
            "max_attempts": config.attempts, "candidates": config.candidates,
            "budget": {"max_calls": config.max_calls, "max_seconds": config.max_seconds,
                       "max_cost_usd": config.max_cost_usd},
            "verifier": {"model": self.verifier.model, "backend": getattr(self.verifier.backend, "name", None),
                         "prompt_sha256": self.verifier.prompt_sha256()},
            "attempts": [], "best": None, "result": None, "stop_reason": None, "stop_detail": "",
        }
        trace.verify = record
        spend = Spend()
        started = self.clock()
        first_candidate: Candidate | None = None
        best: Candidate | None = None
        attempt_plan, strategy, seed_index = first, "first", 0
        attempt = 1
        stop: str | None = None
        while True:
            attempt_start = self.clock()
            entry: dict[str, Any] = {"attempt": attempt, "strategy": strategy, "plan": attempt_plan.to_dict(),
                                     "candidates": []}
            record["attempts"].append(entry)
            seeds = self._seeds(base_seed, seed_index)
            entry["seeds"] = seeds
            source = original if attempt_plan.source == "original" else best.image
            try:
                with trace.stage("edit"):
                    images, editor_calls, batched = edit_candidates(self.editor, source, attempt_plan.instructions, seeds)
            except Exception as exc:
                if attempt == 1:
                    raise  # the run's own edit failed: the pipeline's failure policy applies
                entry.update(error={"type": type(exc).__name__, "message": str(exc)})
                trace.errors.append({"stage": "verify", "type": type(exc).__name__,
                                        "message": f"editor failed on attempt {attempt}: {exc}"})
                stop = "editor_failed"
                self._close_attempt(entry, attempt_start, 0)
                break
            for seed in seeds:
                trace.seeds.extend(seed + step for step in range(len(attempt_plan.instructions)))
            spend.editor_calls += editor_calls
            spend.images += len(images)
            entry.update(batched=batched, editor_calls=editor_calls)
            attempt_cost = self._cost(images=len(images))
            candidates = [Candidate(attempt, i + 1, image, seed) for i, (image, seed) in enumerate(zip(images, seeds, strict=True))]
            if first_candidate is None:
                first_candidate = candidates[0]
            for position, candidate in enumerate(candidates):
                item: dict[str, Any] = {"candidate": candidate.index, "seed": candidate.seed,
                                        "image_sha256": image_sha256(candidate.image), "status": "not verified"}
                entry["candidates"].append(item)
                if stop is not None:  # every candidate stays in the trace, checked or not
                    item["why"] = ("an earlier candidate reached the threshold" if stop == "threshold"
                                   else "the verifier failed on an earlier candidate")
                    continue
                asks = None
                if config.max_calls is not None:
                    # Leave one ask for every candidate after this one.
                    asks = max(1, config.max_calls - spend.calls - (len(candidates) - position - 1))
                try:
                    with trace.stage("verify"):
                        verdict = self.verifier(original, candidate.image, request, sub_requests, max_asks=asks)
                except Exception as exc:
                    failure = failure_record(exc)
                    log = ask_log_of(exc)
                    spend.verifier_calls += log.asks if log else 1
                    if log is not None:
                        spend.prompt_tokens += log.prompt_tokens
                        spend.completion_tokens += log.completion_tokens
                        attempt_cost += self._cost(log.prompt_tokens, log.completion_tokens)
                    item.update(status="failed", error=failure)
                    trace.errors.append({"stage": "verify", **failure})
                    stop = "verifier_refused" if failure["kind"] == "refusal" else "verifier_failed"
                    continue
                candidate.verdict = verdict
                spend.verifier_calls += verdict.calls
                spend.prompt_tokens += verdict.prompt_tokens
                spend.completion_tokens += verdict.completion_tokens
                attempt_cost += self._cost(verdict.prompt_tokens, verdict.completion_tokens)
                item.update(status="verified", score=round(verdict.score, 4), verdict=verdict.to_dict())
                if best is None or verdict.score > best.verdict.score:
                    best = candidate
                if verdict.score >= config.threshold:
                    stop = "threshold"
            spend.cost_usd += attempt_cost
            self._close_attempt(entry, attempt_start, attempt_cost)
            if stop is not None:
                break
            if attempt >= config.attempts:
                stop = "attempts"
                break
            attempt_plan, strategy, seed_index = self._next(first, sub_requests, best, attempt)
            stop = self._over_budget(attempt_plan, spend, record["attempts"], self.clock() - started)
            if stop is not None:
                break
            attempt += 1

        chosen = best or first_candidate
        record["stop_reason"] = stop
        record["stop_detail"] = STOP_REASONS[stop]
        if best is not None:
            record["best"] = {"attempt": best.attempt, "candidate": best.index, "score": round(best.verdict.score, 4),
                              "image_sha256": image_sha256(best.image)}
        record["result"] = {"attempt": chosen.attempt, "candidate": chosen.index, "seed": chosen.seed,
                            "why": "the best verified edit" if best is not None
                            else "no edit was verified: the first edit is kept"}
        spend.seconds = self.clock() - started
        record["spent"] = spend.to_dict()
        return chosen.image

    def _close_attempt(self, entry: dict[str, Any], attempt_start: float, cost: float) -> None:
        seconds = self.clock() - attempt_start
        entry.update(seconds=round(seconds, 4), cost_usd=round(cost, 6))

