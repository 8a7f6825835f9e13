"""JSONL manifests: one edit request a line, ``{"id": …, "image": path, "request": …}``.

Read by a pipeline batch (``python -m imageedit_r1.pipeline --manifest``) and by the data tools'
``manifest`` source alike, so both take the same lines and report a bad one the same way: the file
and line number, what is wrong, and the fields the line has. Image paths are relative to the
manifest's folder unless absolute; the line's other fields (``mode``, ``seed``, the user's own)
are kept beside.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# role -> the field names that hold it, first present wins.
FIELDS: dict[str, tuple[str, ...]] = {"id": ("id",), "image": ("image", "image_path"),
                                      "request": ("request", "instruction")}


class ManifestError(ValueError):
    """A manifest that cannot be read: the message names the file and line."""


class MissingColumnError(KeyError):
    """A field (a manifest's, or a dataset's column) a reader needs is absent; the message names it
    and lists those present."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass
class ManifestLine:
    """One line: its number (from 1), id (``item-<number>`` when the line has none), image, request,
    other fields."""

    number: int
    id: str
    image: Any
    request: str
    extra: dict[str, Any] = field(default_factory=dict)


def read_manifest_lines(path: str | os.PathLike, fields: dict[str, tuple[str, ...]] | None = None
                        ) -> Iterator[ManifestLine]:
    """The lines of the manifest at ``path`` (blank lines skipped), ``fields`` naming where each role
    is (default ``FIELDS``). Raises ``FileNotFoundError``, ``ManifestError`` (not JSON, not an
    object) or ``MissingColumnError`` (no image or request field), naming the line."""
    fields = {**FIELDS, **(fields or {})}
    path = Path(path).expanduser()
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
                raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
            image_field, request_field = (_field(role, fields[role], row, where) for role in ("image", "request"))
            id_field = next((name for name in fields["id"] if name in row), None)
            image = row[image_field]
            if isinstance(image, str) and not os.path.isabs(image):
                image = str(path.parent / image)
            used = {image_field, request_field, id_field}
            item_id = str(row[id_field]) if id_field else f"item-{number:05d}"
            yield ManifestLine(number=number, id=item_id, image=image,
                               request=str(row[request_field]).strip(),
                               extra={k: v for k, v in row.items() if k not in used})


def _field(role: str, names: tuple[str, ...], row: dict[str, Any], where: str) -> str:
    for name in names:
        if name in row:
            return name
    wanted = " or ".join(repr(name) for name in names)
    raise MissingColumnError(f"{where}: no field {wanted} (the {role}); fields present: {sorted(row)}")
