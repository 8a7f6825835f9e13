"""YAML configs with dotlist overrides (the EasyR1 / verl convention), over dataclass defaults.

Every config of the project (pipeline, evaluation, data labelling) loads through ``load_config``,
so a typo in a key is caught the same way everywhere: one ``ConfigError`` line naming the key
and the key that was probably meant (``unknown_key_message``). Every value a config reads through
``${oc.env:NAME}``, and every ``api_key_env`` it names, is handed to the secret policy
(``imageedit_r1.masking``) as it loads.

Keys that changed their spelling keep working: a schema names its old keys beside its fields,
in the class variables ``renamed_keys`` (old key -> new key, or a ``Rename`` that also converts
the value) and ``renamed_values`` (field -> {old value: new value}). ``load_config`` and
``apply_overrides`` read old spellings in YAML and in ``key=value`` overrides at any depth, and
print one line per load that names each old key and its new spelling.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
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
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, GrammarParseError, ValidationError

    full_key = str(getattr(exc, "full_key", "") or getattr(exc, "key", "") or "")
    object_type = getattr(exc, "object_type", None)
    prefix = f"{where}: " if where else ""
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)) or "not in struct" in str(exc):
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


def register_secrets(unresolved: Any, config: Any) -> None:
    """Hand the secret policy what a config can reach: the variables it read through
    ``${oc.env:NAME}`` (found in its unresolved form) and every ``api_key_env`` it names."""
    from imageedit_r1.masking import register_config, register_variables

    register_variables(_ENV_REFERENCE.findall(json.dumps(unresolved, default=str)))
    register_config(config)


# ----------------------------------------------------------------------------- renamed keys


@dataclasses.dataclass(frozen=True)
class Rename:
    """The new spelling of an old key: ``to``, a dotted path from the object that holds the old key
    (``retry.attempts``), and ``convert``, how an old value reads in the new spelling."""

    to: str
    convert: Callable[[Any], Any] | None = None


def _renames(schema: type) -> tuple[dict[str, Rename], dict[str, dict[Any, Any]]]:
    """The old keys and old values ``schema`` declares, its base classes' included."""
    keys: dict[str, Rename] = {}
    values: dict[str, dict[Any, Any]] = {}
    for cls in reversed(schema.__mro__):
        for old, new in vars(cls).get("renamed_keys", {}).items():
            keys[old] = new if isinstance(new, Rename) else Rename(new)
        for name, mapping in vars(cls).get("renamed_values", {}).items():
            values.setdefault(name, {}).update(mapping)
    return keys, values


@functools.cache
def _field_schemas(schema: type) -> dict[str, tuple[str, type]]:
    """Fields of ``schema`` that hold dataclasses: name -> ("object" | "list" | "dict", that dataclass)."""
    out: dict[str, tuple[str, type]] = {}
    if not dataclasses.is_dataclass(schema):
        return out
    names = {f.name for f in dataclasses.fields(schema)}
    try:
        hints = typing.get_type_hints(schema)
    except (NameError, TypeError):  # annotations that name what only a type checker sees
        return out
    for name, hint in hints.items():
        if name not in names:
            continue
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            hint = args[0] if len(args) == 1 else hint
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            out[name] = ("object", hint)
        elif origin is list and args and dataclasses.is_dataclass(args[0]):
            out[name] = ("list", args[0])
        elif origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
            out[name] = ("dict", args[1])
    return out


