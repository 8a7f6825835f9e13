"""How the agents plan a batch of requests: decompose them all, sequence them all, apply fallbacks.

``plan_requests(pipeline, requests)`` is what ``ImageEditR1.plan_batch`` (and so ``plan``) runs.
Each agent stage is one batched call for every request still being planned (the agents'
``run_batch``: one ``chat_batch`` per round, re-asks included), so N requests cost two batched
decodes, not 2N single ones. Every request ends on its own: a ``Plan``, or its own error (an
``EditFailed`` with its trace when an agent failed under the ``error`` policy); the configured
fallbacks apply per request. Only an agent that cannot start here (weights, key, package) stops
the whole batch: every request would hit it alike.

A plan's trace says how it was made: ``planning.batch`` is how many requests were planned
together, and a stage's ``seconds`` are those of the batched call that carried it.

``agents_identity(config)`` is what decides a plan besides its request and image: the agents'
models and settings, their prompts, the image budget and the fallbacks. Plans are shared by every
run whose agents have the same identity (``agents_key``), whatever its editor or mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imageedit_r1.agents.rule_based import keyword_decomposition
from imageedit_r1.decomposition import Decomposition, DecompositionParseError
from imageedit_r1.masking import mask
from imageedit_r1.pipeline.plan import Plan
from imageedit_r1.pipeline.trace import EditFailed, Trace
from imageedit_r1.refusals import refusal_record
from imageedit_r1.unavailable import is_unavailable

if TYPE_CHECKING:
    from imageedit_r1.pipeline.config import PipelineConfig

# ``pipe`` below is the ``ImageEditR1`` that plans: its config, its agents (built on first use),
# ``model_ids`` and ``_fail``.
Pipeline = Any

# An agent answered, but not usably (after its own bounded repair): the fallbacks apply to these only.
_UNUSABLE_ANSWER = {"DecompositionError", "DecompositionParseError", "SequencingError", "InvalidSubRequests"}
# The prompts the agents ask with: a change to either changes every plan.
AGENT_PROMPTS = ("decompose", "sequence")
# Backend options that change where or how fast an agent answers, never what it answers.
# Backends that fit images to an image budget unless told otherwise (the API backends send them as they are).
LOCAL_BUDGET_BACKENDS = ("transformers", "vllm")


def is_unusable_answer(exc: BaseException) -> bool:
    return any(cls.__name__ in _UNUSABLE_ANSWER for cls in type(exc).__mro__)


def error_record(stage: str, exc: BaseException) -> dict[str, str]:
    record = {"stage": stage, "type": type(exc).__name__, "message": str(exc)}
    refusal = refusal_record(exc)
    if refusal is not None:  # a safety block or a declining model: say so, with the provider's code
        record.update(kind="refusal", reason=refusal["reason"])
    return record


@dataclass
class Request:
    """One request being planned: its checked inputs, its trace, what the agents gave, or its error."""

    image: Any  # PIL image, loaded within the pipeline's pixel limit
    request: str  # forum tags removed
    mode: str
    trace: Trace
    decomposition: Decomposition | None = None
    sub_requests: list[str] = field(default_factory=list)
    error: Exception | None = None
    settled: bool = False  # no agent stage left: the raw request is edited, or it failed


def plan_requests(pipe: Pipeline, requests: list[Request]) -> list[Plan | Exception]:
    """A ``Plan`` or the request's own error for each request (module docs)."""
    started = time.perf_counter()
    agentic = [item for item in requests if item.mode != "original"]
    if agentic:
        _decompose(pipe, agentic)
        _sequence(pipe, [item for item in agentic if not item.settled])
        for item in agentic:
            if not item.settled:
                _check_sub_requests(pipe, item)
    seconds = time.perf_counter() - started
    plans: list[Plan | Exception] = []
    for item in requests:
        if item.error is not None:
            plans.append(item.error)
            continue
        item.trace.add_seconds("total", seconds)
        item.trace.planning = {"batch": len(agentic) or 1}
        item.trace.models = pipe.model_ids(item.mode)
        plans.append(Plan(request=item.request, mode=item.mode, decomposition=item.decomposition,
                          sub_requests=item.sub_requests, record=mask(item.trace.record())))
    return plans


def _timed(requests: list[Request], stage: str, work):
    """``work()`` once for the batch; its seconds are added to every request's ``stage``."""
    started = time.perf_counter()
    try:
        return work()
    finally:
        seconds = time.perf_counter() - started
        for item in requests:
            item.trace.add_seconds(stage, seconds)


def _agent(pipe: Pipeline, requests: list[Request], name: str):
    """The pipeline's ``decomposer`` or ``sequencer``, built (weights loaded) on first use."""
    return _timed(requests, "load_agents", lambda: getattr(pipe, name))


