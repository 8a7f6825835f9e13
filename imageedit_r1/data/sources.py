"""Benchmark loaders (PSR, RealEdit, UltraEdit) and a local JSONL manifest, all yielding ``EditSample``.

Each loader streams its rows (``records()``: no image decoded, cheap to filter and sample) and
decodes images only when iterated (``iter(loader)``): unreadable images are skipped, counted and
listed in ``loader.report`` instead of stopping the pass. ``ids=`` keeps only the given ids,
``limit=`` stops after that many samples, ``max_rows=`` after that many rows read.

A pass reads only the columns its roles need (``records(roles=("id",))`` reads the id column
alone), plus the source's allow-listed metadata columns (``metadata_fields``): nothing else of a
row, and so no personal field (PSR's Reddit user names), ever reaches ``meta``. A benchmark source
yields each id once: a repeated id keeps its first row and is listed in ``loader.issues``.

Source specs (used by the CLI): ``NAME[:LOCATION][@SPLIT][#REVISION]``, e.g. ``psr``,
``realedit@train``, ``ultraedit:/data/UltraEdit@FreeForm_0``, ``ultraedit@FreeForm_0#<commit>``,
``manifest:requests.jsonl``. A revision pins a hub dataset to a commit, tag or branch.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from imageedit_r1.data.edit_sample import EditSample, RawRecord
from imageedit_r1.data.rows import MissingColumnError, open_rows, resolve_column
from imageedit_r1.data.source_issues import SourceIssues
from imageedit_r1.images import DEFAULT_MAX_PIXELS, SkipReport, load_or_skip
from imageedit_r1.manifest import FIELDS as MANIFEST_FIELDS
from imageedit_r1.manifest import read_manifest_lines
from imageedit_r1.request_text import clean_request

_SCALARS = (str, int, float, bool, type(None))
ROLES = ("id", "image", "request", "meta")


class Loader:
    """Base class: a named source with column roles ``id``, ``image`` and ``request``."""

    name: ClassVar[str] = ""
    hub_name: ClassVar[str] = ""
    default_split: ClassVar[str | None] = None
    # role -> candidate column names, first present wins.
    column_candidates: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Without an id column the row index serves as the id, unless the source must have one.
    id_required: ClassVar[bool] = False
    # The only columns copied into ``meta`` (besides ``split`` and ``row``): an allow-list, so a
    # column added upstream, personal or not, stays out of everything the project writes.
    metadata_fields: ClassVar[tuple[str, ...]] = ()
    # A repeated id keeps its first row (and is reported) rather than yielding two samples.
    unique_ids: ClassVar[bool] = True
    # With ``ids``, end the pass right after the last wanted id (PSR ends its own pass instead,
    # once the last wanted post's rows have been checked).
    ends_after_last_id: ClassVar[bool] = True

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
        revision: str | None = None,
    ) -> None:
        self.location = os.fspath(location) if location is not None else self.hub_name
        # A hub name gets the default split; a local file or folder is read whole unless told.
        is_hub = location is None or not Path(os.fspath(location)).expanduser().exists()
        self.split = split if split is not None else (self.default_split if is_hub else None)
        self.revision = revision
        self.columns = dict(columns or {})
        unknown = sorted(set(self.columns) - set(self.column_candidates))
        if unknown:
            raise ValueError(f"{self.name}: unknown column roles {unknown}; roles: {sorted(self.column_candidates)}")
        self.ids = set(ids) if ids is not None else None
        self.limit = limit
        self.max_rows = max_rows
        self.max_pixels = max_pixels
        self.report = SkipReport()
        self.issues = SourceIssues()

    # ------------------------------------------------------------------ naming

    def make_id(self, native_id: Any) -> str:
        split = self.split or "all"
        return f"{self.name}/{split}/{native_id}"

    def describe(self) -> str:
        where = self.location + (f"@{self.split}" if self.split else "") + (f"#{self.revision}" if self.revision else "")
        return f"{self.name} ({where})"

    def restricted_to(self, ids: Iterable[str]) -> Loader:
        """A copy of this loader that yields only ``ids`` (no limit, a fresh report)."""
        clone = copy.copy(self)
        clone.ids, clone.limit, clone.report, clone.issues = set(ids), None, SkipReport(), SourceIssues()
        return clone

    # ------------------------------------------------------------------ rows

    def _candidates(self, role: str) -> tuple[str, ...]:
        if role in self.columns:
            return (self.columns[role],)
        return self.column_candidates[role]

    def _resolve(self, columns: list[str], description: str) -> dict[str, str | None]:
        """Every role's column (all checked up front, so a missing one fails before any row is read)."""
        roles = {}
        for role in self.column_candidates:
            required = role != "id" or self.id_required or role in self.columns
            roles[role] = resolve_column(role, self._candidates(role), columns, description, required=required)
        return roles

    def _read(self, roles: Iterable[str]) -> Iterator[tuple[int, dict[str, Any], dict[str, str | None], list[str]]]:
        """(row index, row, role -> column, meta columns), reading only the columns ``roles`` need."""
        roles = set(roles)
        stream = open_rows(self.location, self.split, revision=self.revision)
        description = f"{self.name} dataset {stream.description}"
        resolved = self._resolve(stream.columns, description)
        used = {column for column in resolved.values() if column}
        meta_columns = [c for c in self.metadata_fields if "meta" in roles and c in stream.columns and c not in used]
        # The id column is always read: the ids filter, repeated ids and PSR's posts need it.
        wanted = [resolved[role] for role in ("id", "image", "request") if (role == "id" or role in roles)]
        wanted = list(dict.fromkeys(column for column in [*wanted, *meta_columns] if column))
        # With ids, a row group of local parquet holding none of them is read no further than its ids.
        where = None
        if self.ids is not None and resolved["id"]:
            ids = self.ids
            where = (resolved["id"], lambda value: self.make_id(value) in ids)
        for index, row in enumerate(stream.read(wanted, where)):
            yield index, row, resolved, meta_columns

    def _record(self, index: int, row: dict[str, Any], resolved: dict[str, str | None], meta_columns: list[str]) -> RawRecord:
        native = row.get(resolved["id"]) if resolved["id"] else index
        request = row.get(resolved["request"]) if resolved["request"] in row else None
        meta = {name: row.get(name) for name in meta_columns if isinstance(row.get(name), _SCALARS)}
        meta.update({"split": self.split, "row": index})
        return RawRecord(
            id=self.make_id(native),
            image=row.get(resolved["image"]),
            request="" if request is None else str(request).strip(),
            meta=meta,
        )

    def _raw_records(self, roles: Iterable[str] = ROLES) -> Iterator[RawRecord]:
        for index, row, resolved, meta_columns in self._read(roles):
            yield self._record(index, row, resolved, meta_columns)

    def records(self, roles: Iterable[str] = ROLES) -> Iterator[RawRecord]:
        """Rows with their images still encoded, after the ``ids`` filter (``limit`` not applied).

        ``roles`` names what the caller needs, of ``id``, ``image``, ``request`` and ``meta``; only
        their columns are read (an id-only pass over PSR reads no image at all). ``max_rows`` caps
        the rows read (a pool for sampling from a huge stream such as UltraEdit). With ``ids``, the
        pass stops once every wanted id has been taken. A repeated id keeps its first row and is
        recorded in ``self.issues``.
        Requests are read with ``clean_request`` (forum tags dropped; the text as posted is kept in
        ``meta["request_as_posted"]`` when it differed).
        """
        self.issues = SourceIssues()
        first_rows: dict[str, int] = {}
        missing = set(self.ids) if self.ids is not None else None
        for record in itertools.islice(self._raw_records(roles), self.max_rows):
            row = record.meta.get("row", len(first_rows))
            if self.unique_ids:
                if record.id in first_rows:
                    self.issues.add_duplicate(record.id, first_rows[record.id], row)
                    continue
                first_rows[record.id] = row
            if self.ids is not None and record.id not in self.ids:
                continue
            request = clean_request(record.request) if record.request else record.request
            if request != record.request:  # forum tags ("[Paid $10]") are not part of the request
                record.meta["request_as_posted"] = record.request
                record.request = request
            yield record
            if missing is not None:
                missing.discard(record.id)
                if not missing and self.ends_after_last_id:
                    return

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


