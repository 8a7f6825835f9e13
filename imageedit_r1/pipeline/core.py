"""ImageEdit-R1 at inference: decomposition agent → sequencing agent → editing agent.

    pipe = ImageEditR1.from_config("examples/configs/flux_kontext.yaml")
    result = pipe(image, "Change the color of her coat and possibly hair to scarlet or copper red")
    result.image.save("out.png"); result.save_trace("out.trace.json")

    plan = pipe.plan(image, request)              # the agents only: a typed, editable Plan
    plan.edit_sub_request(1, "Recolor her hair to copper red")
    result = pipe.execute(image, plan, seed=0)    # the editor on the (changed) plan
    result.trace["plan"]                          # {"changed": True, "changes": [...], ...}

``__call__`` is ``plan`` then ``execute``.

Modes (the paper's names): ``single-turn`` (default) sends all sub-requests to the editor in one
call; ``multi-turn`` applies them one call at a time, each on the previous output; ``original``
is the baseline: the editor alone on the raw request. Every run returns a trace (request,
decomposition, parser repairs, sub-requests, the editor's instructions, model ids, seeds,
per-stage seconds, fallbacks and errors) so a person can see what each agent did.

When an agent's answer is unusable the configured fallback applies and the trace says so:
``on_decompose_failure`` is ``error`` (stop), ``keywords`` (read the actions from the request
with the action taxonomy) or ``original`` (edit with the raw request); ``on_sequence_failure``
is ``error``, ``template`` (one "action subject to goal" sub-request per subject) or ``original``.

The command line lives in ``imageedit_r1.pipeline.cli`` (``python -m imageedit_r1.pipeline --help``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from imageedit_r1.agents.rule_based import keyword_decomposition
from imageedit_r1.decomposition import Decomposition, DecompositionParseError
from imageedit_r1.endpoints import EndpointConfig
from imageedit_r1.images import image_sha256, load_image
from imageedit_r1.masking import mask
from imageedit_r1.pipeline.config import MODES, PipelineConfig, load_pipeline_config
from imageedit_r1.pipeline.plan import Plan, PlanError
from imageedit_r1.pipeline.trace import EditFailed, EditResult, Trace
from imageedit_r1.refusals import refusal_record
from imageedit_r1.request_text import clean_request
from imageedit_r1.unavailable import Unavailable, is_unavailable

# ----------------------------------------------------------------------------- helpers


def _error_record(stage: str, exc: BaseException) -> dict[str, str]:
    record = {"stage": stage, "type": type(exc).__name__, "message": str(exc)}
    refusal = refusal_record(exc)
    if refusal is not None:  # a safety block or a declining model: say so, with the provider's code
        record.update(kind="refusal", reason=refusal["reason"])
    return record


def _image_info(image) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "sha256": image_sha256(image)}


class AgentUnavailableError(RuntimeError, Unavailable):
    """An agent cannot start here (weights, an API key or a package is missing): every run would
    fail alike, so the pipeline stops instead of falling back (``imageedit_r1.unavailable``)."""


# An agent answered, but not usably (after its own bounded repair): the fallbacks apply to these only.
_UNUSABLE_ANSWER = {"DecompositionError", "DecompositionParseError", "SequencingError", "InvalidSubRequests"}


def is_unusable_answer(exc: BaseException) -> bool:
    return any(cls.__name__ in _UNUSABLE_ANSWER for cls in type(exc).__mro__)


# ----------------------------------------------------------------------------- the pipeline


class ImageEditR1:
    """The three agents chained on one image. Agents given explicitly win over the config's."""

    def __init__(
        self,
        editor=None,
        decomposer=None,
        sequencer=None,
        *,
        verifier=None,
        config: PipelineConfig | None = None,
    ) -> None:
        self.config = (config or PipelineConfig()).validate()
        self._editor = editor
        self._decomposer = decomposer
        self._sequencer = sequencer
        self._verifier = verifier
        self._backends: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config: PipelineConfig | dict | str | os.PathLike | None = None, overrides=()) -> ImageEditR1:
        """A pipeline from a ``PipelineConfig``, a mapping or a YAML path (default: the built-in
        defaults), with ``key=value`` overrides; a typo in a key is one ``ConfigError`` line."""
        from imageedit_r1.config import apply_overrides, load_config

        if isinstance(config, PipelineConfig):
            return cls(config=apply_overrides(config, list(overrides)).validate())
        if isinstance(config, dict):
            return cls(config=load_config(PipelineConfig, overrides=list(overrides), data=config).validate())
        return cls(config=load_pipeline_config(config, overrides))

    # ------------------------------------------------------------------ agents, built on first use

    def _backend(self, role: str, agent: EndpointConfig):
        from imageedit_r1.endpoints import build_endpoint, endpoint_options

        # Roles that would build the same backend share one (a local judge can be the agents' own model).
        key = json.dumps([agent.backend, endpoint_options(agent)], sort_keys=True, default=str)
        if key not in self._backends:
            try:
                self._backends[key] = build_endpoint(agent)
            except Exception as exc:
                raise AgentUnavailableError(
                    f"the {role} agent cannot start ({agent.backend} backend, model {agent.model!r}): {exc}"
                ) from exc
        return self._backends[key]

    @property
    def editor(self):
        if self._editor is None:
            from imageedit_r1.agents.editors import build_editor

            self._editor = build_editor(self.config.editor.name, **dict(self.config.editor.options))
        return self._editor

    @property
    def decomposer(self):
        if self._decomposer is None:
            from imageedit_r1.agents.decomposer import Decomposer

            agent = self.config.decomposer
            self._decomposer = Decomposer(
                self._backend("decomposition", agent),
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
                reasks=agent.reasks,
                **agent.agent_options,
            )
        return self._decomposer

    @property
    def sequencer(self):
        if self._sequencer is None:
            from imageedit_r1.agents.sequencer import Sequencer

            agent = self.config.sequencer or self.config.decomposer
            options = dict(agent.agent_options) if self.config.sequencer is not None else {}
            self._sequencer = Sequencer(
                self._backend("sequencing", agent),
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
                reasks=agent.reasks,
                **options,
            )
        return self._sequencer

    @property
    def verifier(self):
        """The verify stage's judge (``config.verify``), built on first use; None when verify is off."""
        if self.config.verify is None:
            return None
        if self._verifier is None:
            from imageedit_r1.agents.verifier import Verifier

            verify = self.config.verify
            self._verifier = Verifier(self._backend("verification", verify.judge), verify.judge, rubric=verify.rubric)
        return self._verifier

    def _verified_edit(self, image, plan: Plan, base_seed: int, trace: Trace):
        """The edit step with the verify stage around it (``imageedit_r1.pipeline.verify``)."""
        from imageedit_r1.pipeline.verify import RefineLoop

        return RefineLoop(self.config.verify, self.verifier, self.editor).run(image, plan, base_seed, trace)

    def model_ids(self, mode: str) -> dict[str, str | None]:
        seq_agent = self.config.sequencer or self.config.decomposer
        agentic = mode != "original"
        return {
            "decomposer": _agent_model_id(self._decomposer, self.config.decomposer) if agentic else None,
            "sequencer": _agent_model_id(self._sequencer, seq_agent) if agentic else None,
            "editor": self._editor_model_id(),
        }

    def _editor_model_id(self) -> str | None:
        if self._editor is not None:
            return getattr(self._editor, "model_id", None)
        return self.config.editor.options.get("model_id") or self.config.editor.options.get("model")

    # ------------------------------------------------------------------ running

    def _new_trace(self, image, request: str, mode: str) -> Trace:
        # The editor is described once built, in execute.
        return Trace.start(request, mode, input=_image_info(image), editor={"name": self.config.editor.name})

    def _fail(self, trace: Trace, message: str) -> EditFailed:
        last = trace.errors[-1] if trace.errors else {}
        if last.get("kind") == "refusal":
            trace.status = "refused"
            trace.refusal = {key: last[key] for key in ("stage", "reason", "message")}
        else:
            trace.status = "failed"
        return EditFailed(message, trace.to_dict())

    def _stage_fallback(self, trace: Trace, stage: str, exc: Exception, policy: str) -> str:
        """Record an agent stage's failure; return the fallback ``policy`` to apply, or raise.

        A missing model or key propagates as is; any other failure than an unusable answer, or
        any failure under the ``error`` policy, ends the edit with ``EditFailed``.
        """
        if is_unavailable(exc):
            raise exc
        trace.errors.append(_error_record(stage, exc))
        what = {"decompose": "decomposition", "sequence": "sequencing"}[stage]
        if not is_unusable_answer(exc):
            raise self._fail(trace, f"{what} failed: {exc}") from exc
        trace.raw_outputs[stage] = _raw_outputs(exc)
        if getattr(exc, "prompt_tokens", None) is not None:
            trace.tokens[stage] = _tokens(exc)
        if policy == "error":
            raise self._fail(trace, f"{what} failed: {exc}") from exc
        trace.fallbacks.append({"stage": stage, "used": policy, "reason": str(exc)})
        return policy

    def _decompose(self, image, request: str, trace: Trace) -> Decomposition | None:
        """Run the decomposition agent; on an unusable answer apply the configured fallback."""
        try:
            # Loading weights (or a client) is timed apart from the agent's work.
            with trace.stage("load_agents"):
                decomposer = self.decomposer
            with trace.stage("decompose"):
                result = _call_decomposer(decomposer, image, request)
        except Exception as exc:
            if self._stage_fallback(trace, "decompose", exc, self.config.on_decompose_failure) == "original":
                return None
            decomposition = keyword_decomposition(request)
        else:
            decomposition = result["decomposition"]
            trace.repairs = result["repairs"]
            trace.raw_outputs["decompose"] = result["raw_outputs"]
            trace.tokens["decompose"] = result["tokens"]
        trace.decomposition = {**decomposition.to_dict(), "think": decomposition.think}
        return decomposition

    def _sequence(self, image, request: str, decomposition: Decomposition, trace: Trace) -> list[str]:
        try:
            with trace.stage("load_agents"):
                sequencer = self.sequencer
            with trace.stage("sequence"):
                result = _call_sequencer(sequencer, image, decomposition, request)
        except Exception as exc:
            if self._stage_fallback(trace, "sequence", exc, self.config.on_sequence_failure) == "original":
                return [request]
            from imageedit_r1.agents.sequencer import fallback_sub_requests

            sub_requests = fallback_sub_requests(decomposition)
            _note_dropped(trace, decomposition, sub_requests)
            return sub_requests
        trace.sequence_repairs = result["repairs"]
        trace.raw_outputs["sequence"] = result["raw_outputs"]
        trace.tokens["sequence"] = result["tokens"]
        sub_requests = [s.strip() for s in result["sub_requests"] if s and s.strip()]
        if result["fallback_used"]:
            trace.fallbacks.append({"stage": "sequence", "used": "template", "reason": "set in the sequencer"})
            _note_dropped(trace, decomposition, sub_requests)
        return sub_requests

    def plan(self, image, request: str, *, mode: str | None = None) -> Plan:
        """Run the decomposition and sequencing agents only (the editor is not built) and return
        their ``Plan``: decomposition, ordered sub-requests, mode and editor instruction(s).

        Change it if you like, then ``execute(image, plan)``. Raises ``ValueError`` for an empty
        request or an unknown mode, ``ImageLoadError`` for an unreadable image, ``EditFailed``
        when an agent fails under the ``error`` policy, ``AgentUnavailableError`` when one cannot
        start.
        """
        image, request, mode = self._inputs(image, request, mode)
        return self._plan(image, request, mode)

    def _plan(self, image, request: str, mode: str) -> Plan:
        trace = self._new_trace(image, request, mode)
        with trace.stage("total"):
            decomposition, sub_requests = self._propose(image, request, mode, trace)
        trace.models = self.model_ids(mode)
        return Plan(request=request, mode=mode, decomposition=decomposition, sub_requests=sub_requests,
                    record=mask(trace.record()))

    def _inputs(self, image, request: str, mode: str | None):
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(request, str) or not request.strip():
            raise ValueError("the edit request is empty")
        # Forum tags ("[Paid $10]") are not part of the request, for any agent.
        return load_image(image, max_pixels=self.config.max_image_pixels), clean_request(request), mode

    def _propose(self, image, request: str, mode: str, trace: Trace) -> tuple[Decomposition | None, list[str]]:
        """The agents' decomposition and sub-requests (``None, []`` when the raw request is edited)."""
        if mode == "original":
            return None, []
        decomposition = self._decompose(image, request, trace)
        if decomposition is None:  # the "original" fallback
            return None, []
        sub_requests = self._sequence(image, request, decomposition, trace)
        if not sub_requests:
            trace.errors.append({"stage": "sequence", "type": "EmptyPlan", "message": "no sub-requests"})
            if self.config.on_sequence_failure == "error":
                raise self._fail(trace, "the sequencing agent produced no sub-requests")
            trace.fallbacks.append({"stage": "sequence", "used": "original", "reason": "no sub-requests"})
            sub_requests = [request]
        trace.sub_requests = sub_requests
        return decomposition, sub_requests

    def execute(self, image, plan: Plan | dict, *, seed: int | None = None, on_step=None) -> EditResult:
        """Run the editor on ``plan`` (as the agents proposed it, or changed) and return the result.

        ``plan`` is a ``Plan`` or its ``to_dict()``; ``seed`` is the base seed (multi-turn step i
        uses ``seed + i``; default: the config's, else a fresh one, recorded either way). The
        trace holds the plan's agent record and ``trace["plan"]``: whether the plan was changed,
        by whom and how (see ``Plan.change_record``). Raises ``PlanError`` for a malformed plan,
        ``ImageLoadError`` for an unreadable image, ``EditFailed`` (with the trace) when editing
        fails, ``EditorUnavailableError`` when the editor cannot start. ``on_step(step, total,
        instruction)``, if given, is called before each editor call (0-based step), for progress.
        """
        plan = Plan.from_dict(plan) if isinstance(plan, dict) else plan
        if not isinstance(plan, Plan):
            raise PlanError(f"execute() takes a Plan or its to_dict(), got {type(plan).__name__}")
        plan.validate()
        image = load_image(image, max_pixels=self.config.max_image_pixels)
        return self._execute(image, plan, seed, on_step)

    def _execute(self, image, plan: Plan, seed: int | None, on_step=None) -> EditResult:
        self._check_verifier()
        trace = self._new_trace(image, plan.request, plan.mode)
        planned_on = plan.record.get("input") or {}
        trace.carry(plan.record)
        trace.decomposition = plan.to_dict()["decomposition"]
        trace.sub_requests = list(plan.sub_requests)
        trace.instructions = instructions = plan.instructions
        trace.plan = {**plan.change_record(),
                      "image_matches": planned_on.get("sha256") in (None, trace.input["sha256"])}
        planned_seconds = float(trace.seconds.get("total", 0.0))
        trace.seconds.pop("total", None)
        base_seed = seed if seed is not None else self.config.seed
        if base_seed is None:
            base_seed = secrets.randbelow(2**31)
        run_start = time.perf_counter()

        def finish() -> None:
            trace.seconds["total"] = round(planned_seconds + time.perf_counter() - run_start, 4)
            # The agents' ids come from the planning record (none for a hand-written plan).
            models = dict(trace.models or {"decomposer": None, "sequencer": None})
            trace.models = {**models, "editor": self._editor_model_id()}
            if self.config.verify is not None:
                trace.models["verifier"] = _agent_model_id(self._verifier, self.config.verify.judge)

        try:
            editor = self.editor
            trace.editor = _describe(editor)
            if hasattr(editor, "load"):
                with trace.stage("load_editor"):
                    editor.load()
            if self.config.verify is None:
                with trace.stage("edit"):
                    current = self._edit(editor, image, instructions, base_seed, trace, on_step)
            else:
                current = self._verified_edit(image, plan, base_seed, trace)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            trace.errors.append(_error_record("edit", exc))
            finish()
            raise self._fail(trace, f"editing failed: {exc}") from exc
        finish()
        trace.output = _image_info(current)
        trace.status = "ok"
        return EditResult(image=current, trace=trace.to_dict())

    def _edit(self, editor, image, instructions: list[str], base_seed: int, trace: Trace, on_step=None):
        """The edit step: each instruction on the previous output, step i with seed base + i."""
        current = image
        for step, instruction in enumerate(instructions):
            if on_step is not None:
                on_step(step, len(instructions), instruction)
            step_seed = base_seed + step
            trace.seeds.append(step_seed)
            current = editor.edit(current, instruction, seed=step_seed)
        return current

    def __call__(self, image, request: str, *, mode: str | None = None, seed: int | None = None) -> EditResult:
        """Plan and execute in one go: ``execute(image, plan(image, request), seed=seed)``."""
        image, request, mode = self._inputs(image, request, mode)
        self._check_verifier()
        return self._execute(image, self._plan(image, request, mode), seed)

    def _check_verifier(self) -> None:
        """A verifier that cannot start (key, package, weights) stops the run before any work."""
        if self.config.verify is not None:
            self.verifier  # noqa: B018 - built for its errors


