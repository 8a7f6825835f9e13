"""A chat model the project calls: one config, one builder.

Every role that asks a vision-language model (the decomposition and sequencing agents, the
evaluation judge, the verify stage's judge, the teacher that labels data) is configured by an
``EndpointConfig``::

    backend: openai          # openai (any OpenAI-compatible server via base_url) | gemini | transformers | vllm
    model: gpt-4o-2024-08-06
    base_url: null           # an OpenAI-compatible server (vLLM, SGLang, ...)
    api_key_env: null        # the variable holding the key (null: the backend's default); keys are never stored
    timeout: 120             # seconds per request
    retry: {attempts: 4, base_delay: 1.0, max_delay: 30.0}   # 429 / 5xx / timeouts, with backoff
    max_tokens: 1024         # room for the answer (Gemini's thinking gets its own, below)
    temperature: 0.0
    reasks: 1                # extra asks after an unreadable reply (0: ask once)
    thinking_budget: null    # gemini: thinking tokens (null: the model family's default, 1024 for 2.5
                             # Flash and Pro, off for Flash-Lite; -1: the model decides; 0: off, not on 2.5 Pro)
    options: {}              # more keyword options of the backend (dtype, device, image_budget, ...)

Role configs add their own fields: ``AgentConfig`` (``agent_options``), ``JudgeConfig`` (``name``,
``structured``, ``max_image_side``, ``requests_per_minute``) and ``TeacherConfig`` (``seed``,
``image_max_pixels``). ``build_endpoint(cfg)`` builds the chat backend of any of them, with the
options ``endpoint_options(cfg)`` gives ``imageedit_r1.backends.build_backend``.

Old spellings (``retry_attempts``, ``attempts``, ``retry_base_delay``, ``invalid_retries``,
``invalid_reply_attempts``, backend ``openai-compatible``) are declared beside the fields they
became and read by ``imageedit_r1.config.load_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from imageedit_r1.config import Rename

# Backends reached over the network: they take a timeout, retries, a server URL and a key.
API_BACKENDS = ("openai", "gemini")
DEFAULT_AGENT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
# How an endpoint is reached and how hard it is tried, as fields or options: never what it answers,
# so never part of what identifies a plan or a method's results.
HOW_REACHED = ("timeout", "retry", "api_key_env", "max_concurrency", "max_batch_size", "max_batch_tokens",
               "requests_per_minute")


def answer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's settings (a dict of its fields, or of an editor's options) without ``HOW_REACHED``,
    in ``options`` too."""
    kept = {key: value for key, value in settings.items() if key not in HOW_REACHED}
    if isinstance(kept.get("options"), dict):
        kept["options"] = answer_settings(kept["options"])
    return kept


def reasks_from_asks(asks: Any) -> int:
    """An old count of asks in all (the first included) as a count of re-asks."""
    if int(asks) < 1:
        raise ValueError("it counts the asks in all, the first included: at least 1")
    return int(asks) - 1


@dataclass
class RetryConfig:
    """Transport retries of one request (HTTP 429 / 5xx, timeouts, dropped connections)."""

    attempts: int = 4  # requests in all, the first included
    base_delay: float = 1.0  # seconds before the first retry; doubles each time
    max_delay: float = 30.0

    def policy(self):
        from imageedit_r1.retry import RetryPolicy

        return RetryPolicy(attempts=self.attempts, base_delay=self.base_delay, max_delay=self.max_delay)

    def problems(self, setting: str) -> list[str]:
        """What is wrong with these retries, one line each, keys named under ``setting``."""
        out = []
        if self.attempts < 1:
            out.append(f"{setting}.attempts must be >= 1, got {self.attempts}")
        for name in ("base_delay", "max_delay"):
            if getattr(self, name) < 0:
                out.append(f"{setting}.{name} must be >= 0, got {getattr(self, name)}")
        return out


def retry_policy(value: Any, setting: str = "retry"):
    """The ``RetryPolicy`` that ``value`` describes: a ``RetryConfig``, its fields as a mapping (an
    editor's ``options.retry`` from YAML, read through the config door: a typo is one line naming
    the key meant), a ``RetryPolicy`` as is, or None (the defaults). ``ValueError`` names ``setting``."""
    from imageedit_r1.config import load_config
    from imageedit_r1.retry import RetryPolicy

    if value is None:
        return RetryPolicy()
    if isinstance(value, RetryPolicy):
        return value
    config = value if isinstance(value, RetryConfig) else load_config(RetryConfig, data=dict(value), where=setting)
    problems = config.problems(setting)
    if problems:
        raise ValueError("; ".join(problems))
    return config.policy()


