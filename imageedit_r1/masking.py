"""The secret policy: every key a run can reach is masked, by value, wherever text leaves the process.

A secret is the value of

- a variable an endpoint names in ``api_key_env`` (agents, judges, verifier, teacher, editors),
  registered when a config is loaded (``register_config``) and when a backend reads its key;
- a provider's conventional variable (``CONVENTIONAL_VARIABLES``: OPENAI_API_KEY, HF_TOKEN, ...);
- a variable a config read through ``${oc.env:NAME}`` (registered by ``imageedit_r1.config``);
- a variable whose name says key, token, secret, password, credential or auth;

and any value registered directly (the app's login passwords). Values are looked up when a text
is masked, so a key set after start-up is masked too. ``mask`` walks strings, dicts (keys too),
lists and tuples: traces, records, run.json, pages and downloads go through it; run logs go
through ``MaskingFilter``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
CONVENTIONAL_VARIABLES = (
    "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY",
    "VLLM_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "WANDB_API_KEY",
)
# A part of the name (between underscores), or its ending: OPENAI_API_KEY, HF_TOKEN, DB_PASSWORD, MYKEY.
SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)(_|$)|(KEY|TOKEN|SECRET)$",
                         re.IGNORECASE)
MIN_ENV_LENGTH = 6  # shorter values ("1", "true") would mask ordinary words
MIN_VALUE_LENGTH = 4

_variables: set[str] = set()
_values: set[str] = set()
_lock = threading.Lock()


def register_variables(names: str | Iterable[str | None] | None) -> None:
    """Mask the values of these environment variables from now on (an endpoint's ``api_key_env``)."""
    if names is None:
        return
    names = [names] if isinstance(names, str) else [name for name in names if name]
    with _lock:
        _variables.update(names)


def register_values(values: Iterable[str | None]) -> None:
    """Mask these literal values from now on (the app's login passwords)."""
    with _lock:
        _values.update(value for value in values if value and len(value) >= MIN_VALUE_LENGTH)


def register_config(config: Any) -> None:
    """Register every ``api_key_env`` in a config (dataclasses, dicts and lists, at any depth)."""
    import dataclasses

    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if item.name == "api_key_env":
                register_variables(value)
            else:
                register_config(value)
    elif isinstance(config, dict):
        for key, value in config.items():
            if key == "api_key_env" and isinstance(value, (str, list, tuple)):
                register_variables(value)
            else:
                register_config(value)
    elif isinstance(config, (list, tuple)):
        for item in config:
            register_config(item)


def is_secret_name(name: str) -> bool:
    return name in CONVENTIONAL_VARIABLES or bool(SECRET_NAME.search(name))


def secret_values(extra: Iterable[str | None] = ()) -> list[str]:
    """Every value masked now (and the ``extra`` ones), longest first."""
    with _lock:
        variables, values = set(_variables), set(_values)
    # Stripped, as the backends read them: a key exported with a trailing newline is still found.
    found = {value.strip() for name, value in os.environ.items()
             if (name in variables or is_secret_name(name)) and len(value.strip()) >= MIN_ENV_LENGTH}
    found |= values | {value for value in extra if value and len(value) >= MIN_VALUE_LENGTH}
    return sorted(found, key=len, reverse=True)


def _mask(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {_mask(key, secrets): _mask(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(item, secrets) for item in value]
    return value


def mask(value: Any, extra: Iterable[str | None] = ()) -> Any:
    """``value`` (a string, or dicts / lists / tuples of them) with every secret replaced by ``MASK``."""
    secrets = secret_values(extra)
    return _mask(value, secrets) if secrets else value


def mask_text(text: str, extra: Iterable[str | None] = ()) -> str:
    return mask(str(text), extra)


class MaskingFilter(logging.Filter):
    """A log handler filter that masks secrets in each record's message (arguments included) and
    in its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