def _image_digest(image: Any) -> str | None:
    """A cheap identity for an encoded image cell: sha256 of its bytes (or its path without bytes)."""
    if isinstance(image, dict):
        data, path = image.get("bytes"), image.get("path")
        if data is not None:
            return hashlib.sha256(data).hexdigest()
        return f"path:{path}" if path else None
    if isinstance(image, bytes | bytearray):
        return hashlib.sha256(image).hexdigest()
    return None


class PSRLoader(Loader):
    """PSR (``PSRDataset/PSR-328``): one request per ``post_id``; its rows pair AI and human edits.

    The first row of a post is its request; the post's other rows (one per AI model x human edit)
    are read only to check that they show the same source image, and a post whose rows disagree
    is listed in ``self.issues``. With ``ids``, the pass stops once the wanted posts are taken and
    their rows have ended (PSR's rows are grouped by post). Of each row only ``post_id``, the
    request column, ``source_image`` and the other instruction are read: never the edited images,
    nor the per-edit fields (``model``, ``comment_id``, ``creativity_index``, and the Reddit user
    names ``post_owner`` and ``comment_owner``).

    ``request_field`` picks ``instruction`` (the user's words, the default) or
    ``simplified_instruction``. Ids: ``psr/<post_id>``.
    """

    name = "psr"
    hub_name = "PSRDataset/PSR-328"
    default_split = "test"
    column_candidates = {"id": ("post_id",), "image": ("source_image",), "request": ("instruction",)}
    id_required = True
    metadata_fields = ("instruction", "simplified_instruction")
    unique_ids = False  # a post's rows are grouped here, not reported as repeats
    ends_after_last_id = False

    def __init__(self, *args: Any, request_field: str = "instruction", **kwargs: Any) -> None:
        if request_field not in ("instruction", "simplified_instruction"):
            raise ValueError(f"request_field must be 'instruction' or 'simplified_instruction', got {request_field!r}")
        columns = dict(kwargs.pop("columns", None) or {})
        columns.setdefault("request", request_field)
        columns.setdefault("id", "post_id")
        super().__init__(*args, columns=columns, **kwargs)

    def make_id(self, native_id: Any) -> str:
        return f"psr/{native_id}"

    def _raw_records(self, roles: Iterable[str] = ROLES) -> Iterator[RawRecord]:
        check_images = "image" in set(roles)
        taken: dict[str, tuple[str | None, set[str], list[int]]] = {}  # id -> (first digest, others, rows)
        wanted = set(self.ids) if self.ids is not None else None
        current = None
        try:
            for index, row, resolved, meta_columns in self._read(roles):
                post = self.make_id(row.get(resolved["id"]))
                if post != current and wanted is not None and current is not None and wanted <= taken.keys():
                    return  # every wanted post taken and its rows ended: read no further
                current = post
                if wanted is not None and post not in wanted:
                    continue
                if post in taken:
                    if check_images:
                        first, others, rows = taken[post]
                        digest = _image_digest(row.get(resolved["image"]))
                        rows.append(index)
                        if digest != first:
                            others.add(str(digest))
                    continue
                record = self._record(index, row, resolved, meta_columns)
                taken[post] = (_image_digest(record.image) if check_images else None, set(), [index])
                yield record
        finally:
            for post, (_, others, rows) in taken.items():
                if others:
                    self.issues.conflicts.append(
                        (post, f"{len(others) + 1} different source images over rows {rows[0]}..{rows[-1]}")
                    )


