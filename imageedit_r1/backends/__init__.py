"""Chat backends for the agents, chosen by name in configuration.

    from imageedit_r1.backends import ChatMessage, build_backend
    backend = build_backend("openai", model="gpt-4o")
    reply = backend.chat([ChatMessage("user", ["What is in this photo?", image])])

Names: ``openai`` (OpenAI, or any OpenAI-compatible server such as ``vllm serve`` via
``base_url``), ``gemini`` (google-genai), ``transformers`` (a local checkpoint), ``vllm`` (an
offline engine in this process). Importing this package loads no SDK or model library: each
backend imports its dependencies when it is built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from imageedit_r1.backends.base import (
    BackendError,
    BackendUnavailableError,
    ChatBackend,
    ChatMessage,
    ChatResponse,
    RefusalError,
    TruncatedReply,
)

# name -> "module:attribute", imported only when that backend is built.
_REGISTRY: dict[str, str | Callable[..., ChatBackend]] = {
    "openai": "imageedit_r1.backends.openai_backend:OpenAIBackend",
    "gemini": "imageedit_r1.backends.gemini_backend:GeminiBackend",
    "transformers": "imageedit_r1.backends.transformers_backend:TransformersBackend",
    "vllm": "imageedit_r1.backends.vllm_backend:VLLMBackend",
}


def register_backend(name: str, factory: str | Callable[..., ChatBackend]) -> None:
    """Add a backend: a factory, or a ``"module:attribute"`` path imported on first use."""
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., ChatBackend]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown chat backend {name!r}; available: {available_backends()}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
    return factory


def build_backend(name: str, **options: Any) -> ChatBackend:
    """Build the backend called ``name`` with its keyword options (model, base_url, timeout, …).

    A ``retry`` option may be a ``RetryPolicy`` or a dict of its fields (from a YAML config).
    """
    retry = options.get("retry")
    if isinstance(retry, dict) or (retry is not None and not hasattr(retry, "attempts")):
        from imageedit_r1.retry import RetryPolicy

        options["retry"] = RetryPolicy(**dict(retry))
    factory = _resolve(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for chat backend {name!r}: {exc}") from exc
    return factory(**options)


__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "ChatBackend",
    "ChatMessage",
    "ChatResponse",
    "RefusalError",
    "TruncatedReply",
    "available_backends",
    "build_backend",
    "register_backend",
]
