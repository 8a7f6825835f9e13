"""How the hosted-API SDKs (``openai``, ``google-genai``) fail, read one way for every caller.

The chat backends and the hosted image editors call the same SDKs and must agree on what is worth
another attempt. ``classify_openai_error`` and ``classify_genai_error`` turn an exception raised
by an SDK call into an ``SdkFailure``: its ``kind`` is ``transient`` (HTTP 408/429/5xx, timeouts, dropped connections,
malformed bodies), ``quota`` (an exhausted account), ``auth`` (a rejected key), ``refused`` (a
content-policy block) or ``permanent``; its text is redacted. Each caller maps that onto its own
error types with ``SdkFailure.to_exception``. ``gemini_prompt_block`` and ``gemini_safety_stop``
read a Gemini answer withheld by the safety system.

Nothing here imports an SDK at module level: ``import imageedit_r1`` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imageedit_r1.masking import mask_text
from imageedit_r1.retry import RetryableError

TRANSIENT = "transient"
QUOTA = "quota"
AUTH = "auth"
REFUSED = "refused"
PERMANENT = "permanent"

# Statuses worth another attempt besides every 5xx (409 is a conflict that OpenAI asks to retry).
OPENAI_RETRY_STATUSES = frozenset({408, 409, 429})
GENAI_RETRY_STATUSES = frozenset({408, 429})
# OpenAI error codes that mean the request was blocked by a content policy.
OPENAI_REFUSAL_CODES = frozenset(
    {"moderation_blocked", "content_policy_violation", "safety_violation", "image_generation_user_error"}
)
# Gemini finish reasons that mean the answer was withheld on policy grounds.
GEMINI_SAFETY_FINISH = frozenset({
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
    "RECITATION", "IMAGE_RECITATION", "MODEL_ARMOR",
})

# Connection-level failures, by class name, for transports whose classes are not imported here
# (requests, aiohttp, the standard library's ConnectionError / TimeoutError).
_TRANSPORT_NAMES = frozenset({
    "TimeoutException", "ConnectError", "ReadError", "WriteError", "RemoteProtocolError", "ConnectTimeout",
    "ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectionError", "Timeout", "TimeoutError",
})
_TIMEOUT_NAMES = frozenset({
    "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "Timeout", "TimeoutError",
})
_MAX_DETAIL = 500


@dataclass(frozen=True)
class SdkFailure:
    """What went wrong in one SDK call; ``message`` is a short redacted description."""

    kind: str
    message: str
    status: int | None = None
    code: str | None = None
    detail: str = ""  # the provider's own (redacted) words, when there are any
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind == TRANSIENT

    def to_exception(self, *, permanent: type[Exception], refused: type[Exception], prefix: str = "") -> Exception:
        """The caller's exception for this failure: ``RetryableError`` when transient, ``refused``
        (called with ``reason=``) for a content-policy block, else ``permanent``; each message
        starts with ``prefix``."""
        text = prefix + self.message
        if self.transient:
            return RetryableError(text, self.retry_after)
        if self.kind == REFUSED:
            return refused(text, reason=self.reason)
        return permanent(text)

    @property
    def reason(self) -> str:
        """The provider's code for a refusal (``moderation_blocked``), else the HTTP status."""
        return self.code or (f"HTTP {self.status}" if self.status else self.kind)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from a ``retry-after-ms`` or ``Retry-After`` header, when it holds a number."""
    if headers is None or not hasattr(headers, "get"):
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return float(millis) / 1000.0
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def enum_name(value: Any) -> str | None:
    """The name an SDK enum (or a plain string standing in for one) goes by; None for None."""
    if value is None:
        return None
    return getattr(value, "value", None) or getattr(value, "name", None) or str(value)


def _httpx_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(timeout, transport) exception classes of whichever httpx flavours are installed."""
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


def _transport_failure(exc: BaseException, clean, timeout: float | None) -> SdkFailure | None:
    timeouts, transports = _httpx_classes()
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, timeouts) or names & _TIMEOUT_NAMES:
        return SdkFailure(TRANSIENT, f"timed out after {timeout:g}s" if timeout else f"timed out: {clean(exc)}")
    if isinstance(exc, transports) or names & _TRANSPORT_NAMES:
        return SdkFailure(TRANSIENT, f"connection failed: {type(exc).__name__}: {clean(exc)}")
    return None