class RealEditLoader(Loader):
    """RealEdit (``peter-sushko/RealEdit``), split ``test`` (9,337 requests) or ``train`` (48,002).

    The card's column names could not be verified here: the candidates follow the authors' own
    format (``input_image_name``, ``instruction``), and ``columns=`` (CLI ``--column``) names
    others. Ids: ``realedit/<split>/<id column, else input_image_name, else row index>``. A train
    split may hold one row per edited output rather than per request: a repeated id keeps its
    first row, so the RL data holds each request once, and is listed in ``self.issues``.
    """

    name = "realedit"
    hub_name = "peter-sushko/RealEdit"
    default_split = "test"
    column_candidates = {
        "id": ("id", "input_image_name"),
        "image": ("input_image", "image", "source_image"),
        "request": ("instruction", "edit_instruction"),
    }
    metadata_fields = ("input_image_name", "subreddit")


class UltraEditLoader(Loader):
    """UltraEdit (``BleachNick/UltraEdit``, splits ``FreeForm_0``…; or ``BleachNick/UltraEdit_500k``).

    Always streamed. Ids are ``ultraedit/<split>/<idx>``, from the dataset's own ``idx`` column
    (int64), so they do not depend on shard order; pin ``revision`` for ids that stay put when
    files are re-uploaded. ``idx`` is not documented as unique within a split: a repeated one keeps
    its first row and is listed in ``self.issues``. Only ``idx``, ``source_image``, ``edit_prompt``
    and the captions and similarity scores are read, never ``edited_image`` or ``mask_image``.
    """

    name = "ultraedit"
    hub_name = "BleachNick/UltraEdit"
    default_split = "FreeForm_0"
    column_candidates = {
        "id": ("idx",),
        "image": ("source_image", "input_image"),
        "request": ("edit_prompt", "instruction"),
    }
    id_required = True
    metadata_fields = (
        "source_caption",
        "target_caption",
        "clip_sim_source",
        "clip_sim_target",
        "clip_sim_dir",
        "clip_sim_image",
        "dinov2_sim",
        "ssim",
    )


