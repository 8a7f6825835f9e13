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

MODES = ("single-turn", "multi-turn", "original")
DECOMPOSE_FALLBACKS = ("error", "keywords", "original")
SEQUENCE_FALLBACKS = ("error", "template", "original")
API_BACKENDS = ("openai", "gemini")


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
class PipelineConfig:
    mode: str = "single-turn"
    seed: int | None = None  # None: a fresh seed per run, recorded in the trace
    decomposer: AgentConfig = field(default_factory=AgentConfig)
    sequencer: AgentConfig | None = None  # None: the decomposer's backend (the paper: same VLM)
    editor: EditorConfig = field(default_factory=EditorConfig)
    on_decompose_failure: str = "error"
    on_sequence_failure: str = "error"
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def validate(self) -> PipelineConfig:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.on_decompose_failure not in DECOMPOSE_FALLBACKS:
            raise ValueError(f"on_decompose_failure must be one of {DECOMPOSE_FALLBACKS}, got {self.on_decompose_failure!r}")
        if self.on_sequence_failure not in SEQUENCE_FALLBACKS:
            raise ValueError(f"on_sequence_failure must be one of {SEQUENCE_FALLBACKS}, got {self.on_sequence_failure!r}")
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
        if agent.api_key_env:
            kwargs["api_key_env"] = agent.api_key_env
    return kwargs


def load_pipeline_config(path: str | os.PathLike | None = None, overrides=()) -> PipelineConfig:
    from imageedit_r1.config import load_config

    return load_config(PipelineConfig, path, list(overrides)).validate()
