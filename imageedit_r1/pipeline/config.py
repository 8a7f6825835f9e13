"""The pipeline's configuration: which agents, which editor, which mode, which fallbacks.

One schema for every place a pipeline is configured: ``python -m imageedit_r1.pipeline``, the
evaluation methods and the app. Load it with ``load_pipeline_config(path, overrides)``
(omegaconf YAML + ``key=value`` dotlist overrides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from imageedit_r1.config import Rename
from imageedit_r1.costs import Price
from imageedit_r1.endpoints import DEFAULT_AGENT_MODEL, AgentConfig, JudgeConfig, reasks_from_asks
from imageedit_r1.executors import RayConfig, executor_problems
from imageedit_r1.images import DEFAULT_MAX_PIXELS

MODES = ("single-turn", "multi-turn", "original")
DECOMPOSE_FALLBACKS = ("error", "keywords", "original")
SEQUENCE_FALLBACKS = ("error", "template", "original")
VERIFY_RUBRICS = ("table2", "checklist")
VERIFY_STRATEGIES = ("seed", "replan", "both")


# ----------------------------------------------------------------------------- configuration


@dataclass
class EditorConfig:
    name: str = "flux-kontext"  # flux-kontext | qwen-image-edit | qwen-image-edit-plus | nano-banana | openai-image
    options: dict[str, Any] = field(default_factory=dict)  # the editor's keyword arguments


def _default_verifier() -> JudgeConfig:
    return JudgeConfig(backend="transformers", model=DEFAULT_AGENT_MODEL)  # the agents' own VLM


@dataclass
class VerifyConfig:
    """The optional verify stage (``imageedit_r1.pipeline.verify``): score each edit, refine within
    a budget, keep the best. Scores are on 0-10 for both rubrics."""

    judge: JudgeConfig = field(default_factory=_default_verifier)  # the verifier's model, asked like a judge
    rubric: str = "table2"  # table2 (the evaluation judge's prompt) | checklist (one line per sub-request)
    threshold: float = 8.0  # stop once an edit scores at least this (0-10)
    attempts: int = 3  # edit attempts in all, the first included
    candidates: int = 1  # edits per attempt; one batched call where the editor can batch
    strategy: str = "both"  # seed | replan (revise the plan from the critique) | both
    max_calls: int | None = None  # editor + verifier calls in all (a batched editor call counts once)
    max_seconds: float | None = None  # wall seconds of the edit attempts and their verification
    max_cost_usd: float | None = None  # estimated USD (prices below)
    # The verifier's tokens and the editor's images (per_image, API editors); 0 = free (a local model).
    prices: Price = field(default_factory=Price)

    renamed_keys: ClassVar[dict[str, str | Rename]] = {
        "structured": "judge.structured",
        "max_image_side": "judge.max_image_side",
        "invalid_reply_attempts": Rename("judge.reasks", reasks_from_asks),
    }

    def validate(self) -> VerifyConfig:
        problems = []
        if self.rubric not in VERIFY_RUBRICS:
            problems.append(f"verify.rubric must be one of {VERIFY_RUBRICS}, got {self.rubric!r}")
        if self.strategy not in VERIFY_STRATEGIES:
            problems.append(f"verify.strategy must be one of {VERIFY_STRATEGIES}, got {self.strategy!r}")
        if not 0 <= self.threshold <= 10:
            problems.append(f"verify.threshold is on the 0-10 scale, got {self.threshold}")
        for name in ("attempts", "candidates"):
            if getattr(self, name) < 1:
                problems.append(f"verify.{name} must be >= 1, got {getattr(self, name)}")
        problems += self.judge.problems("verify.judge")
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
    # Requests the agents plan together (--manifest, an evaluation's plan stage): one batched call per
    # agent stage; the backend bounds what it decodes at once (transformers: max_batch_size).
    plan_batch: int = 16
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
        problems = self.decomposer.problems("decomposer")
        if self.sequencer is not None:
            problems += self.sequencer.problems("sequencer")
        problems += executor_problems(self.executor, self.ray)
        if self.plan_batch < 1:
            problems.append(f"plan_batch must be >= 1, got {self.plan_batch}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_pipeline_config(path: str | os.PathLike | None = None, overrides=()) -> PipelineConfig:
    from imageedit_r1.config import load_config

    return load_config(PipelineConfig, path, list(overrides)).validate()
