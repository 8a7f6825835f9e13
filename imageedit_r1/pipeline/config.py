"""The pipeline's configuration: which agents, which editor, which mode, which fallbacks.

One schema for every place a pipeline is configured: ``python -m imageedit_r1.pipeline``, the
evaluation methods and the app. Load it with ``load_pipeline_config(path, overrides)``
(omegaconf YAML + ``key=value`` dotlist overrides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.images import DEFAULT_MAX_PIXELS
from imageedit_r1.scale.config import RayConfig, executor_problems

MODES = ("single-turn", "multi-turn", "original")
DECOMPOSE_FALLBACKS = ("error", "keywords", "original")
SEQUENCE_FALLBACKS = ("error", "template", "original")
API_BACKENDS = ("openai", "gemini")
VERIFY_RUBRICS = ("table2", "checklist")
VERIFY_STRATEGIES = ("seed", "replan", "both")


# ----------------------------------------------------------------------------- configuration


@dataclass
class AgentConfig:
    """A chat backend for an agent (see ``imageedit_r1.backends.build_backend``)."""

    backend: str = "transformers"  # openai | gemini | transformers | vllm
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # hub id, local folder, or served model name
    base_url: str | None = None  # OpenAI-compatible server (e.g. vLLM serving the checkpoint)
    api_key_env: str | None = None  # name of the environment variable holding the key
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 120.0
    retry_attempts: int = 4
    options: dict[str, Any] = field(default_factory=dict)  # backend keyword arguments: dtype, device, ...
    agent_options: dict[str, Any] = field(default_factory=dict)  # Decomposer / Sequencer ones: repair, max_steps


@dataclass
class EditorConfig:
    name: str = "flux-kontext"  # flux-kontext | qwen-image-edit | qwen-image-edit-plus | nano-banana | openai-image
    options: dict[str, Any] = field(default_factory=dict)  # the editor's keyword arguments


@dataclass
class VerifyPrices:
    """USD prices behind the verify stage's cost budget (0 = free, e.g. a local model)."""

    input_per_mtok: float = 0.0  # the verifier's prompt tokens, per million
    output_per_mtok: float = 0.0  # the verifier's completion tokens, per million
    per_image: float = 0.0  # each image the editor makes (API editors)


@dataclass
class VerifyConfig:
    """The optional verify stage (``imageedit_r1.pipeline.verify``): score each edit, refine within
    a budget, keep the best. Scores are on 0-10 for both rubrics."""

    judge: AgentConfig = field(default_factory=AgentConfig)  # the verifier's chat backend
    rubric: str = "table2"  # table2 (the evaluation judge's prompt) | checklist (one line per sub-request)
    threshold: float = 8.0  # stop once an edit scores at least this (0-10)
    attempts: int = 3  # edit attempts in all, the first included
    candidates: int = 1  # edits per attempt; one batched call where the editor can batch
    strategy: str = "both"  # seed | replan (revise the plan from the critique) | both
    max_calls: int | None = None  # editor + verifier calls in all (a batched editor call counts once)
    max_seconds: float | None = None  # wall seconds of the edit attempts and their verification
    max_cost_usd: float | None = None  # estimated USD (prices below)
    prices: VerifyPrices = field(default_factory=VerifyPrices)
    structured: bool = True  # ask for JSON-schema output (the backend enforces it where it can)
    max_image_side: int = 1024  # both images are scaled down to this before sending
    invalid_reply_attempts: int = 2  # asks per verification when a reply cannot be read

    def validate(self) -> VerifyConfig:
        problems = []
        if self.rubric not in VERIFY_RUBRICS:
            problems.append(f"verify.rubric must be one of {VERIFY_RUBRICS}, got {self.rubric!r}")
        if self.strategy not in VERIFY_STRATEGIES:
            problems.append(f"verify.strategy must be one of {VERIFY_STRATEGIES}, got {self.strategy!r}")
        if not 0 <= self.threshold <= 10:
            problems.append(f"verify.threshold is on the 0-10 scale, got {self.threshold}")
        for name in ("attempts", "candidates", "invalid_reply_attempts"):
            if getattr(self, name) < 1:
                problems.append(f"verify.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_calls", "max_seconds", "max_cost_usd"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"verify.{name} must be > 0 or null (no limit), got {value}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass
class PipelineConfig:
    mode: str = "single-turn"
    seed: int | None = None  # None: a fresh seed per run, recorded in the trace
    decomposer: AgentConfig = field(default_factory=AgentConfig)
    sequencer: AgentConfig | None = None  # None: the decomposer's backend (the paper: same VLM)
    editor: EditorConfig = field(default_factory=EditorConfig)
    on_decompose_failure: str = "error"
    on_sequence_failure: str = "error"
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    verify: VerifyConfig | None = None  # None: no verify stage (the paper's pipeline)
    # Batches (--manifest): "local" edits here; "ray" on one replica per GPU (docs/pipeline.md, "Many GPUs").
    executor: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> PipelineConfig:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.on_decompose_failure not in DECOMPOSE_FALLBACKS:
            raise ValueError(f"on_decompose_failure must be one of {DECOMPOSE_FALLBACKS}, got {self.on_decompose_failure!r}")
        if self.on_sequence_failure not in SEQUENCE_FALLBACKS:
            raise ValueError(f"on_sequence_failure must be one of {SEQUENCE_FALLBACKS}, got {self.on_sequence_failure!r}")
        if self.verify is not None:
            self.verify.validate()
        problems = executor_problems(self.executor, self.ray)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def backend_options(agent: AgentConfig) -> dict[str, Any]:
    """The keyword arguments ``imageedit_r1.backends.build_backend(agent.backend, ...)`` gets."""
    from imageedit_r1.retry import RetryPolicy

    kwargs: dict[str, Any] = {"model": agent.model, **agent.options}
    if agent.backend in API_BACKENDS:
        kwargs["timeout"] = agent.timeout
        kwargs["retry"] = RetryPolicy(attempts=agent.retry_attempts)
        if agent.base_url:
            kwargs["base_url"] = agent.base_url
            if agent.backend == "openai":
                # A served agent (vLLM) sees images resized to the trained image budget.
                kwargs.setdefault("image_budget", "auto")
        if agent.api_key_env:
            kwargs["api_key_env"] = agent.api_key_env
    return kwargs


def load_pipeline_config(path: str | os.PathLike | None = None, overrides=()) -> PipelineConfig:
    from imageedit_r1.config import load_config

    return load_config(PipelineConfig, path, list(overrides)).validate()
