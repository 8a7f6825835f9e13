"""Errors in the OpenAI API's shape, so SDK clients react as they do to OpenAI itself.

Every refusal the service makes is an ``APIError``: an HTTP status and the body
``{"error": {"message", "type", "param", "code"}}``. The ``openai`` SDK raises by status:
400 ``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 429
``RateLimitError`` (retried after ``Retry-After``), 5xx ``InternalServerError``. A refusal by
the editor or a provider is a 400 ``content_policy_violation`` whose message carries the
provider's reason, as OpenAI words its own; ``error_for`` maps the pipeline's exceptions onto
these. Messages go through the secret policy (``imageedit_r1.masking``) before they leave.
"""

from __future__ import annotations

import math
from typing import Any

from imageedit_r1.masking import mask_text

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
MAX_MESSAGE_CHARS = 1000


class APIError(Exception):
    """One answer of the service that is not a success; ``body()`` is OpenAI's error object."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST, param: str | None = None,
                 code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    def __reduce__(self):  # crosses Ray's process boundary whole
        return (_rebuild, (self.status, self.message, self.type, self.param, self.code, self.retry_after))

    def body(self) -> dict[str, Any]:
        message = mask_text(self.message)[:MAX_MESSAGE_CHARS]
        return {"error": {"message": message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(0, math.ceil(self.retry_after)))}


def _rebuild(status, message, type_, param, code, retry_after) -> APIError:
    return APIError(status, message, type=type_, param=param, code=code, retry_after=retry_after)


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400: the request cannot be served as sent; the message says how to fix it."""
    return APIError(400, message, param=param, code=code)


def unknown_model(model: str, served: list[str]) -> APIError:
    return APIError(404, f"The model {model!r} is not served here; this service serves: {', '.join(served)}",
                    param="model", code="model_not_found")


def unauthorized() -> APIError:
    return APIError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>' with a key this "
                    "service was started with (--api-keys-file)", code="invalid_api_key")


def queue_full(status: int, retry_after: float) -> APIError:
    return APIError(status, "The service is at capacity: every editor is busy and the queue is full; "
                    f"retry after {max(0, math.ceil(retry_after))} s", type="rate_limit_error" if status == 429
                    else SERVER_ERROR, code="queue_full", retry_after=retry_after)


def refused(reason: str, message: str) -> APIError:
    return APIError(400, f"The edit was refused ({reason}): {message}", code="content_policy_violation")


def server_error(message: str) -> APIError:
    return APIError(500, message, type=SERVER_ERROR)


def unavailable(message: str, retry_after: float | None = None) -> APIError:
    return APIError(503, message, type=SERVER_ERROR, code="unavailable", retry_after=retry_after)


def error_for(exc: BaseException, stage: str) -> APIError:
    """The answer for a pipeline exception raised while ``stage`` ("planning", "editing") ran."""
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.plan import PlanError
    from imageedit_r1.pipeline.trace import EditFailed
    from imageedit_r1.refusals import refusal_record
    from imageedit_r1.unavailable import is_unavailable

    if isinstance(exc, APIError):
        return exc
    refusal = refusal_record(exc)
    if refusal is None and isinstance(exc, EditFailed) and exc.trace.get("status") == "refused":
        refusal = exc.trace.get("refusal") or {}
    if refusal is not None:
        return refused(refusal.get("reason") or "declined", refusal.get("message") or str(exc))
    if isinstance(exc, PlanError):
        return invalid(f"the plan cannot be executed: {exc}", param="plan")
    if isinstance(exc, ImageLoadError):
        return invalid(f"the image could not be read: {exc}", param="image", code="invalid_image")
    if is_unavailable(exc):
        return unavailable(f"{stage} cannot run on this server: {exc}")
    if isinstance(exc, ValueError):  # the pipeline's checks of its inputs (an empty request, ...)
        return invalid(str(exc))
    if isinstance(exc, EditFailed):
        return server_error(str(exc))
    return server_error(f"{stage} failed: {type(exc).__name__}: {exc}")
