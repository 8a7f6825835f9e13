"""OpenAI chat completions, and any OpenAI-compatible server (vLLM, SGLang, LM Studio) via ``base_url``.

Images travel as ``data:image/png;base64,…`` URLs. A JSON schema becomes
``response_format={"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}``,
which OpenAI and vLLM enforce while decoding. The SDK's own retries are off: this backend
retries 408/409/429/5xx, timeouts, dropped connections and malformed bodies within its
``RetryPolicy`` (the rules of ``sdk_errors``, shared with the hosted image editors). A refusal,
a ``content_filter`` stop or a request blocked for its content raises ``RefusalError``.

``chat_batch`` sends its conversations as concurrent requests, at most ``max_concurrency`` in flight
(a vLLM server batches what arrives together); each conversation gets its answer or its own error.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from imageedit_r1.backends.base import (
    BackendError,
    BackendUnavailableError,
    ChatMessage,
    ChatResponse,
    RefusalError,
    TruncatedReply,
    api_key_from_env,
    image_data_url,
    validate_messages,
)
from imageedit_r1.backends.batching import ConcurrentBatches
from imageedit_r1.backends.sdk_errors import classify_openai_error
from imageedit_r1.images import fit_to_budget
from imageedit_r1.retry import RetryableError, RetryPolicy, call_with_retries

logger = logging.getLogger("imageedit_r1.backends.openai")


class OpenAIBackend(ConcurrentBatches):
    name = "openai"
    # A base_url means an OpenAI-compatible server (vLLM, a local endpoint): it may need no key.
    key_optional_with_base_url = True

    def __init__(
        self,
        model: str = "gpt-4o",
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        structured_output: bool = True,
        image_detail: str | None = None,
        extra_body: dict[str, Any] | None = None,
        image_budget: Any = "off",
        max_concurrency: int = 8,
    ) -> None:
        """``base_url`` set means an OpenAI-compatible server: a key is then optional.

        ``max_concurrency``: requests of one ``chat_batch`` in flight at once.

        ``image_budget``: for a server running the Qwen decomposer (vLLM), ``"auto"`` or
        ``{"min_pixels": …, "max_pixels": …}`` resizes every image here with Qwen's smart-resize
        arithmetic (``imageedit_r1.image_budget``), so any server sees the trained token count;
        ``"off"`` (default) sends images as they are.

        ``structured_output=False`` for a server that lacks ``response_format`` json_schema:
        the schema is then left to the caller's prompt and validation.
        """
        try:
            import openai
        except ImportError as exc:
            raise BackendUnavailableError("the openai backend needs the 'openai' package: pip install 'imageedit-r1[api]'") from exc
        self.model = model
        self.base_url = base_url
        self.retry = retry
        self.timeout = timeout
        self.supports_json_schema = structured_output
        self.image_detail = image_detail
        self.extra_body = dict(extra_body or {})
        self.max_concurrency = max(1, int(max_concurrency))
        from imageedit_r1.image_budget import ImageBudgetError, resolve

        try:
            self.image_budget = resolve(image_budget, model)
        except ImageBudgetError as exc:
            raise BackendError(f"openai backend ({model}): {exc}") from exc
        # A self-hosted server usually needs no key; the SDK still wants a non-empty string.
        key = api_key_from_env(api_key_env, required=not (base_url and self.key_optional_with_base_url),
                               service=f"openai backend ({model})")
        self._secrets = [key]
        # The client is thread-safe; one per backend reuses its connection pool.
        self._client = openai.OpenAI(api_key=key or "EMPTY", base_url=base_url, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def _encode(self, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        encoded = []
        for message in messages:
            if isinstance(message.content, str):
                encoded.append({"role": message.role, "content": message.content})
                continue
            parts: list[dict[str, Any]] = []
            for part in message.parts():
                if isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                else:
                    image_url: dict[str, Any] = {"url": image_data_url(fit_to_budget(part, self.image_budget))}
                    if self.image_detail:
                        image_url["detail"] = self.image_detail
                    parts.append({"type": "image_url", "image_url": image_url})
            encoded.append({"role": message.role, "content": parts})
        return encoded

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
        validate_messages(messages)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": self._encode(messages),
            "max_completion_tokens": max_tokens,
        }
        if temperature is not None:
            request["temperature"] = temperature
        if seed is not None:
            request["seed"] = seed
        if json_schema is not None and self.supports_json_schema:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": json_schema},
            }
        if self.extra_body:
            request["extra_body"] = self.extra_body

        def attempt():
            return self._create(request)

        def on_retry(attempt_number: int, exc: BaseException) -> None:
            logger.warning("openai %s: attempt %d failed (%s); retrying", self.model, attempt_number, exc)

        started = time.perf_counter()
        completion = call_with_retries(attempt, self.retry, on_retry=on_retry)
        return self._response(completion, time.perf_counter() - started, max_tokens)

    def _create(self, request: dict[str, Any]):
        try:
            completion = self._client.chat.completions.create(**request)
        except Exception as exc:
            failure = classify_openai_error(exc, secrets=self._secrets, timeout=self.timeout)
            if failure is None:
                raise
            raise failure.to_exception(
                permanent=BackendError, refused=RefusalError, prefix=f"openai {self.model}: "
            ) from exc
        if not getattr(completion, "choices", None):
            raise RetryableError("malformed response: no choices")
        return completion

    def _response(self, completion, seconds: float, limit: int) -> ChatResponse:
        choice = completion.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise RefusalError(f"openai {self.model} refused: {refusal}", reason="refusal")
        if choice.finish_reason == "content_filter":
            raise RefusalError(f"openai {self.model}: the answer was blocked by the provider's content filter",
                               reason="content_filter")
        usage = getattr(completion, "usage", None)
        details = getattr(usage, "completion_tokens_details", None)
        reply = ChatResponse(
            text=message.content or "",
            model=completion.model or self.model,  # the snapshot served, e.g. gpt-4o-2024-08-06 for gpt-4o
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),  # reasoning tokens included
            finish_reason=choice.finish_reason,
            seconds=seconds,
            thinking_tokens=getattr(details, "reasoning_tokens", None),
        )
        if not message.content and choice.finish_reason == "length":  # a reasoning model spent it all thinking
            raise TruncatedReply(f"openai {self.model}: the answer was cut off at max_completion_tokens={limit} "
                                 f"({reply.thinking_tokens or 0} reasoning tokens) before any text; raise max_tokens",
                                 reply)
        if message.content is None:
            raise BackendError(f"openai {self.model}: empty answer (finish_reason={choice.finish_reason!r})")
        return reply