# ----------------------------------------------------------------------------- agent adapters


def _note_dropped(trace: Trace, decomposition: Decomposition, sub_requests: list[str]) -> None:
    """On a fallback path, record which of the plan's operations no sub-request carries ([] when none)."""
    from imageedit_r1.agents.sequencer import dropped_operations

    trace.fallbacks[-1]["dropped"] = dropped_operations(decomposition, sub_requests)


def _describe(editor) -> dict[str, Any]:
    if hasattr(editor, "describe"):
        return editor.describe()
    return {"name": getattr(editor, "name", type(editor).__name__), "model_id": getattr(editor, "model_id", None)}


def _agent_model_id(agent, config: EndpointConfig) -> str:
    backend = getattr(agent, "backend", None)
    return getattr(backend, "model", None) or config.model


def _tokens(result) -> dict[str, int]:
    return {"prompt": int(getattr(result, "prompt_tokens", 0) or 0),
            "completion": int(getattr(result, "completion_tokens", 0) or 0)}


def _raw_outputs(exc: BaseException) -> list[str]:
    raw = getattr(exc, "raw_outputs", None)
    if raw is None and getattr(exc, "text", None) is not None:
        raw = [exc.text]
    return [str(item) for item in (raw or [])]


def _call_decomposer(decomposer, image, request: str) -> dict[str, Any]:
    """The decomposition and what the agent reports about it (repairs, raw answers, tokens)."""
    if hasattr(decomposer, "run"):
        result = decomposer.run(image, request)
        return {"decomposition": result.decomposition, "repairs": list(result.repairs),
                "raw_outputs": list(result.raw_outputs), "tokens": _tokens(result)}
    decomposition = decomposer.decompose(image, request)
    if not isinstance(decomposition, Decomposition):
        raise DecompositionParseError(f"decomposer returned {type(decomposition).__name__}", repr(decomposition))
    return {"decomposition": decomposition, "repairs": [], "raw_outputs": [], "tokens": {}}


def _call_sequencer(sequencer, image, decomposition: Decomposition, request: str) -> dict[str, Any]:
    if hasattr(sequencer, "run"):
        result = sequencer.run(image, decomposition, request)
        return {"sub_requests": list(result.sub_requests), "repairs": list(result.repairs),
                "raw_outputs": list(result.raw_outputs), "tokens": _tokens(result),
                "fallback_used": bool(getattr(result, "fallback_used", False))}
    sub_requests = sequencer.sequence(image, decomposition, request)
    if not isinstance(sub_requests, list) or not all(isinstance(s, str) for s in sub_requests):
        raise TypeError(f"sequencer returned {type(sub_requests).__name__}, not a list of strings")
    return {"sub_requests": sub_requests, "repairs": [], "raw_outputs": [], "tokens": {}, "fallback_used": False}

