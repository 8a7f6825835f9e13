"""Check a chat backend's settings before it is built: option names, API key, model weights.

Used by every command that builds backends (pipeline, eval, data label), so a typo, a missing key
or a model that is not on this machine is reported at once, before any other work.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any

from imageedit_r1.config import unknown_key_message

# Backends that run a model in this process: their ``model`` must be a folder or a reachable hub id.
LOCAL_BACKENDS = ("transformers", "vllm")


def accepted_options(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword names ``factory`` accepts, and whether it takes any (``**kwargs``).

    A class whose ``__init__`` passes ``**options`` on to its base's accepts the base's names too
    (followed up the MRO until an ``__init__`` without ``**``).
    """
    inits = [cls.__dict__["__init__"] for cls in factory.__mro__ if "__init__" in cls.__dict__] \
        if isinstance(factory, type) else [factory]
    names: list[str] = []
    for init in inits:
        params = list(inspect.signature(init).parameters.values())
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name != "self" and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def unknown_options(factory: Callable[..., Any], options: Iterable[str], setting: str,
                    *, skip: Iterable[str] = ()) -> list[str]:
    """One message per option name ``factory`` does not accept (with the name probably meant)."""
    names, open_ended = accepted_options(factory)
    if open_ended:
        return []
    accepted = [name for name in names if name not in set(skip)]
    return [unknown_key_message(f"{setting}.{name}", accepted) for name in options if name not in accepted]


def api_key_problem(factory: Callable[..., Any], options: dict[str, Any], what: str, setting: str) -> str | None:
    """A missing key for ``factory`` (which reads the variables named by its ``api_key_env``).

    None for a ``base_url`` when the factory says a server of its API may need no key
    (``key_optional_with_base_url``: the OpenAI chat backend and image editor)."""
    params = inspect.signature(factory).parameters
    if "api_key_env" not in params:
        return None
    if options.get("base_url") and getattr(factory, "key_optional_with_base_url", False):
        return None
    names = options.get("api_key_env") or params["api_key_env"].default
    names = [names] if isinstance(names, str) else list(names or [])
    if not names or any(os.environ.get(name, "").strip() for name in names):
        return None
    return (f"no API key for {what}: set the environment variable {' or '.join(names)} "
            f"(or {setting}.api_key_env to the variable that holds it)")


def backend_problems(name: str, options: dict[str, Any], setting: str, *, check_models: bool = True) -> list[str]:
    """Problems of ``build_backend(name, **options)``; ``setting`` is the config prefix for messages."""
    from imageedit_r1.backends import _resolve, available_backends

    if name not in available_backends():
        return [f"{setting}.backend: unknown chat backend {name!r}; choose one of {available_backends()}"]
    factory = _resolve(name)
    names, open_ended = accepted_options(factory)
    problems = [] if open_ended else [
        unknown_key_message(f"{setting}.options.{key}", names) for key in options if key not in names]
    model = str(options.get("model") or "")
    missing_key = api_key_problem(factory, options, f"{setting} ({name}, {model})", setting)
    if missing_key:
        problems.append(missing_key)
    if check_models and name in LOCAL_BACKENDS:
        from imageedit_r1.hub import model_problem

        missing = model_problem(model, setting=f"{setting}.model", what=f"{setting} model")
        if missing:
            problems.append(missing)
    return problems
