"""YAML configs with dotlist overrides (the EasyR1 / verl convention), over dataclass defaults.

Every config of the project (pipeline, evaluation, data labelling) loads through ``load_config``,
so a typo in a key is caught the same way everywhere: one ``ConfigError`` line naming the key
and the key that was probably meant (``unknown_key_message``). Every value a config reads through
``${oc.env:NAME}``, and every ``api_key_env`` it names, is handed to the secret policy
(``imageedit_r1.masking``) as it loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_ENV_REFERENCE = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")


class ConfigError(ValueError):
    """A config cannot be loaded: an unknown key, a value of the wrong type, a malformed override."""


def did_you_mean(key: str, known: Iterable[str]) -> str | None:
    """The known key closest to ``key`` (difflib ratio ≥ 0.6), or None."""
    close = difflib.get_close_matches(key, sorted(set(known)), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_message(full_key: str, known: Iterable[str], *, where: str = "") -> str:
    """``unknown config key 'a.b' (did you mean 'a.c'?)``: the one line every config reports."""
    leaf = full_key.rsplit(".", 1)[-1]
    hint = did_you_mean(leaf, known)
    if hint is not None and "." in full_key:
        hint = f"{full_key.rsplit('.', 1)[0]}.{hint}"
    prefix = f"{where}: " if where else ""
    return f"{prefix}unknown config key {full_key!r}" + (f" (did you mean {hint!r}?)" if hint else "")


def _fields(object_type: Any) -> list[str]:
    if isinstance(object_type, type) and dataclasses.is_dataclass(object_type):
        return [f.name for f in dataclasses.fields(object_type)]
    return []


def config_error(exc: Exception, *, where: str = "") -> ConfigError:
    """One readable line for an omegaconf error (unknown key, bad type, bad override syntax)."""
    from omegaconf.errors import ConfigKeyError, GrammarParseError, ValidationError

    full_key = str(getattr(exc, "full_key", "") or getattr(exc, "key", "") or "")
    object_type = getattr(exc, "object_type", None)
    prefix = f"{where}: " if where else ""
    if isinstance(exc, ConfigKeyError) or "not in struct" in str(exc):
        return ConfigError(unknown_key_message(full_key, _fields(object_type), where=where))
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ValidationError) and full_key:
        return ConfigError(f"{prefix}bad value for config key {full_key!r}: {first_line}")
    if isinstance(exc, GrammarParseError):
        return ConfigError(f"{prefix}cannot parse the override: {first_line}")
    return ConfigError(f"{prefix}{f'{full_key!r}: ' if full_key else ''}{first_line}")


def register_secrets(unresolved: Any, config: Any) -> None:
    """Hand the secret policy what a config can reach: the variables it read through
    ``${oc.env:NAME}`` (found in its unresolved form) and every ``api_key_env`` it names."""
    from imageedit_r1.masking import register_config, register_variables

    register_variables(_ENV_REFERENCE.findall(json.dumps(unresolved, default=str)))
    register_config(config)


def load_config(schema: type[T] | None, path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                *, data: dict[str, Any] | None = None, where: str = "") -> Any:
    """Merge ``schema`` defaults ← YAML file (or the mapping ``data``) ← ``key=value`` overrides.

    Unknown keys are errors. ``where`` names the source in messages when ``data`` is given.

    Returns an instance of ``schema`` (a dataclass) or, with no schema, a plain dict.
    Raises ``FileNotFoundError`` for a missing file and ``ConfigError`` (a ``ValueError``) for an
    unknown key, a value of the wrong type or a malformed override, in one line.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if path is not None and not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {bad}")
    where = f"{os.fspath(path)}" if path is not None else where
    try:
        base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
        layers = [base]
        if path is not None or data is not None:
            try:
                layers.append(OmegaConf.load(path) if path is not None else OmegaConf.create(data))
                merged = OmegaConf.merge(*layers)
            except OmegaConfBaseException as exc:
                raise config_error(exc, where=where) from None
            layers = [merged]
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        config = OmegaConf.to_object(merged) if schema is not None else OmegaConf.to_container(merged, resolve=True)
        register_secrets(OmegaConf.to_container(merged, resolve=False), config)
        return config
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None


def apply_overrides(config: T, overrides: Sequence[str] = ()) -> T:
    """A copy of the dataclass ``config`` with ``key=value`` overrides merged in (same errors as ``load_config``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {bad}")
    if not overrides:
        return config
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config), OmegaConf.from_dotlist(list(overrides)))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    register_secrets(list(overrides), config)
    return config
