"""What the hosted image editors share: keys from the environment, transient-error detection."""

from __future__ import annotations

import os

from imageedit_r1.agents.editors.base import EditorUnavailableError

# Connection-level failures worth another attempt, by class name across httpx / httpx2 / requests.
_TRANSIENT_NAMES = {
    "TimeoutException", "ConnectError", "ReadError", "WriteError", "RemoteProtocolError",
    "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectionError", "Timeout",
}


def is_transient_transport_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def api_key_from_env(names: list[str] | tuple[str, ...], service: str) -> str:
    """The first non-empty variable among ``names``; keys are read from the environment only."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise EditorUnavailableError(
        f"no API key for {service}: set the environment variable {' or '.join(names)} "
        "(keys are read from the environment only, never from configs)"
    )


def retry_after_seconds(headers) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
