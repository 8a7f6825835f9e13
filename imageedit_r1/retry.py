"""Bounded retries with exponential backoff and jitter, for every external call.

A call is retried only for errors the caller marks as transient (rate limits, 5xx, timeouts),
at most ``attempts`` times in total; the last error is raised with the attempt count so a
caller can record it as a failure. Nothing here loops without bound.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class RetryableError(RuntimeError):
    """A transient failure worth another attempt (HTTP 429/5xx, timeouts, dropped connections)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhausted(RuntimeError):
    def __init__(self, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if retry_after is not None:
            wait = min(self.max_delay, max(wait, retry_after))
        return wait * (1.0 + random.uniform(-self.jitter, self.jitter))


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy = RetryPolicy(),
    *,
    is_retryable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, RetryableError),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    if policy.attempts < 1:
        raise ValueError("RetryPolicy.attempts must be >= 1")
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_retryable(exc):
                raise
            if attempt == policy.attempts:
                raise RetriesExhausted(attempt, exc) from exc
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(policy.delay(attempt, getattr(exc, "retry_after", None)))
    raise AssertionError("unreachable")
