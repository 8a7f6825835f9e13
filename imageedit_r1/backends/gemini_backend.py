"""Google Gemini through the ``google-genai`` SDK.

Images travel as inline PNG parts. A JSON schema becomes
``response_mime_type="application/json"`` + ``response_schema``, enforced by the API. A prompt
blocked by the safety system (``prompt_feedback.block_reason``) or an answer stopped for safety
(``finish_reason`` SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII, IMAGE_SAFETY, …) raises
``RefusalError``. The SDK's own retries are off; this backend retries 408/429/5xx, timeouts,
dropped connections and malformed bodies within its ``RetryPolicy``.
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
    api_key_from_env,
    image_png_bytes,
    validate_messages,
)
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


class GeminiBackend:
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
    ) -> None:
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
        config: dict[str, Any] = {"max_output_tokens": max_tokens}
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
        return self._response(response, time.perf_counter() - started)

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

    def _response(self, response, seconds: float) -> ChatResponse:
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
        if not text and finish not in ("STOP", "MAX_TOKENS"):
            raise BackendError(f"gemini {self.model}: empty answer (finish_reason={finish!r})")
        usage = getattr(response, "usage_metadata", None)
        return ChatResponse(
            text=text,
            model=getattr(response, "model_version", None) or self.model,
            prompt_tokens=getattr(usage, "prompt_token_count", None),
            completion_tokens=getattr(usage, "candidates_token_count", None),
            finish_reason={"STOP": "stop", "MAX_TOKENS": "length"}.get(finish or "", (finish or "").lower() or None),
            seconds=seconds,
        )