def _decompose(pipe: Pipeline, requests: list[Request]) -> None:
    try:
        decomposer = _agent(pipe, requests, "decomposer")
        results = _timed(requests, "decompose", lambda: _call_decomposer(
            decomposer, [item.image for item in requests], [item.request for item in requests]))
    except Exception as exc:  # noqa: BLE001 - the agent could not be built or called: every request's failure
        results = [exc] * len(requests)
    for item, result in zip(requests, results, strict=True):
        if isinstance(result, BaseException):
            policy = _fallback(pipe, item, "decompose", result, pipe.config.on_decompose_failure)
            if policy is None:
                continue
            if policy == "original":
                item.settled = True
                continue
            decomposition = keyword_decomposition(item.request)
        else:
            decomposition = result["decomposition"]
            item.trace.repairs = result["repairs"]
            item.trace.raw_outputs["decompose"] = result["raw_outputs"]
            item.trace.tokens["decompose"] = result["tokens"]
        item.decomposition = decomposition
        item.trace.decomposition = {**decomposition.to_dict(), "think": decomposition.think}


def _sequence(pipe: Pipeline, requests: list[Request]) -> None:
    if not requests:
        return
    try:
        sequencer = _agent(pipe, requests, "sequencer")
        results = _timed(requests, "sequence", lambda: _call_sequencer(
            sequencer, [item.image for item in requests], [item.decomposition for item in requests],
            [item.request for item in requests]))
    except Exception as exc:  # noqa: BLE001 - the agent could not be built or called: every request's failure
        results = [exc] * len(requests)
    for item, result in zip(requests, results, strict=True):
        trace = item.trace
        if isinstance(result, BaseException):
            policy = _fallback(pipe, item, "sequence", result, pipe.config.on_sequence_failure)
            if policy == "original":
                item.sub_requests = [item.request]
            elif policy is not None:
                from imageedit_r1.agents.sequencer import fallback_sub_requests

                item.sub_requests = fallback_sub_requests(item.decomposition)
                _note_dropped(trace, item.decomposition, item.sub_requests)
            continue
        trace.sequence_repairs = result["repairs"]
        trace.raw_outputs["sequence"] = result["raw_outputs"]
        trace.tokens["sequence"] = result["tokens"]
        item.sub_requests = [s.strip() for s in result["sub_requests"] if s and s.strip()]
        if result["fallback_used"]:
            trace.fallbacks.append({"stage": "sequence", "used": "template", "reason": "set in the sequencer"})
            _note_dropped(trace, item.decomposition, item.sub_requests)


def _check_sub_requests(pipe: Pipeline, item: Request) -> None:
    if not item.sub_requests:
        item.trace.errors.append({"stage": "sequence", "type": "EmptyPlan", "message": "no sub-requests"})
        if pipe.config.on_sequence_failure == "error":
            _fail(pipe, item, "the sequencing agent produced no sub-requests")
            return
        item.trace.fallbacks.append({"stage": "sequence", "used": "original", "reason": "no sub-requests"})
        item.sub_requests = [item.request]
    item.trace.sub_requests = item.sub_requests


def _fallback(pipe: Pipeline, item: Request, stage: str, exc: BaseException, policy: str) -> str | None:
    """Record an agent stage's failure for ``item``; return the fallback ``policy`` to apply, or None
    when the request failed (its ``EditFailed`` is ``item.error``).

    A missing model or key is raised as is (it stops the batch); any other failure than an unusable
    answer, or any failure under the ``error`` policy, fails the request.
    """
    if is_unavailable(exc):
        raise exc
    trace = item.trace
    trace.errors.append(error_record(stage, exc))
    what = {"decompose": "decomposition", "sequence": "sequencing"}[stage]
    if not is_unusable_answer(exc):
        _fail(pipe, item, f"{what} failed: {exc}", exc)
        return None
    trace.raw_outputs[stage] = _raw_outputs(exc)
    if getattr(exc, "prompt_tokens", None) is not None:
        trace.tokens[stage] = _tokens(exc)
    if policy == "error":
        _fail(pipe, item, f"{what} failed: {exc}", exc)
        return None
    trace.fallbacks.append({"stage": stage, "used": policy, "reason": str(exc)})
    return policy


def _fail(pipe: Pipeline, item: Request, message: str, cause: BaseException | None = None) -> None:
    failed: EditFailed = pipe._fail(item.trace, message)
    failed.__cause__ = cause
    item.error, item.settled = failed, True


def _note_dropped(trace: Trace, decomposition: Decomposition, sub_requests: list[str]) -> None:
    """On a fallback path, record which of the plan's operations no sub-request carries ([] when none)."""
    from imageedit_r1.agents.sequencer import dropped_operations

    trace.fallbacks[-1]["dropped"] = dropped_operations(decomposition, sub_requests)


# ----------------------------------------------------------------------------- agent adapters


def _tokens(result) -> dict[str, int]:
    return {"prompt": int(getattr(result, "prompt_tokens", 0) or 0),
            "completion": int(getattr(result, "completion_tokens", 0) or 0)}


def _raw_outputs(exc: BaseException) -> list[str]:
    raw = getattr(exc, "raw_outputs", None)
    if raw is None and getattr(exc, "text", None) is not None:
        raw = [exc.text]
    return [str(item) for item in (raw or [])]