class ManifestLoader(Loader):
    """A local JSONL manifest, one request a line: ``{"id": …, "image": path, "request": …}``.

    Image paths are relative to the manifest's folder unless absolute; the line's other fields
    (the user's own, e.g. ``mode``, ``seed``) go to ``meta``. Ids are used as given; a line without
    one is ``item-<line number>``; a repeated id is left to the caller (a pipeline batch refuses
    it). A line that is not a JSON object, or lacks a field, is an error naming the line and the
    fields present.
    """

    name = "manifest"
    column_candidates = dict(MANIFEST_FIELDS)
    unique_ids = False

    def __init__(self, location: str | os.PathLike, split: str | None = None, **kwargs: Any) -> None:
        if location is None:
            raise ValueError("the manifest loader needs the path of a JSONL file")
        super().__init__(location, split, **kwargs)
        self.split = None

    def make_id(self, native_id: Any) -> str:
        return str(native_id)

    def _raw_records(self, roles: Iterable[str] = ROLES) -> Iterator[RawRecord]:
        fields = {role: self._candidates(role) for role in self.column_candidates}
        for line in read_manifest_lines(self.location, fields):
            meta = {**line.extra, "row": line.number - 1}
            yield RawRecord(id=self.make_id(line.id), image=line.image, request=line.request, meta=meta)


LOADERS: dict[str, type[Loader]] = {
    loader.name: loader for loader in (PSRLoader, RealEditLoader, UltraEditLoader, ManifestLoader)
}


def parse_source(spec: str) -> tuple[str, str | None, str | None, str | None]:
    """``NAME[:LOCATION][@SPLIT][#REVISION]`` -> (name, location, split, revision), None where absent."""
    spec, _, revision = spec.partition("#")
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
    return name, (rest or None), (split or None), (revision.strip() or None)


def parse_source_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``NAME[:LOCATION][@SPLIT][#REVISION]`` -> (name, location or None, split or None)."""
    return parse_source(spec)[:3]


def build_loader(spec: str, **kwargs: Any) -> Loader:
    """A loader from a source spec; ``kwargs`` go to the loader (columns, ids, limit, max_pixels…)."""
    name, location, split, revision = parse_source(spec)
    if revision is not None:
        kwargs.setdefault("revision", revision)
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
    "parse_source",
    "parse_source_spec",
]
