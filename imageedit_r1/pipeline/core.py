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

from imageedit_r1.endpoints import EndpointConfig
from imageedit_r1.images import image_sha256, load_image
from imageedit_r1.pipeline.config import MODES, PipelineConfig, load_pipeline_config
from imageedit_r1.pipeline.plan import Plan, PlanError
from imageedit_r1.pipeline.planning import Request, error_record, plan_requests
from imageedit_r1.pipeline.trace import EditFailed, EditResult, Trace
from imageedit_r1.request_text import clean_request
from imageedit_r1.unavailable import Unavailable, is_unavailable

# ----------------------------------------------------------------------------- helpers


def _image_info(image) -> dict[str, Any]:
    return {"width": image.width, "height": image.height, "sha256": image_sha256(image)}


class AgentUnavailableError(RuntimeError, Unavailable):
    """An agent cannot start here (weights, an API key or a package is missing): every run would
    fail alike, so the pipeline stops instead of falling back (``imageedit_r1.unavailable``)."""


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

    def plan(self, image, request: str, *, mode: str | None = None) -> Plan:
        """Run the decomposition and sequencing agents only (the editor is not built) and return
        their ``Plan``: decomposition, ordered sub-requests, mode and editor instruction(s).

        Change it if you like, then ``execute(image, plan)``. Raises ``ValueError`` for an empty
        request or an unknown mode, ``ImageLoadError`` for an unreadable image, ``EditFailed``
        when an agent fails under the ``error`` policy, ``AgentUnavailableError`` when one cannot
        start. ``plan`` is ``plan_batch`` of one request.
        """
        (plan,) = self.plan_batch([image], [request], mode=mode)
        if isinstance(plan, BaseException):
            raise plan
        return plan

    def plan_batch(self, images, requests: list[str], *, mode: str | list[str | None] | None = None,
                   ) -> list[Plan | Exception]:
        """Plan many requests at once: each agent stage is one batched call for all of them
        (``imageedit_r1.pipeline.planning``). Returns, for each (image, request) pair in order, its
        ``Plan`` or its own error (the errors ``plan`` raises), so one bad pair fails alone; only an
        agent that cannot start (``AgentUnavailableError``) is raised, for the whole batch.

        ``mode``: one for every pair, or one per pair (None: the config's). The pipeline holds no
        state between calls besides its loaded agents: concurrent calls plan independently.
        """
        images, requests = list(images), list(requests)
        if len(images) != len(requests):
            raise ValueError(f"plan_batch got {len(images)} images for {len(requests)} requests")
        modes = list(mode) if isinstance(mode, (list, tuple)) else [mode] * len(requests)
        if len(modes) != len(requests):
            raise ValueError(f"plan_batch got {len(modes)} modes for {len(requests)} requests")
        results: list[Plan | Exception | None] = [None] * len(requests)
        planning: list[tuple[int, Request]] = []
        for index, (image, request, item_mode) in enumerate(zip(images, requests, modes, strict=True)):
            try:
                planning.append((index, self._request(*self._inputs(image, request, item_mode))))
            except Exception as exc:  # noqa: BLE001 - this pair's error alone (empty request, unreadable image)
                results[index] = exc
        for (index, _), plan in zip(planning, plan_requests(self, [item for _, item in planning]), strict=True):
            results[index] = plan
        return results

    def _request(self, image, request: str, mode: str) -> Request:
        return Request(image=image, request=request, mode=mode, trace=self._new_trace(image, request, mode))

    def _plan(self, image, request: str, mode: str) -> Plan:
        (plan,) = plan_requests(self, [self._request(image, request, mode)])
        if isinstance(plan, BaseException):
            raise plan
        return plan

    def _inputs(self, image, request: str, mode: str | None):
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(request, str) or not request.strip():
            raise ValueError("the edit request is empty")
        # Forum tags ("[Paid $10]") are not part of the request, for any agent.
        return load_image(image, max_pixels=self.config.max_image_pixels), clean_request(request), mode

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
            trace.errors.append(error_record("edit", exc))
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


def _describe(editor) -> dict[str, Any]:
    if hasattr(editor, "describe"):
        return editor.describe()
    return {"name": getattr(editor, "name", type(editor).__name__), "model_id": getattr(editor, "model_id", None)}


def _agent_model_id(agent, config: EndpointConfig) -> str:
    backend = getattr(agent, "backend", None)
    return getattr(backend, "model", None) or config.model
