"""Benchmark loaders (PSR, RealEdit, UltraEdit) and a local JSONL manifest, all yielding ``EditSample``.

Each loader streams its rows (``records()``: no image decoded, cheap to filter and sample) and
decodes images only when iterated (``iter(loader)``): unreadable images are skipped, counted and
listed in ``loader.report`` instead of stopping the pass. ``ids=`` keeps only the given ids,
``limit=`` stops after that many samples, ``max_rows=`` after that many rows read.

Source specs (used by the CLI): ``NAME[:LOCATION][@SPLIT]``, e.g. ``psr``,
``realedit@train``, ``ultraedit:/data/UltraEdit@FreeForm_0``, ``manifest:requests.jsonl``.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from imageedit_r1.data.edit_sample import EditSample, RawRecord
from imageedit_r1.data.rows import MissingColumnError, open_rows, resolve_column
from imageedit_r1.images import DEFAULT_MAX_PIXELS, SkipReport, load_or_skip
from imageedit_r1.request_text import clean_request

_SCALARS = (str, int, float, bool, type(None))


class Loader:
    """Base class: a named source with column roles ``id``, ``image`` and ``request``."""

    name: ClassVar[str] = ""
    hub_name: ClassVar[str] = ""
    default_split: ClassVar[str | None] = None
    # role -> candidate column names, first present wins; an absent id falls back to the row index.
    column_candidates: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(
        self,
        location: str | os.PathLike | None = None,
        split: str | None = None,
        *,
        columns: dict[str, str] | None = None,
        ids: Iterable[str] | None = None,
        limit: int | None = None,
        max_rows: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.location = os.fspath(location) if location is not None else self.hub_name
        # A hub name gets the default split; a local file or folder is read whole unless told.
        is_hub = location is None or not Path(os.fspath(location)).expanduser().exists()
        self.split = split if split is not None else (self.default_split if is_hub else None)
        self.columns = dict(columns or {})
        unknown = sorted(set(self.columns) - set(self.column_candidates))
        if unknown:
            raise ValueError(f"{self.name}: unknown column roles {unknown}; roles: {sorted(self.column_candidates)}")
        self.ids = set(ids) if ids is not None else None
        self.limit = limit
        self.max_rows = max_rows
        self.max_pixels = max_pixels
        self.report = SkipReport()

    # ------------------------------------------------------------------ naming

    def make_id(self, native_id: Any) -> str:
        split = self.split or "all"
        return f"{self.name}/{split}/{native_id}"

    def describe(self) -> str:
        return f"{self.name} ({self.location}" + (f"@{self.split}" if self.split else "") + ")"

    def restricted_to(self, ids: Iterable[str]) -> Loader:
        """A copy of this loader that yields only ``ids`` (no limit, a fresh report)."""
        clone = copy.copy(self)
        clone.ids, clone.limit, clone.report = set(ids), None, SkipReport()
        return clone

    # ------------------------------------------------------------------ rows

    def _candidates(self, role: str) -> tuple[str, ...]:
        if role in self.columns:
            return (self.columns[role],)
        return self.column_candidates[role]

    def _resolve(self, columns: list[str], description: str) -> dict[str, str | None]:
        roles = {}
        for role in self.column_candidates:
            required = role != "id" or role in self.columns
            roles[role] = resolve_column(role, self._candidates(role), columns, description, required=required)
        return roles

    def _raw_records(self) -> Iterator[RawRecord]:
        stream = open_rows(self.location, self.split)
        description = f"{self.name} dataset {stream.description}"
        roles = self._resolve(stream.columns, description)
        used = {column for column in roles.values() if column}
        for index, row in enumerate(stream):
            native = row.get(roles["id"]) if roles["id"] else index
            request = row.get(roles["request"])
            meta = {k: v for k, v in row.items() if k not in used and isinstance(v, _SCALARS)}
            meta.update({"split": self.split, "row": index})
            yield RawRecord(
                id=self.make_id(native),
                image=row.get(roles["image"]),
                request="" if request is None else str(request).strip(),
                meta=meta,
            )

    def records(self) -> Iterator[RawRecord]:
        """Rows with their images still encoded, after the ``ids`` filter (``limit`` not applied).

        ``max_rows`` caps the rows read (a pool for sampling from a huge stream such as UltraEdit).
        Requests are read with ``clean_request`` (forum tags dropped; the text as posted is kept in
        ``meta["request_as_posted"]`` when it differed).
        """
        for record in itertools.islice(self._raw_records(), self.max_rows):
            if self.ids is not None and record.id not in self.ids:
                continue
            request = clean_request(record.request) if record.request else record.request
            if request != record.request:  # forum tags ("[Paid $10]") are not part of the request
                record.meta["request_as_posted"] = record.request
                record.request = request
            yield record

    def __iter__(self) -> Iterator[EditSample]:
        self.report = SkipReport()
        produced = 0
        for record in self.records():
            if self.limit is not None and produced >= self.limit:
                break
            if not record.request:
                self.report.skipped.append((record.id, "empty request"))
                continue
            image = load_or_skip(record.id, record.image, self.report, max_pixels=self.max_pixels)
            if image is None:
                continue
            produced += 1
            yield EditSample(id=record.id, image=image, request=record.request, source=self.name, meta=record.meta)


class PSRLoader(Loader):
    """PSR (``PSRDataset/PSR-328``): one request per ``post_id`` (the rows pair AI and human edits).

    ``request_field`` picks ``instruction`` (the user's words, the default) or
    ``simplified_instruction``. Ids: ``psr/<post_id>``.
    """

    name = "psr"
    hub_name = "PSRDataset/PSR-328"
    default_split = "test"
    column_candidates = {"id": ("post_id",), "image": ("source_image",), "request": ("instruction",)}

    def __init__(self, *args: Any, request_field: str = "instruction", **kwargs: Any) -> None:
        if request_field not in ("instruction", "simplified_instruction"):
            raise ValueError(f"request_field must be 'instruction' or 'simplified_instruction', got {request_field!r}")
        columns = dict(kwargs.pop("columns", None) or {})
        columns.setdefault("request", request_field)
        columns.setdefault("id", "post_id")
        super().__init__(*args, columns=columns, **kwargs)

    def make_id(self, native_id: Any) -> str:
        return f"psr/{native_id}"

    def _raw_records(self) -> Iterator[RawRecord]:
        seen: set[str] = set()
        for record in super()._raw_records():
            if record.id in seen:
                continue
            seen.add(record.id)
            yield record


class RealEditLoader(Loader):
    """RealEdit (``peter-sushko/RealEdit``), split ``test`` (9,337 requests) or ``train`` (48,002).

    Ids: ``realedit/<split>/<id column, else input_image_name, else row index>``.
    """

    name = "realedit"
    hub_name = "peter-sushko/RealEdit"
    default_split = "test"
    column_candidates = {
        "id": ("id", "input_image_name"),
        "image": ("input_image", "image", "source_image"),
        "request": ("instruction", "edit_instruction"),
    }


class UltraEditLoader(Loader):
    """UltraEdit (``BleachNick/UltraEdit``, splits ``FreeForm_0``…; or ``BleachNick/UltraEdit_500k``).

    Always streamed. The rows carry no id, so ids are ``ultraedit/<split>/<row index>``: stable for
    a given dataset revision and shard order.
    """

    name = "ultraedit"
    hub_name = "BleachNick/UltraEdit"
    default_split = "FreeForm_0"
    column_candidates = {
        "id": ("id", "idx"),
        "image": ("source_image", "input_image"),
        "request": ("edit_prompt", "instruction"),
    }


class ManifestLoader(Loader):
    """A local JSONL manifest, one request a line: ``{"id": …, "image": path, "request": …}``.

    Image paths are relative to the manifest's folder unless absolute; other fields go to
    ``meta``. Ids are used as given; a line without one is ``item-<line number>``. A line that is not a JSON object, or lacks a field, is an
    error naming the line and the fields present.
    """

    name = "manifest"
    column_candidates = {"id": ("id",), "image": ("image", "image_path"), "request": ("request", "instruction")}

    def __init__(self, location: str | os.PathLike, split: str | None = None, **kwargs: Any) -> None:
        if location is None:
            raise ValueError("the manifest loader needs the path of a JSONL file")
        super().__init__(location, split, **kwargs)
        self.split = None

    def make_id(self, native_id: Any) -> str:
        return str(native_id)

    def _raw_records(self) -> Iterator[RawRecord]:
        path = Path(self.location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
                roles = {role: self._field(role, row, where) for role in ("image", "request")}
                id_field = next((name for name in self._candidates("id") if name in row), None)
                native_id = row[id_field] if id_field else f"item-{number:05d}"
                image = row[roles["image"]]
                if isinstance(image, str) and not os.path.isabs(image):
                    image = str(path.parent / image)
                used = {*roles.values(), id_field}
                meta = {k: v for k, v in row.items() if k not in used}
                meta["row"] = number - 1
                yield RawRecord(
                    id=self.make_id(native_id), image=image, request=str(row[roles["request"]]).strip(), meta=meta
                )

    def _field(self, role: str, row: dict[str, Any], where: str) -> str:
        for name in self._candidates(role):
            if name in row:
                return name
        wanted = " or ".join(repr(c) for c in self._candidates(role))
        raise MissingColumnError(f"{where}: no field {wanted} (the {role}); fields present: {sorted(row)}")


LOADERS: dict[str, type[Loader]] = {
    loader.name: loader for loader in (PSRLoader, RealEditLoader, UltraEditLoader, ManifestLoader)
}


def parse_source_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``NAME[:LOCATION][@SPLIT]`` -> (name, location or None, split or None)."""
    name, _, rest = spec.partition(":")
    split = None
    if "@" in (rest or name):
        if rest:
            rest, _, split = rest.rpartition("@")
        else:
            name, _, split = name.partition("@")
    name = name.strip().lower()
    if name not in LOADERS:
        raise ValueError(f"unknown source {name!r} in {spec!r}; sources: {sorted(LOADERS)}")
    return name, (rest or None), (split or None)


def build_loader(spec: str, **kwargs: Any) -> Loader:
    """A loader from a source spec; ``kwargs`` go to the loader (columns, ids, limit, max_pixels…)."""
    name, location, split = parse_source_spec(spec)
    return LOADERS[name](location, split, **kwargs)


__all__ = [
    "LOADERS",
    "Loader",
    "ManifestLoader",
    "MissingColumnError",
    "PSRLoader",
    "RealEditLoader",
    "UltraEditLoader",
    "build_loader",
    "parse_source_spec",
]