def _dotted(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _put(data: dict[str, Any], new: str, value: Any, old: str) -> None:
    """Set ``data`` at the dotted path ``new``, copying the dicts on the way (the caller's stay as they were)."""
    *heads, leaf = new.split(".")
    for head in heads:
        inner = data.get(head)
        if inner is not None and not isinstance(inner, dict):
            raise ConfigError(f"{old!r} moves into {head!r}, which is not a mapping here")
        data[head] = dict(inner or {})
        data = data[head]
    if leaf in data:
        raise ConfigError(f"both {old!r} and its new spelling {new!r} are set: keep {new!r}")
    data[leaf] = value


def _converted(rename: Rename, value: Any, old: str) -> Any:
    if rename.convert is None or _is_interpolation(value):
        return value
    try:
        return rename.convert(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for config key {old!r}: {value!r}") from None


def _rename_data(schema: type, data: Any, path: str, found: list[str]) -> Any:
    """``data`` (a mapping read from YAML) with old keys and values of ``schema`` in their new spelling."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(schema):
        return data
    data = dict(data)
    keys, values = _renames(schema)
    for old, rename in keys.items():
        if old not in data:
            continue
        try:
            _put(data, rename.to, _converted(rename, data.pop(old), old), old)
        except ConfigError as exc:
            raise ConfigError(f"{_dotted(path, old)}: {exc}") from None
        found.append(f"{_dotted(path, old)} -> {_dotted(path, rename.to)}")
    for name, mapping in values.items():
        value = data.get(name)
        if isinstance(value, str) and value in mapping:
            data[name] = mapping[value]
            found.append(f"{_dotted(path, name)}={value} -> {_dotted(path, name)}={mapping[value]}")
    for name, (kind, inner) in _field_schemas(schema).items():
        if name not in data:
            continue
        value, where = data[name], _dotted(path, name)
        if kind == "object":
            data[name] = _rename_data(inner, value, where, found)
        elif kind == "list" and isinstance(value, list):
            data[name] = [_rename_data(inner, item, f"{where}[{i}]", found) for i, item in enumerate(value)]
        elif kind == "dict" and isinstance(value, dict):
            data[name] = {key: _rename_data(inner, item, f"{where}[{key}]", found) for key, item in value.items()}
    return data


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


# ``a.b``, ``a[0].b``, ``prices[gpt-4.1].input``: names after dots, keys (dots allowed) in brackets.
_SEGMENT = re.compile(r"\.?([^.\[\]]+)|\[([^\]]*)\]")


def _tokens(key: str) -> list[tuple[str, str]]:
    """(text as written, name) of each segment of a dotted key; [] for a key this cannot read."""
    tokens = [(match.group(0), match.group(1) if match.group(1) is not None else match.group(2))
              for match in _SEGMENT.finditer(key.strip())]
    return tokens if "".join(text for text, _ in tokens) == key.strip() else []


def _rename_override(schema: type, item: str, found: list[str]) -> str:
    """A ``key=value`` override with old keys and values of ``schema`` in their new spelling."""
    key, _, value = item.partition("=")
    tokens = _tokens(key)
    if not tokens:
        return item  # not a key this reads: omegaconf reports it
    current: type | None = schema
    index = 0
    while current is not None and index < len(tokens):
        name = tokens[index][1]
        keys, values = _renames(current)
        if name in keys:
            rename = keys[name]
            prefix = "".join(text for text, _ in tokens[:index])
            new_key = _dotted(prefix, rename.to) + "".join(text for text, _ in tokens[index + 1:])
            if rename.convert is not None and index == len(tokens) - 1 and not _is_interpolation(value):
                import yaml

                value = str(_converted(rename, yaml.safe_load(value), key.strip()))
            found.append(f"{key.strip()} -> {new_key}")
            return _rename_override(schema, f"{new_key}={value}", found)
        if index == len(tokens) - 1:
            mapping = values.get(name, {})
            if value.strip() in mapping:
                found.append(f"{key.strip()}={value.strip()} -> {key.strip()}={mapping[value.strip()]}")
                return f"{key}={mapping[value.strip()]}"
            return item
        kind, current = _field_schemas(current).get(name, ("", None))
        index += 2 if kind in ("list", "dict") else 1  # past the item's index or key
    return item


def _list_items(schema: type, key: str) -> list[tuple[str, int]]:
    """(the list's key, the index) for each list item the override ``key`` reaches into."""
    tokens, out = _tokens(key), []
    current: type | None = schema
    index = 0
    while current is not None and index < len(tokens):
        kind, inner = _field_schemas(current).get(tokens[index][1], ("", None))
        if kind == "list" and index + 1 < len(tokens) and tokens[index + 1][1].isdigit():
            out.append(("".join(text for text, _ in tokens[:index + 1]).lstrip("."), int(tokens[index + 1][1])))
        index += 2 if kind in ("list", "dict") else 1
        current = inner
    return out


def _merge_overrides(base: Any, schema: type | None, overrides: Sequence[str], found: list[str]) -> Any:
    """``base`` (an omegaconf node) with ``key=value`` overrides: old spellings renamed, and keys
    inside list items (``judges[0].model``, ``judges.0.model``) set in the item itself, which a
    merged dotlist layer cannot do (it would replace the list)."""
    from omegaconf import OmegaConf

    if schema is not None:
        overrides = renamed_overrides(schema, overrides, found)
    into_items = [item for item in overrides if schema is not None and _list_items(schema, item.partition("=")[0])]
    plain = [item for item in overrides if item not in into_items]
    merged = OmegaConf.merge(base, _parse_overrides(plain)) if plain else base
    for item in into_items:
        key, _, value = item.partition("=")
        for list_key, index in _list_items(schema, key):
            items = OmegaConf.select(merged, list_key)
            if items is None or index >= len(items):
                raise ConfigError(f"override {item!r}: {list_key} has {len(items or [])} item(s), no item {index}")
        parsed = OmegaConf.to_container(_parse_overrides([f"value={value}"]), resolve=False)["value"]
        OmegaConf.update(merged, key.strip(), parsed, merge=True)
    return merged


def report_renamed(found: list[str], where: str = "") -> None:
    """The one deprecation line of a load: each old key and its new spelling (stderr)."""
    if found:
        prefix = f"{where}: " if where else ""
        print(f"warning: {prefix}deprecated config spelling, read as the new one (update the config): "
              + "; ".join(dict.fromkeys(found)), file=sys.stderr)


def renamed_overrides(schema: type, overrides: Sequence[str], found: list[str]) -> list[str]:
    """``overrides`` with old keys and values of ``schema`` in their new spelling (noted in ``found``)."""
    return [_rename_override(schema, item, found) for item in overrides]


# ----------------------------------------------------------------------------- loading


def load_config(schema: type[T] | None, path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                *, data: dict[str, Any] | None = None, where: str = "", deprecated: list[str] | None = None) -> Any:
    """Merge ``schema`` defaults ← YAML file (or the mapping ``data``) ← ``key=value`` overrides.

    Unknown keys are errors. ``where`` names the source in messages when ``data`` is given. Old
    spellings of keys (the schema's ``renamed_keys`` / ``renamed_values``) are read as the new
    ones, and one line on stderr names them; with ``deprecated`` (a list) they are added to it
    instead, for a caller that loads in several steps and reports once.

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
    if path is not None:
        data = read_config_file(path)
    found: list[str] = []
    try:
        base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
        layers = [base]
        if data is not None:
            try:
                if schema is not None:
                    data = _rename_data(schema, data, "", found)
                layers.append(OmegaConf.create(data))
                merged = OmegaConf.merge(*layers)
            except OmegaConfBaseException as exc:
                raise config_error(exc, where=where) from None
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
            layers = [merged]
        merged = _merge_overrides(OmegaConf.merge(*layers), schema, overrides, found)
        result = OmegaConf.to_object(merged) if schema is not None else OmegaConf.to_container(merged, resolve=True)
        register_secrets(OmegaConf.to_container(merged, resolve=False), result)
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    if deprecated is not None:
        deprecated += found
    else:
        report_renamed(found, where)
    return result


def apply_overrides(config: T, overrides: Sequence[str] = (), *, deprecated: list[str] | None = None) -> T:
    """A copy of the dataclass ``config`` with ``key=value`` overrides merged in (same errors and
    old spellings as ``load_config``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {bad}")
    if not overrides:
        return config
    found: list[str] = []
    try:
        result = OmegaConf.to_object(_merge_overrides(OmegaConf.structured(config), type(config), overrides, found))
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    register_secrets(list(overrides), result)
    if deprecated is not None:
        deprecated += found
    else:
        report_renamed(found)
    return result


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