@dataclass
class EndpointConfig:
    """A chat model: which backend, which model, where, and how hard to try (see the module docs)."""

    backend: str = "openai"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 120.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    max_tokens: int = 1024
    temperature: float = 0.0
    reasks: int = 1
    thinking_budget: int | None = None  # gemini only: see the module docs
    options: dict[str, Any] = field(default_factory=dict)

    renamed_keys: ClassVar[dict[str, str | Rename]] = {"retry_attempts": "retry.attempts"}
    # An OpenAI-compatible server is backend openai with its base_url; without one, the old spelling
    # would send requests (and images) to OpenAI itself, so it is an error instead.
    renamed_values: ClassVar[dict[str, dict[Any, Any]]] = {
        "backend": {"openai-compatible": Rename("openai", requires="base_url")}}

    def role_options(self) -> dict[str, Any]:
        """Backend options this role sets by default (the config's ``options`` override them)."""
        return {}

    def problems(self, setting: str) -> list[str]:
        """What is wrong with these settings, one line each, keys named under ``setting``."""
        out = self.retry.problems(f"{setting}.retry")
        if self.reasks < 0:
            out.append(f"{setting}.reasks must be >= 0 (0: ask once), got {self.reasks}")
        if self.timeout <= 0:
            out.append(f"{setting}.timeout must be > 0, got {self.timeout}")
        if self.backend == "gemini":
            from imageedit_r1.backends.gemini_backend import gemini_thinking

            try:
                gemini_thinking(self.model, self.thinking_budget)
            except ValueError as exc:
                out.append(f"{setting}.thinking_budget: {exc}")
        elif self.thinking_budget is not None:
            out.append(f"{setting}.thinking_budget is for the gemini backend; {setting}.backend is {self.backend!r}")
        return out

    def thinking(self):
        """The Gemini thinking this endpoint sends (``gemini_backend.Thinking``: budget and the room
        added to ``max_tokens``); None for other backends."""
        if self.backend != "gemini":
            return None
        from imageedit_r1.backends.gemini_backend import gemini_thinking

        return gemini_thinking(self.model, self.thinking_budget)


@dataclass
class AgentConfig(EndpointConfig):
    """The decomposition or sequencing agent's model (``imageedit_r1.agents``)."""

    backend: str = "transformers"
    model: str = DEFAULT_AGENT_MODEL  # hub id, local folder, or served model name
    agent_options: dict[str, Any] = field(default_factory=dict)  # Decomposer / Sequencer ones: repair, max_steps

    def role_options(self) -> dict[str, Any]:
        if self.backend == "openai" and self.base_url:
            # A served agent (vLLM) sees images resized to the trained image budget.
            return {"image_budget": "auto"}
        return {}


@dataclass
class JudgeConfig(EndpointConfig):
    """A judge: the evaluation's (Table 2) or the verify stage's (``imageedit_r1.agents.judge``)."""

    # An evaluation judge's model is best a dated snapshot: an alias can change under a running study.
    name: str = ""  # the column name in tables ("GPT-4o")
    structured: bool = True  # request JSON-schema output; off for servers that lack it
    max_image_side: int = 1024  # both images are scaled down to this before sending
    requests_per_minute: float | None = None

    renamed_keys: ClassVar[dict[str, str | Rename]] = {
        "attempts": "retry.attempts",
        "retry_base_delay": "retry.base_delay",
        "retry_max_delay": "retry.max_delay",
        "invalid_reply_attempts": Rename("reasks", reasks_from_asks),
    }

    @property
    def provider(self) -> str:
        """Whose image-token rules and request shapes apply: ``gemini`` or ``openai`` (any other server)."""
        return "gemini" if self.backend == "gemini" else "openai"

    def role_options(self) -> dict[str, Any]:
        return {"structured_output": self.structured} if self.backend == "openai" else {}

    def settings(self) -> dict[str, Any]:
        """What, besides the model id and the prompt, changes a score: part of a judgment's cache key."""
        settings = {"provider": self.provider, "structured": self.structured, "temperature": self.temperature,
                    "max_image_side": self.max_image_side, "max_tokens": self.max_tokens}
        thinking = self.thinking()
        if thinking is not None and thinking.budget is not None:  # how long a Gemini judge may think
            settings["thinking_budget"] = thinking.budget
        return settings


@dataclass
class TeacherConfig(EndpointConfig):
    """The teacher that labels training data (``imageedit_r1.data.teacher``)."""

    model: str = "gpt-4.1"
    seed: int | None = 0
    # Larger images are shrunk before sending (providers downscale anyway); None sends full size.
    image_max_pixels: int | None = 1_048_576

    renamed_keys: ClassVar[dict[str, str | Rename]] = {
        "attempts": "retry.attempts",
        "base_delay": "retry.base_delay",
        "max_delay": "retry.max_delay",
        "invalid_retries": "reasks",
    }


def backend_spellings() -> dict[str, str]:
    """Every backend name a config or a command line may give -> the backend it reads as: the
    registered backends, and their old spellings (``EndpointConfig.renamed_values``)."""
    from imageedit_r1.backends import available_backends

    names = {name: name for name in available_backends()}
    for old, new in EndpointConfig.renamed_values["backend"].items():
        names[old] = new.to if isinstance(new, Rename) else new
    return names


def endpoint_options(cfg: EndpointConfig) -> dict[str, Any]:
    """The keyword options ``imageedit_r1.backends.build_backend(cfg.backend, ...)`` gets.

    The role's defaults, then ``cfg.options``, then the config's own fields: a model in this process
    (transformers, vllm) gets its model and options only; a network backend also its timeout,
    retries, server URL and key variable.
    """
    options: dict[str, Any] = {**cfg.role_options(), **cfg.options, "model": cfg.model}
    if cfg.backend == "gemini" and cfg.thinking_budget is not None:
        options["thinking_budget"] = cfg.thinking_budget
    if cfg.backend in API_BACKENDS:
        options.update(timeout=cfg.timeout, retry=cfg.retry.policy())
        if cfg.base_url:
            options["base_url"] = cfg.base_url
        if cfg.api_key_env:
            options["api_key_env"] = cfg.api_key_env  # else the backend's default variables
    return options


def build_endpoint(cfg: EndpointConfig):
    """The chat backend ``cfg`` describes (its client or model is created here)."""
    from imageedit_r1.backends import build_backend

    return build_backend(cfg.backend, **endpoint_options(cfg))