def _each(call, *columns) -> list[Any]:
    """``call`` on each row of ``columns``; an error is that row's result."""
    results: list[Any] = []
    for row in zip(*columns, strict=True):
        try:
            results.append(call(*row))
        except Exception as exc:  # noqa: BLE001 - that request's error alone
            results.append(exc)
    return results


def _call_decomposer(decomposer, images: list, requests: list[str]) -> list[dict[str, Any] | Exception]:
    """The decomposition and what the agent reports about it (repairs, raw answers, tokens), per request.

    Agents with ``run_batch`` get the whole batch at once; others (a custom agent) one request at a time.
    """
    if hasattr(decomposer, "run_batch"):
        results = decomposer.run_batch(images, requests)
    elif hasattr(decomposer, "run"):
        results = _each(decomposer.run, images, requests)
    else:
        return _each(lambda image, request: _bare_decomposition(decomposer.decompose(image, request)), images, requests)
    return [result if isinstance(result, BaseException) else {
        "decomposition": result.decomposition, "repairs": list(result.repairs),
        "raw_outputs": list(result.raw_outputs), "tokens": _tokens(result)} for result in results]


def _bare_decomposition(decomposition) -> dict[str, Any]:
    if not isinstance(decomposition, Decomposition):
        raise DecompositionParseError(f"decomposer returned {type(decomposition).__name__}", repr(decomposition))
    return {"decomposition": decomposition, "repairs": [], "raw_outputs": [], "tokens": {}}


def _call_sequencer(sequencer, images: list, decompositions: list, requests: list[str]) -> list[dict[str, Any] | Exception]:
    if hasattr(sequencer, "run_batch"):
        results = sequencer.run_batch(images, decompositions, requests)
    elif hasattr(sequencer, "run"):
        results = _each(sequencer.run, images, decompositions, requests)
    else:
        return _each(lambda *row: _bare_sub_requests(sequencer.sequence(*row)), images, decompositions, requests)
    return [result if isinstance(result, BaseException) else {
        "sub_requests": list(result.sub_requests), "repairs": list(result.repairs),
        "raw_outputs": list(result.raw_outputs), "tokens": _tokens(result),
        "fallback_used": bool(getattr(result, "fallback_used", False))} for result in results]


def _bare_sub_requests(sub_requests) -> dict[str, Any]:
    if not isinstance(sub_requests, list) or not all(isinstance(s, str) for s in sub_requests):
        raise TypeError(f"sequencer returned {type(sub_requests).__name__}, not a list of strings")
    return {"sub_requests": sub_requests, "repairs": [], "raw_outputs": [], "tokens": {}, "fallback_used": False}


# ----------------------------------------------------------------------------- the agents' identity


def agents_identity(config: PipelineConfig) -> dict[str, Any]:
    """What decides a plan besides the request and the image: each agent's backend, model, decoding
    settings and options (the image budget among them, resolved), the agents' prompts, the fallbacks
    and the pixel limit of the input. Not the editor, the mode, the executor, timeouts or keys."""
    from imageedit_r1.prompts import prompt_sha256

    decomposer = config.decomposer
    sequencer = config.sequencer or decomposer
    return {
        "decomposer": _agent_identity(decomposer, decomposer.agent_options),
        # Without its own config the sequencer is the decomposer's model with the sequencer's defaults.
        "sequencer": _agent_identity(sequencer, sequencer.agent_options if config.sequencer is not None else {}),
        "prompts": {name: prompt_sha256(name) for name in AGENT_PROMPTS},
        "on_decompose_failure": config.on_decompose_failure,
        "on_sequence_failure": config.on_sequence_failure,
        "max_image_pixels": config.max_image_pixels,
    }


def _agent_identity(agent, agent_options: dict[str, Any]) -> dict[str, Any]:
    from imageedit_r1.endpoints import answer_settings, endpoint_options

    options = answer_settings(endpoint_options(agent))
    if agent.backend in LOCAL_BUDGET_BACKENDS or "image_budget" in options:
        options["image_budget"] = _budget(options.get("image_budget", "auto"), agent.model)
    return {"backend": agent.backend, "options": options, "temperature": agent.temperature,
            "max_tokens": agent.max_tokens, "reasks": agent.reasks, "thinking_budget": agent.thinking_budget,
            "agent_options": dict(agent_options)}


def _budget(spec: Any, model: str) -> Any:
    """The image budget the agent's images are fitted to, as numbers where it can be read here."""
    from imageedit_r1.image_budget import ImageBudgetError, resolve

    try:
        budget = resolve(spec, model)
    except (ImageBudgetError, OSError, ValueError):
        return spec
    return None if budget is None else [budget.min_pixels, budget.max_pixels]


def agents_key(config: PipelineConfig) -> str:
    """A short stable key of ``agents_identity(config)``."""
    from imageedit_r1.store import content_key

    return content_key("agents", agents_identity(config))[:16]
