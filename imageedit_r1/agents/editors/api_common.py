"""What the hosted image editors share: keys from the environment, SDK failures as editor errors.

How an SDK call failed (transient, quota, rejected key, content-policy block) is read by
``imageedit_r1.backends.sdk_errors``, the same rules the chat backends follow; this module maps
that reading onto the editor's own errors.
"""

from __future__ import annotations

from imageedit_r1.agents.editors.base import BaseEditor, EditorError, EditorUnavailableError, EditRefusedError
from imageedit_r1.backends.base import api_key_from_env as _first_key_in_env
from imageedit_r1.backends.sdk_errors import REFUSED, SdkFailure
from imageedit_r1.endpoints import RetryConfig, retry_policy
from imageedit_r1.retry import RetryPolicy


class HostedEditor(BaseEditor):
    """Connection settings every hosted editor takes; the SDK client is built on first use. ``retry``
    is an endpoint's ``RetryConfig`` (or its fields as a mapping, or a ``RetryPolicy``).

    ``key_optional_with_base_url``: a ``base_url`` then names a server of the same API (a local
    stand-in, a self-hosted gateway) that may need no key; a key in the environment is still sent.
    """

    key_optional_with_base_url = False

    def __init__(
        self,
        model: str,
        *,
        api_key_env: str | list[str] | tuple[str, ...],
        base_url: str | None,
        timeout: float,
        retry: RetryPolicy | RetryConfig | dict | None,
    ) -> None:
        self.model_id = model
        self.api_key_env = [api_key_env] if isinstance(api_key_env, str) else list(api_key_env)
        self.base_url = base_url
        self.timeout = float(timeout)
        self.retry = retry_policy(retry, "editor.options.retry")
        self._client = None
        self._secrets: list[str | None] = []


def api_key_from_env(names: list[str] | tuple[str, ...], service: str, *, optional: bool = False) -> str | None:
    """The first non-empty variable among ``names``; keys are read from the environment only.
    ``optional``: None when none is set, instead of an error."""
    key = _first_key_in_env(names, required=False, service=service)
    if key is None and optional:
        return None
    if key is None:
        raise EditorUnavailableError(
            f"no API key for {service}: set the environment variable {' or '.join(names)} "
            "(keys are read from the environment only, never from configs)"
        )
    return key


def editor_exception(failure: SdkFailure, model_id: str) -> Exception:
    """The editor's exception for a classified SDK failure (``RetryableError`` when transient)."""
    if failure.kind == REFUSED:
        return EditRefusedError(f"{model_id} refused the edit ({failure.reason}): {failure.detail}",
                                reason=failure.reason)
    return failure.to_exception(permanent=EditorError, refused=EditRefusedError, prefix=f"{model_id}: ")
