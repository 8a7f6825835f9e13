"""Google Gemini through the ``google-genai`` SDK.

Images travel as inline PNG parts. A JSON schema becomes
``response_mime_type="application/json"`` + ``response_schema``, enforced by the API. A prompt
blocked by the safety system (``prompt_feedback.block_reason``) or an answer stopped for safety
(``finish_reason`` SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII, IMAGE_SAFETY, …) raises
``RefusalError``. The SDK's own retries are off; this backend retries 408/429/5xx, timeouts,
dropped connections and malformed bodies within its ``RetryPolicy``.

Thinking: Gemini 2.5 and 3 models think before they answer, and thinking counts against
``max_output_tokens``. So ``max_tokens`` is the room for the answer, and thinking gets its own
room on top: ``thinking_budget`` tokens (sent as ``thinking_config.thinking_budget``; None: the
model family's default in ``THINKING_FAMILIES``; -1: the model decides; 0: off, where the model
allows it). A candidate that ends ``MAX_TOKENS`` with no text raises ``TruncatedReply`` (retryable)
naming the limit. Thinking tokens (``usage_metadata.thoughts_token_count``) are billed as output:
they are counted in ``completion_tokens``.

``chat_batch`` sends its conversations as concurrent requests, at most ``max_concurrency`` in flight;
each conversation gets its answer or its own error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from imageedit_r1.backends.base import (
    BackendError,
    BackendUnavailableError,
    ChatMessage,
    ChatResponse,
    RefusalError,
    TruncatedReply,
    api_key_from_env,
    image_png_bytes,
    validate_messages,
)
from imageedit_r1.backends.batching import ConcurrentBatches
from imageedit_r1.backends.sdk_errors import (
    classify_genai_error,
    gemini_finish_reason,
    gemini_prompt_block,
    gemini_safety_stop,
)
from imageedit_r1.retry import RetryPolicy, call_with_retries

logger = logging.getLogger("imageedit_r1.backends.gemini")

# The OpenAPI subset Gemini's ``response_schema`` accepts; other JSON-schema keywords
# (``additionalProperties``, ``$schema``, ``title``…) are dropped rather than rejected by the API.
_SCHEMA_KEYS = {
    "type", "format", "description", "nullable", "enum", "items", "properties", "required",
    "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength", "pattern", "anyOf",
    "propertyOrdering",
}


def gemini_schema(schema: Any) -> Any:
    """A JSON schema reduced to what Gemini accepts, with properties kept in their written order."""
    if isinstance(schema, list):
        return [gemini_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "properties":
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
            out.setdefault("propertyOrdering", list(value))
        else:
            out[key] = gemini_schema(value)
    return out


@dataclass(frozen=True)
class ThinkingFamily:
    """How a family of Gemini models thinks: budgets it takes and the budget this project sends."""

    prefix: str
    default: int | None  # the budget sent when none is configured; None: leave the model's own thinking
    minimum: int  # the smallest budget above 0 the model takes
    maximum: int
    can_turn_off: bool  # whether budget 0 is allowed


# Google's documented budgets. The defaults bound thinking (and its cost) to 1,024 tokens where a
# budget applies: enough for a rubric, a plan or a label; Flash-Lite does not think unless asked.
# Gemini 3 prefers ``thinking_level`` to budgets: its own thinking is left alone, with room for it.
THINKING_FAMILIES = (
    ThinkingFamily("gemini-2.5-flash-lite", default=0, minimum=512, maximum=24576, can_turn_off=True),
    ThinkingFamily("gemini-2.5-flash", default=1024, minimum=1, maximum=24576, can_turn_off=True),
    ThinkingFamily("gemini-2.5-pro", default=1024, minimum=128, maximum=32768, can_turn_off=False),
    ThinkingFamily("gemini-3", default=None, minimum=1, maximum=32768, can_turn_off=False),
)


# Room for thinking the model bounds itself (-1) on a model this table does not know.
UNBOUNDED_ROOM = 24576


@dataclass(frozen=True)
class Thinking:
    """What one model is sent: ``budget`` (None: no thinking config) and the ``room`` added to
    ``max_output_tokens`` for it."""

    budget: int | None
    room: int


def thinking_family(model: str) -> ThinkingFamily | None:
    """The family of a Gemini chat model (the name without ``models/``; image models excluded)."""
    name = model.lower().removeprefix("models/")
    if "image" in name:
        return None
    return next((family for family in THINKING_FAMILIES if name.startswith(family.prefix)), None)


def gemini_thinking(model: str, budget: int | None = None) -> Thinking:
    """The thinking ``model`` is sent for a configured ``budget`` (None: its family's default).

    Raises ``ValueError`` for a budget the model refuses (0 for 2.5 Pro, outside its range).
    """
    family = thinking_family(model)
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < -1):
        raise ValueError(f"thinking_budget must be -1 (the model decides), 0 (off) or a token count, got {budget!r}")
    if family is None:  # a model that does not think, or one this table does not know: as configured
        return Thinking(budget, UNBOUNDED_ROOM if budget == -1 else max(budget or 0, 0))
    if budget is None:
        budget = family.default
    if budget is None or budget == -1:
        return Thinking(budget, family.maximum)
    if budget == 0:
        if not family.can_turn_off:
            raise ValueError(f"{model} cannot turn thinking off (thinking_budget 0); give {family.minimum}.."
                             f"{family.maximum}, or -1 to let the model decide")
        return Thinking(0, 0)
    if not family.minimum <= budget <= family.maximum:
        raise ValueError(f"{model} takes thinking_budget {family.minimum}..{family.maximum} "
                         f"(or -1{'' if not family.can_turn_off else ', 0'}), got {budget}")
    return Thinking(budget, budget)


class GeminiBackend(ConcurrentBatches):
    name = "gemini"
    supports_json_schema = True

    def __init__(
        self,
        model: str = "gemini-2.5-flash",
        *,
        base_url: str | None = None,
        api_key_env: str | tuple[str, ...] | list[str] | None = ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        thinking_budget: int | None = None,
        max_concurrency: int = 8,
    ) -> None:
        """``max_concurrency``: requests of one ``chat_batch`` in flight at once."""
        try:
            from google import genai
            from google.genai import types
        except ImportError as exc:
            raise BackendUnavailableError(
                "the gemini backend needs the 'google-genai' package: pip install 'imageedit-r1[api]'"
            ) from exc
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry
        self.max_concurrency = max(1, int(max_concurrency))
        try:
            self.thinking = gemini_thinking(model, thinking_budget)
        except ValueError as exc:
            raise BackendError(f"gemini backend: {exc}") from exc
        key = api_key_from_env(api_key_env, required=True, service=f"gemini backend ({model})")
        self._secrets = [key]
        http_options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours, bounded
        )
        self._client = genai.Client(api_key=key, http_options=http_options)

    def __repr__(self) -> str:  # never shows the key
        return f"GeminiBackend(model={self.model!r}, base_url={self.base_url!r})"

    def _encode(self, messages: list[ChatMessage]):
        from google.genai import types

        system = [m.text() for m in messages if m.role == "system"]
        contents = []
        for message in messages:
            if message.role == "system":
                continue
            parts = []
            for part in message.parts():
                if isinstance(part, str):
                    parts.append(types.Part.from_text(text=part))
                else:
                    parts.append(types.Part.from_bytes(data=image_png_bytes(part), mime_type="image/png"))
            contents.append(types.Content(role="model" if message.role == "assistant" else "user", parts=parts))
        return contents, ("\n\n".join(system) if system else None)

    def chat(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float | None = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> ChatResponse:
        from google.genai import types

        validate_messages(messages)
        contents, system = self._encode(messages)
        # ``max_tokens`` is the answer's room; thinking counts against the same limit, so it gets its own.
        limit = max_tokens + self.thinking.room
        config: dict[str, Any] = {"max_output_tokens": limit}
        if self.thinking.budget is not None:
            config["thinking_config"] = types.ThinkingConfig(thinking_budget=self.thinking.budget)
        if temperature is not None:
            config["temperature"] = temperature
        if seed is not None:
            config["seed"] = seed
        if system:
            config["system_instruction"] = system
        if json_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_schema"] = gemini_schema(json_schema)
        generate_config = types.GenerateContentConfig(**config)

        def attempt():
            return self._generate(contents, generate_config)

        def on_retry(attempt_number: int, exc: BaseException) -> None:
            logger.warning("gemini %s: attempt %d failed (%s); retrying", self.model, attempt_number, exc)

        started = time.perf_counter()
        response = call_with_retries(attempt, self.retry, on_retry=on_retry)
        return self._response(response, time.perf_counter() - started, limit)

    def _generate(self, contents, config):
        try:
            return self._client.models.generate_content(model=self.model, contents=contents, config=config)
        except Exception as exc:
            failure = classify_genai_error(exc, secrets=self._secrets, timeout=self.timeout)
            if failure is None:
                raise
            raise failure.to_exception(
                permanent=BackendError, refused=RefusalError, prefix=f"gemini {self.model}: "
            ) from exc

    def _response(self, response, seconds: float, limit: int) -> ChatResponse:
        blocked = gemini_prompt_block(response)
        if blocked:
            reason, detail = blocked
            raise RefusalError(
                f"gemini {self.model}: the prompt was blocked ({reason})" + (f": {detail}" if detail else ""),
                reason=reason,
            )
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise BackendError(f"gemini {self.model}: the answer has no candidates")
        candidate = candidates[0]
        finish = gemini_finish_reason(candidate)
        stopped = gemini_safety_stop(candidate)
        if stopped:
            _, categories = stopped
            raise RefusalError(
                f"gemini {self.model}: the answer was stopped ({finish})"
                + (f" for {', '.join(categories)}" if categories else ""),
                reason=finish,
            )
        parts = getattr(getattr(candidate, "content", None), "parts", None) or []
        text = "".join(part.text for part in parts if getattr(part, "text", None) and not getattr(part, "thought", False))
        usage = getattr(response, "usage_metadata", None)
        answer_tokens = getattr(usage, "candidates_token_count", None)
        thoughts = getattr(usage, "thoughts_token_count", None)
        reply = ChatResponse(
            text=text,
            model=getattr(response, "model_version", None) or self.model,
            prompt_tokens=getattr(usage, "prompt_token_count", None),
            # Thinking is billed as output: it is part of what the call cost.
            completion_tokens=None if answer_tokens is None and thoughts is None else (answer_tokens or 0) + (thoughts or 0),
            finish_reason={"STOP": "stop", "MAX_TOKENS": "length"}.get(finish or "", (finish or "").lower() or None),
            seconds=seconds,
            thinking_tokens=thoughts,
        )
        if not text and finish == "MAX_TOKENS":
            spent = f"{thoughts} of them thinking" if thoughts else "none of them text"
            raise TruncatedReply(
                f"gemini {self.model}: the answer was cut off at max_output_tokens={limit} ({spent}) before any "
                f"text; raise max_tokens (the answer's room) or lower thinking_budget "
                f"(now {self.thinking.budget if self.thinking.budget is not None else 'the model default'})",
                reply)
        if not text and finish != "STOP":
            raise BackendError(f"gemini {self.model}: empty answer (finish_reason={finish!r})")
        return reply
