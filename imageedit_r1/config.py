"""YAML configs with dotlist overrides (the EasyR1 / verl convention), over dataclass defaults.

Every config of the project (pipeline, evaluation, data labelling) loads through ``load_config``,
so a typo in a key is caught the same way everywhere: one ``ConfigError`` line naming the key
and the key that was probably meant (``unknown_key_message``). Every value a config reads through
``${oc.env:NAME}``, and every ``api_key_env`` it names, is handed to the secret policy
(``imageedit_r1.masking``) as it loads.

Keys that changed their spelling keep working: a schema names its old keys beside its fields,
in the class variables ``renamed_keys`` (old key -> new key, or a ``Rename`` that also converts
the value) and ``renamed_values`` (field -> {old value: new value, or a ``Rename`` whose old value
reads as the new one only beside a key it ``requires``). ``load_config`` and ``apply_overrides``
read old spellings in YAML and in ``key=value`` overrides at any depth, and print one line for the
file and one for the overrides, naming each old key and its new spelling. An unknown key's hint
reads those maps too: ``retry_atempts`` suggests ``retry.attempts``.

Items of a list of named dataclasses (``judges``, ``benchmarks``, ``methods``) are addressed by
position (``judges[0].reasks``, ``judges.0.reasks``) or by name (``judges.GPT-4o.reasks``); the
keys of a dict of dataclasses take brackets when they hold dots (``prices[gpt-5.1].input_per_mtok``).
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_ENV_REFERENCE = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")


class ConfigError(ValueError):
    """A config cannot be loaded: an unknown key, a value of the wrong type, a malformed override."""


def did_you_mean(key: str, known: Iterable[str] | Mapping[str, str]) -> str | None:
    """The known key closest to ``key`` (difflib ratio ≥ 0.6), or None. With a mapping, its value
    for the closest key (an old spelling suggests its new one)."""
    close = difflib.get_close_matches(key, sorted(set(known)), n=1, cutoff=0.6)
    if not close:
        return None
    return known[close[0]] if isinstance(known, Mapping) else close[0]


def unknown_key_message(full_key: str, known: Iterable[str] | Mapping[str, str], *, where: str = "") -> str:
    """``unknown config key 'a.b' (did you mean 'a.c'?)``: the one line every config reports."""
    leaf = full_key.rsplit(".", 1)[-1]
    hint = did_you_mean(leaf, known)
    if hint is not None and "." in full_key:
        hint = f"{full_key.rsplit('.', 1)[0]}.{hint}"
    prefix = f"{where}: " if where else ""
    return f"{prefix}unknown config key {full_key!r}" + (f" (did you mean {hint!r}?)" if hint else "")


def known_keys(schema: Any) -> dict[str, str]:
    """What a key of ``schema`` may be meant as -> the key to suggest: its fields, the fields of its
    dataclass fields (``retry.attempts``), and its old keys (``retry_attempts`` -> ``retry.attempts``)."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return {}
    keys = {f.name: f.name for f in dataclasses.fields(schema)}
    for name, (kind, inner) in _field_schemas(schema).items():
        if kind == "object":
            keys.update({f"{name}.{f.name}": f"{name}.{f.name}" for f in dataclasses.fields(inner)})
    keys.update({old: rename.to for old, rename in _renames(schema)[0].items()})
    return keys


