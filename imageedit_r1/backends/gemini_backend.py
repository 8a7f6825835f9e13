"""Google Gemini through the ``google-genai`` SDK.

Images travel as inline PNG parts. A JSON schema becomes
``response_mime_type="application/json"`` + ``response_schema``, enforced by the API. A prompt
blocked by the safety system (``prompt_feedback.block_reason``) or an answer stopped for safety
(``finish_reason`` SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII, IMAGE_SAFETY, …) raises
``RefusalError``. The SDK's own retries are off; this backend retries 408/429/5xx, timeouts,
dropped connections and malformed bodies within its ``RetryPolicy``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from imageedit_r1.backends.base import (
    BackendError,
    ChatMessage,
    ChatResponse,
    RefusalError,
    api_key_from_env,
    image_png_bytes,
    parse_retry_after,
    redact,
    validate_messages,
)
from imageedit_r1.retry import RetryableError, RetryPolicy, call_with_retries

logger = logging.getLogger("imageedit_r1.backends.gemini")

_RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
_SAFETY_FINISH = {
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "IMAGE_RECITATION",
}


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


def _http_error_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeout, transport) exception classes of whichever httpx flavours the SDK uses."""
    import importlib

    timeouts: list[type] = []
    transports: list[type] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return getattr(value, "value", None) or getattr(value, "name", None) or str(value)


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
            raise BackendError(
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
        from google.genai import errors

        timeouts, transports = _http_error_classes()
        try:
            return self._client.models.generate_content(model=self.model, contents=contents, config=config)
        except errors.APIError as exc:
            message = redact(f"{exc.status or ''} {exc.message or exc}".strip(), self._secrets)[:500]
            if exc.code in _RETRY_STATUSES or (exc.code or 0) >= 500:
                headers = getattr(getattr(exc, "response", None), "headers", None)
                raise RetryableError(f"HTTP {exc.code}: {message}", parse_retry_after(headers)) from exc
            raise BackendError(f"gemini {self.model}: HTTP {exc.code}: {message}") from exc
        except timeouts as exc:
            raise RetryableError(f"timed out after {self.timeout:g}s") from exc
        except transports as exc:
            raise RetryableError(f"connection failed: {redact(str(exc), self._secrets)[:300]}") from exc
        except (json.JSONDecodeError, ValueError) as exc:
            # A body that is not the JSON the SDK expects (a proxy's error page, a torn answer).
            raise RetryableError(f"malformed response: {redact(str(exc), self._secrets)[:300]}") from exc

    def _response(self, response, seconds: float) -> ChatResponse:
        feedback = getattr(response, "prompt_feedback", None)
        block_reason = _enum_name(getattr(feedback, "block_reason", None))
        if block_reason and block_reason != "BLOCKED_REASON_UNSPECIFIED":
            detail = getattr(feedback, "block_reason_message", None)
            raise RefusalError(
                f"gemini {self.model}: the prompt was blocked ({block_reason})" + (f": {detail}" if detail else "")
            )
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise BackendError(f"gemini {self.model}: the answer has no candidates")
        candidate = candidates[0]
        finish = _enum_name(getattr(candidate, "finish_reason", None))
        if finish in _SAFETY_FINISH:
            blocked = [
                _enum_name(rating.category)
                for rating in (getattr(candidate, "safety_ratings", None) or [])
                if getattr(rating, "blocked", False)
            ]
            raise RefusalError(
                f"gemini {self.model}: the answer was stopped ({finish})"
                + (f" for {', '.join(str(b) for b in blocked)}" if blocked else "")
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