def _status_failure(
    status: int, code: str | None, detail: str, retry_statuses: frozenset[int], retry_after: float | None
) -> SdkFailure:
    if status == 429 and code == "insufficient_quota":  # a 429 that waiting will not fix
        return SdkFailure(QUOTA, f"quota exhausted (HTTP 429 insufficient_quota): {detail}", status, code, detail)
    if status in retry_statuses or status >= 500:
        return SdkFailure(TRANSIENT, f"HTTP {status}: {detail}", status, code, detail, retry_after)
    if status == 401:
        return SdkFailure(AUTH, f"the API key was rejected (HTTP 401): {detail}", status, code, detail)
    return SdkFailure(PERMANENT, f"HTTP {status}: {detail}", status, code, detail)


def classify_openai_error(
    exc: BaseException, *, secrets: Sequence[str | None] = (), timeout: float | None = None
) -> SdkFailure | None:
    """An exception from an ``openai`` client call, classified; None when it is not the SDK's."""
    import openai

    def clean(error: BaseException) -> str:
        return mask_text(str(error), secrets)[:_MAX_DETAIL]

    if isinstance(exc, openai.APITimeoutError):
        return SdkFailure(TRANSIENT, f"timed out after {timeout:g}s" if timeout else "timed out")
    if isinstance(exc, openai.APIConnectionError):
        return SdkFailure(TRANSIENT, f"connection failed: {clean(exc)}")
    if isinstance(exc, openai.APIStatusError):
        status = int(exc.status_code)
        code = str(getattr(exc, "code", "") or "") or None
        detail = mask_text(str(getattr(exc, "message", None) or exc), secrets)[:_MAX_DETAIL]
        if code in OPENAI_REFUSAL_CODES or "safety system" in detail.lower():
            reason = f"{code}, HTTP {status}" if code else f"HTTP {status}"
            return SdkFailure(REFUSED, f"refused by the content policy ({reason}): {detail}", status, code, detail)
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return _status_failure(status, code, detail, OPENAI_RETRY_STATUSES, parse_retry_after(headers))
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):  # a body that is not the expected JSON
        return SdkFailure(TRANSIENT, f"malformed response: {clean(exc)}")
    return _transport_failure(exc, clean, timeout)


def classify_genai_error(
    exc: BaseException, *, secrets: Sequence[str | None] = (), timeout: float | None = None
) -> SdkFailure | None:
    """An exception from a ``google-genai`` client call, classified; None when it is not the SDK's.

    The SDK lets its HTTP library's errors through, so timeouts and dropped connections arrive
    as httpx (or similar) exceptions.
    """
    from google.genai import errors

    def clean(error: BaseException) -> str:
        return mask_text(str(error), secrets)[:_MAX_DETAIL]

    if isinstance(exc, errors.APIError):
        status = int(exc.code or 0)
        code = str(exc.status or "") or None  # "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", ...
        detail = mask_text(f"{exc.status or ''} {exc.message or exc}".strip(), secrets)[:_MAX_DETAIL]
        if status == 403:  # PERMISSION_DENIED: a key without access to this model or API
            return SdkFailure(AUTH, f"the API key was refused access (HTTP 403): {detail}", status, code, detail)
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return _status_failure(status, code, detail, GENAI_RETRY_STATUSES, parse_retry_after(headers))
    transport = _transport_failure(exc, clean, timeout)
    if transport is not None:
        return transport
    if isinstance(exc, (json.JSONDecodeError, ValueError)):  # a proxy's error page, a torn body
        return SdkFailure(TRANSIENT, f"malformed response: {clean(exc)}")
    return None


# ----------------------------------------------------------------------------- Gemini answers


def gemini_prompt_block(response: Any) -> tuple[str, str | None] | None:
    """(block reason, the service's explanation) when Gemini blocked the prompt, else None."""
    feedback = getattr(response, "prompt_feedback", None)
    reason = enum_name(getattr(feedback, "block_reason", None))
    if not reason or reason == "BLOCKED_REASON_UNSPECIFIED":
        return None
    return reason, getattr(feedback, "block_reason_message", None) or None


def gemini_finish_reason(candidate: Any) -> str | None:
    return enum_name(getattr(candidate, "finish_reason", None))


def gemini_safety_stop(candidate: Any) -> tuple[str, list[str]] | None:
    """(finish reason, blocked safety categories) when Gemini withheld the answer, else None."""
    finish = gemini_finish_reason(candidate)
    if finish not in GEMINI_SAFETY_FINISH:
        return None
    blocked = [
        str(enum_name(rating.category))
        for rating in (getattr(candidate, "safety_ratings", None) or [])
        if getattr(rating, "blocked", False)
    ]
    return finish, blocked