def config_error(exc: Exception, *, where: str = "") -> ConfigError:
    """One readable line for an omegaconf error (unknown key, bad type, bad override syntax)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, GrammarParseError, ValidationError

    full_key = str(getattr(exc, "full_key", "") or getattr(exc, "key", "") or "")
    object_type = getattr(exc, "object_type", None)
    prefix = f"{where}: " if where else ""
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)) or "not in struct" in str(exc):
        return ConfigError(unknown_key_message(full_key, known_keys(object_type), where=where))
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
    """The new spelling of an old key or of an old value.

    In ``renamed_keys``: ``to`` is a dotted path from the object that holds the old key
    (``retry.attempts``), and ``convert`` how an old value reads in the new spelling (its
    ``ValueError`` is a bad value of the old key). In ``renamed_values``: ``to`` is the new value,
    and ``requires`` a key of the same object without which the old value does not mean the new
    one (``openai-compatible`` is ``openai`` with a ``base_url``): a config that leaves that key
    unset is an error naming both keys, never read as something else.
    """

    to: Any
    convert: Callable[[Any], Any] | None = None
    requires: str | None = None


@dataclasses.dataclass
class _Found:
    """The old spellings one source of a load used: lines for the warning, and old values that
    need a key beside them (object path as written, field, old value, its ``Rename``)."""

    lines: list[str] = dataclasses.field(default_factory=list)
    needs: list[tuple[str, str, Any, Rename]] = dataclasses.field(default_factory=list)

    def value(self, path: str, name: str, old: Any, rename: Rename) -> None:
        self.lines.append(f"{_dotted(path, name)}={old} -> {_dotted(path, name)}={rename.to}")
        if rename.requires:
            self.needs.append((path, name, old, rename))


def _renames(schema: type) -> tuple[dict[str, Rename], dict[str, dict[Any, Rename]]]:
    """The old keys and old values ``schema`` declares, its base classes' included."""
    keys: dict[str, Rename] = {}
    values: dict[str, dict[Any, Rename]] = {}
    for cls in reversed(schema.__mro__):
        for old, new in vars(cls).get("renamed_keys", {}).items():
            keys[old] = new if isinstance(new, Rename) else Rename(new)
        for name, mapping in vars(cls).get("renamed_values", {}).items():
            values.setdefault(name, {}).update(
                {old: new if isinstance(new, Rename) else Rename(new) for old, new in mapping.items()})
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


