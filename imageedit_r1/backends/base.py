"""The chat-backend protocol: messages with images in, text out, optionally JSON-schema constrained.

Every backend (hosted API, OpenAI-compatible server, local transformers model, offline vLLM
engine) takes the same ``ChatMessage`` list and returns a ``ChatResponse``; ``chat_batch`` takes a
list of such conversations and returns one result per conversation (a ``ChatResponse`` or that
conversation's own error), decoding them together where the model runs here and sending them
concurrently where it runs elsewhere. Transient failures are
retried inside the backend within its ``RetryPolicy`` and then surface as
``imageedit_r1.retry.RetriesExhausted``; permanent failures raise ``BackendError``; a refusal or
safety block raises ``RefusalError`` (a ``BackendError``), never an empty answer; a backend that
cannot run here (a missing package, model or key) raises ``BackendUnavailableError``.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from imageedit_r1.masking import register_variables
from imageedit_r1.refusals import DECLINED, Refusal
from imageedit_r1.unavailable import Unavailable

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger("imageedit_r1.backends")

ROLES = ("system", "user", "assistant")
Part = Union[str, "Image.Image"]


class BackendError(RuntimeError):
    """A permanent failure of a chat backend (bad request, bad credentials, unusable answer)."""


class BackendUnavailableError(BackendError, Unavailable):
    """The backend cannot run here: its package, its model weights or its API key is missing."""


class TruncatedReply(BackendError):
    """The answer reached its token limit before any text: a thinking model can spend the whole
    limit thinking. Worth another run with more room (``failure_kind`` ``truncated``, retryable);
    ``reply`` carries the usage that was billed all the same."""

    failure_kind = "truncated"
    retryable = True

    def __init__(self, message: str, reply: ChatResponse) -> None:
        super().__init__(message)
        self.reply = reply


class RefusalError(BackendError, Refusal):
    """The model refused, or the provider's safety system blocked the prompt or the answer;
    ``reason`` is the provider's code (``SAFETY``, ``content_filter``, ...) or ``declined``."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or DECLINED


@dataclass
class ChatMessage:
    """One chat turn. ``content`` is text, or a list of text and PIL images in reading order."""

    role: str
    content: str | list[Part]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        for part in self.parts():
            if not isinstance(part, str) and not _is_pil_image(part):
                raise TypeError(f"message parts must be str or PIL.Image.Image, got {type(part).__name__}")
        if self.role == "system" and self.images():
            raise ValueError("a system message cannot hold images")

    def parts(self) -> list[Part]:
        return [self.content] if isinstance(self.content, str) else list(self.content)

    def images(self) -> list[Image.Image]:
        return [part for part in self.parts() if not isinstance(part, str)]

    def text(self) -> str:
        return "".join(part for part in self.parts() if isinstance(part, str))


@dataclass
class ChatResponse:
    text: str
    model: str  # the model id the provider reports having served (a dated snapshot for an alias)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # everything billed as output: the answer and any thinking
    finish_reason: str | None = None  # "stop", "length", ... as the backend reports it
    seconds: float = 0.0
    thinking_tokens: int | None = None  # of completion_tokens, those spent thinking (Gemini, OpenAI reasoning)


@runtime_checkable
class ChatBackend(Protocol):
    """What the agents need from a vision-language model."""

    name: str
    model: str
    # True when the backend enforces ``json_schema`` while decoding (server- or engine-side);
    # False when the schema is only described in the prompt and callers must validate.
    supports_json_schema: bool

    def chat(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> ChatResponse: ...

    def chat_batch(
        self,
        conversations: list[list[ChatMessage]],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> list[ChatResponse | Exception]:
        """One result per conversation, in order: its answer, or the error it alone raised
        (``imageedit_r1.backends.batching``). At temperature 0 each answer equals ``chat``'s."""
        ...


# ----------------------------------------------------------------------------- shared helpers


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return False
    return isinstance(obj, Image.Image)


def validate_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    if not messages:
        raise ValueError("chat needs at least one message")
    for message in messages:
        if not isinstance(message, ChatMessage):
            raise TypeError(f"messages must be ChatMessage instances, got {type(message).__name__}")
    if messages[-1].role == "assistant":
        raise ValueError("the last message must come from the user (or system), not the assistant")
    return messages


def image_png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG of the image as the model sees it: RGB (transparency composited onto white)."""
    from imageedit_r1.images import to_png_bytes, to_rgb

    return to_png_bytes(to_rgb(image))


def image_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(image_png_bytes(image)).decode("ascii")


def schema_instruction(json_schema: dict[str, Any]) -> str:
    """The prompt text that asks for schema-shaped JSON where the backend cannot enforce it."""
    import json

    return (
        "Answer with one JSON value that matches this JSON schema, and nothing else "
        "(no prose, no code fence):\n" + json.dumps(json_schema, ensure_ascii=False)
    )


def api_key_from_env(env_names: str | list[str] | tuple[str, ...] | None, *, required: bool, service: str) -> str | None:
    """The first set environment variable among ``env_names``; keys never come from config files."""
    names = [env_names] if isinstance(env_names, str) else list(env_names or [])
    register_variables(names)  # whatever this key reaches (traces, records, logs), it is masked
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    if required:
        where = " or ".join(names) if names else "an environment variable"
        raise BackendUnavailableError(f"{service}: no API key; set {where} in the environment")
    return None
