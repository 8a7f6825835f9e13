"""YAML configs with dotlist overrides (the EasyR1 / verl convention), over dataclass defaults.

Every config of the project (pipeline, evaluation, data labelling) loads through ``load_config``,
so a typo in a key is caught the same way everywhere: one ``ConfigError`` line naming the key
and the key that was probably meant (``unknown_key_message``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


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


def _parse_overrides(overrides: Sequence[str]):
    """The dotlist as omegaconf reads it; a value YAML cannot read (``key=[1,``) is one line too."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException:
        raise
    except Exception:  # yaml's scanner and parser errors on a value: name the override
        for item in overrides:
            try:
                OmegaConf.from_dotlist([item])
            except Exception as exc:
                problem = "; ".join(str(exc).splitlines()[:2]) or type(exc).__name__
                raise ConfigError(f"cannot parse the override {item!r}: {problem}") from None
        raise


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
            layers.append(_parse_overrides(overrides))
        merged = OmegaConf.merge(*layers)
        if schema is not None:
            return OmegaConf.to_object(merged)
        return OmegaConf.to_container(merged, resolve=True)
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
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config), _parse_overrides(overrides)))
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file as a plain mapping, interpolations left as written, for a caller that reshapes
    it before ``load_config(schema, data=...)`` checks it. Unreadable YAML is one ``ConfigError`` line."""
    from omegaconf import OmegaConf

    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # yaml's scanner and parser errors, omegaconf's own
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{os.fspath(path)}: cannot read the YAML: {first_line}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{os.fspath(path)}: a config file holds a mapping of keys, got a {type(data).__name__}")
    return data


def to_plain(value: Any) -> Any:
    """An omegaconf node (as hydra composes one, e.g. verl's) as plain dicts and lists; anything else as is."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value


def to_yaml(config: Any) -> str:
    """A loaded config (a dataclass or a mapping) as the YAML ``load_config`` reads back."""
    from omegaconf import OmegaConf

    node = OmegaConf.structured(config) if dataclasses.is_dataclass(config) else OmegaConf.create(config)
    return OmegaConf.to_yaml(node)