def _converted(rename: Rename, value: Any, key: str) -> Any:
    """``value`` of the old key ``key`` (named as written) in the new spelling."""
    if rename.convert is None or _is_interpolation(value):
        return value
    try:
        return rename.convert(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for config key {key!r}: {value!r} ({exc})") from None


def _rename_data(schema: type, data: Any, path: str, found: _Found) -> Any:
    """``data`` (a mapping read from YAML) with old keys and values of ``schema`` in their new spelling."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(schema):
        return data
    data = dict(data)
    keys, values = _renames(schema)
    for old, rename in keys.items():
        if old not in data:
            continue
        full = _dotted(path, old)
        value = _converted(rename, data.pop(old), full)
        try:
            _put(data, rename.to, value, old)
        except ConfigError as exc:
            raise ConfigError(f"{full}: {exc}") from None
        found.lines.append(f"{full} -> {_dotted(path, rename.to)}")
    for name, mapping in values.items():
        value = data.get(name)
        if isinstance(value, str) and value in mapping:
            data[name] = mapping[value].to
            found.value(path, name, value, mapping[value])
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


def _walk(schema: type, tokens: list[tuple[str, str]]) -> Iterator[tuple[int, str, type | None]]:
    """(position, kind, the dataclass it holds) of each field a key's ``tokens`` pass through, from
    ``schema`` down; the selector after a list or dict field (an index, a name, a key) is stepped over."""
    current: type | None = schema
    index = 0
    while current is not None and index < len(tokens):
        kind, inner = _field_schemas(current).get(tokens[index][1], ("", None))
        yield index, kind, inner
        index += 2 if kind in ("list", "dict") else 1
        current = inner


def _rename_override(schema: type, item: str, found: _Found) -> str:
    """A ``key=value`` override with old keys and values of ``schema`` in their new spelling."""
    key, _, value = item.partition("=")
    tokens = _tokens(key)
    if not tokens:
        return item  # not a key this reads: omegaconf reports it
    owner: type = schema
    index = 0
    for index, _kind, inner in _walk(schema, tokens):
        name = tokens[index][1]
        keys, values = _renames(owner)
        prefix = "".join(text for text, _ in tokens[:index]).lstrip(".")
        if name in keys:
            rename = keys[name]
            new_key = _dotted(prefix, rename.to) + "".join(text for text, _ in tokens[index + 1:])
            if rename.convert is not None and index == len(tokens) - 1 and not _is_interpolation(value):
                import yaml

                value = str(_converted(rename, yaml.safe_load(value), key.strip()))
            found.lines.append(f"{key.strip()} -> {new_key}")
            return _rename_override(schema, f"{new_key}={value}", found)
        if index == len(tokens) - 1:
            old = value.strip()
            if old in values.get(name, {}):
                rename = values[name][old]
                found.value(prefix, name, old, rename)
                return f"{key}={rename.to}"
            return item
        if inner is None:
            return item
        owner = inner
    return item


def _into_list_item(schema: type, key: str) -> bool:
    """Whether the override ``key`` reaches into an item of a list (``judges[0].model``,
    ``judges.GPT-4o.model``): such an override is set in the item itself, which a merged dotlist
    layer cannot do (it would replace the list)."""
    tokens = _tokens(key)
    return any(kind == "list" and index + 1 < len(tokens) for index, kind, _ in _walk(schema, tokens))


def _item_index(node: Any, list_key: str, selector: str, item_schema: type, item: str) -> int:
    """The index of the item ``selector`` (a position, or the value of its ``name``) names in the list at ``list_key``."""
    from omegaconf import OmegaConf

    items = OmegaConf.select(node, list_key) or []
    if selector.isdigit():
        if int(selector) >= len(items):
            raise ConfigError(f"override {item!r}: {list_key} has {len(items)} item(s), no item {selector}")
        return int(selector)
    if "name" not in {f.name for f in dataclasses.fields(item_schema)}:
        raise ConfigError(f"override {item!r}: the items of {list_key} have no name; write {list_key}[INDEX].KEY=VALUE")
    names = [str(entry.get("name")) for entry in items]
    if selector in names:
        return names.index(selector)
    hint = did_you_mean(selector, names)
    kind = list_key.rsplit(".", 1)[-1].removesuffix("s")
    raise ConfigError(f"override {item!r}: no {kind} named {selector!r}"
                      + (f" (did you mean {hint!r}?)" if hint else f"; have {sorted(names)}")
                      + f"; write {list_key}.NAME.KEY=VALUE")


def _by_position(node: Any, schema: type, key: str, item: str) -> tuple[str, list[tuple[str, str]]]:
    """``key`` with each list item it reaches named by position (``judges[0].reasks`` for
    ``judges.GPT-4o.reasks``), and each such item's key (as resolved, as written), innermost first."""
    tokens = _tokens(key)
    resolved, written, items = "", "", []
    steps = {index: (kind, inner) for index, kind, inner in _walk(schema, tokens)}
    index = 0
    while index < len(tokens):
        text = tokens[index][0]
        resolved, written = resolved + text, written + text
        kind, inner = steps.get(index, ("", None))
        if kind == "list" and index + 1 < len(tokens):
            position = _item_index(node, resolved.lstrip("."), tokens[index + 1][1], inner, item)
            resolved, written = resolved + f"[{position}]", written + tokens[index + 1][0]
            items.insert(0, (resolved.lstrip("."), written.lstrip(".")))
            index += 2
        elif kind == "dict" and index + 1 < len(tokens):
            resolved, written = resolved + tokens[index + 1][0], written + tokens[index + 1][0]
            index += 2
        else:
            index += 1
    return resolved.lstrip("."), items


def _dict_key_problem(schema: type, item: str) -> str | None:
    """A dict of dataclasses reached through a key with dots (``prices.gpt-5.1.input_per_mtok``):
    the line saying it needs brackets, before omegaconf splits the key at its dots."""
    key, _, value = item.partition("=")
    tokens = _tokens(key)
    for index, kind, inner in _walk(schema, tokens):
        if kind != "dict" or index + 2 >= len(tokens) or tokens[index + 1][0].startswith("["):
            continue
        names = set(known_keys(inner))
        if tokens[index + 2][1] in names:
            continue
        for end in range(index + 3, len(tokens)):
            if tokens[end][1] in names:
                head = "".join(text for text, _ in tokens[:index + 1]).lstrip(".")
                name = ".".join(part for _, part in tokens[index + 1:end])
                rest = "".join(text for text, _ in tokens[end:])
                return (f"unknown config key {_dotted(head, tokens[index + 1][1]) + tokens[index + 2][0]!r}: "
                        f"names with dots need brackets: {head}[{name}]{rest}={value}")
    return None


def _merge_overrides(base: Any, schema: type | None, overrides: Sequence[str], found: _Found) -> Any:
    """``base`` (an omegaconf node) with ``key=value`` overrides: old spellings renamed, and keys
    inside list items (``judges[0].model``, ``judges.GPT-4o.model``) set in the item itself."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if schema is None:
        return OmegaConf.merge(base, _parse_overrides(overrides)) if overrides else base
    overrides = [_rename_override(schema, item, found) for item in overrides]
    for item in overrides:
        problem = _dict_key_problem(schema, item)
        if problem:
            raise ConfigError(problem)
    into_items = [item for item in overrides if _into_list_item(schema, item.partition("=")[0])]
    plain = [item for item in overrides if item not in into_items]
    merged = OmegaConf.merge(base, _parse_overrides(plain)) if plain else base
    for item in into_items:
        key, _, value = item.partition("=")
        resolved, items = _by_position(merged, schema, key.strip(), item)
        parsed = OmegaConf.to_container(_parse_overrides([f"value={value}"]), resolve=False)["value"]
        try:
            OmegaConf.update(merged, resolved, parsed, merge=True)
        except OmegaConfBaseException as exc:
            message = str(config_error(exc))
            for as_resolved, as_written in items:  # the keys as the user wrote them
                message = message.replace(f"'{as_resolved}", f"'{as_written}")
            raise ConfigError(message) from None
    return merged


def _check_needs(node: Any, schema: type, needs: list[tuple[str, str, Any, Rename]], where: str = "") -> None:
    """An old value read as the new one needs the key its ``Rename`` requires, set by the end of the load."""
    from omegaconf import OmegaConf

    for path, name, old, rename in needs:
        at = _by_position(node, schema, path, path)[0] if path else ""
        if OmegaConf.select(node, _dotted(at, name), throw_on_resolution_failure=False) != rename.to:
            continue  # set to something else later in the load
        if OmegaConf.select(node, _dotted(at, rename.requires), throw_on_resolution_failure=False) not in (None, ""):
            continue
        full, required = _dotted(path, name), _dotted(path, rename.requires)
        raise ConfigError(f"{where + ': ' if where else ''}{full}={old} is the old spelling of {full}={rename.to} "
                          f"with {required} set, and {required} is not set: set {required}, or write "
                          f"{full}={rename.to}")


def _report(from_file: list[str], where: str, from_overrides: list[str]) -> None:
    """The deprecation lines of a load (stderr): the file's old spellings and the overrides', apart."""
    if from_file:
        print(f"warning: {where + ': ' if where else ''}deprecated config spelling, read as the new one "
              "(update the config): " + "; ".join(dict.fromkeys(from_file)), file=sys.stderr)
    if from_overrides:
        print("warning: deprecated spelling in the overrides, read as the new one: "
              + "; ".join(dict.fromkeys(from_overrides)), file=sys.stderr)


# ----------------------------------------------------------------------------- loading


def load_config(schema: type[T] | None, path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                *, data: dict[str, Any] | None = None, where: str = "") -> Any:
    """Merge ``schema`` defaults ← YAML file (or the mapping ``data``) ← ``key=value`` overrides.

    Unknown keys are errors. ``where`` names the source in messages when ``data`` is given. Old
    spellings of keys (the schema's ``renamed_keys`` / ``renamed_values``) are read as the new
    ones, and a line on stderr names them: one for the file, one for the overrides.

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
    from_file, from_overrides = _Found(), _Found()
    try:
        base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
        if data is not None:
            try:
                if schema is not None:
                    data = _rename_data(schema, data, "", from_file)
                base = OmegaConf.merge(base, OmegaConf.create(data))
            except OmegaConfBaseException as exc:
                raise config_error(exc, where=where) from None
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
        merged = _merge_overrides(base, schema, overrides, from_overrides)
        if schema is not None:
            _check_needs(merged, schema, from_file.needs, where)
            _check_needs(merged, schema, from_overrides.needs)
        result = OmegaConf.to_object(merged) if schema is not None else OmegaConf.to_container(merged, resolve=True)
        register_secrets(OmegaConf.to_container(merged, resolve=False), result)
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    _report(from_file.lines, where, from_overrides.lines)
    return result


def apply_overrides(config: T, overrides: Sequence[str] = ()) -> T:
    """A copy of the dataclass ``config`` with ``key=value`` overrides merged in (same errors and
    old spellings as ``load_config``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {bad}")
    if not overrides:
        return config
    found = _Found()
    try:
        merged = _merge_overrides(OmegaConf.structured(config), type(config), overrides, found)
        _check_needs(merged, type(config), found.needs)
        result = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    register_secrets(list(overrides), result)
    _report([], "", found.lines)
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
