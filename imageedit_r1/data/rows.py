"""Stream the rows of a dataset from the Hugging Face hub, a parquet file or a local folder.

Every location is read through ``datasets`` in streaming mode, so a 4M-row dataset never sits in
memory, and with image decoding switched off, so a corrupt image reaches our own intake (where it
is skipped and reported) instead of raising inside the library halfway through a pass.

Locations:
- a hub name (``PSRDataset/PSR-328``), with ``split``; offline this needs the datasets cache;
- a ``.parquet`` / ``.jsonl`` / ``.json`` file;
- a folder of parquet shards (e.g. a downloaded snapshot of the hub repository): the shards of
  ``split`` are those whose path has the split name as a folder or a file-name prefix
  (``data/test-00000-of-00002.parquet``, ``test/0.parquet``); ``split=None`` reads them all;
- any other folder ``datasets`` can read (an ``imagefolder`` with ``metadata.jsonl``).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataSourceError(RuntimeError):
    """A dataset location could not be opened or read."""


class MissingColumnError(KeyError):
    """A column the loader needs is absent; the message names it and lists those present."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass
class RowStream:
    """The rows of one location, their column names, and a description for messages."""

    rows: Iterable[dict[str, Any]]
    columns: list[str]
    description: str

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def _looks_like_path(location: str) -> bool:
    return location.startswith(("/", "./", "../", "~")) or location.endswith((".parquet", ".jsonl", ".json"))


def split_files(folder: Path, split: str | None) -> list[Path]:
    """The parquet shards of ``split`` under ``folder`` (all of them when ``split`` is None)."""
    files = sorted(folder.rglob("*.parquet"))
    if split is None:
        return files
    pattern = re.compile(rf"(^|/){re.escape(split)}([-.]|/)")
    chosen = [f for f in files if pattern.search(f.relative_to(folder).as_posix())]
    if not chosen:
        names = [f.relative_to(folder).as_posix() for f in files[:20]]
        raise DataSourceError(
            f"no parquet shard of split {split!r} under {folder} (expected names like "
            f"'{split}-00000-of-00001.parquet' or '{split}/…'); shards found: {names}. "
            "Pass the split that matches, or no split to read every shard."
        )
    return chosen


def open_rows(location: str | os.PathLike, split: str | None = None) -> RowStream:
    """Open ``location`` as a stream of row dicts with images left as ``{"bytes", "path"}``."""
    import datasets

    location = os.fspath(location)
    path = Path(location).expanduser()
    description = f"{location}" + (f" (split {split})" if split else "")
    try:
        if path.is_file():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix.lower())
            if kind is None:
                raise DataSourceError(f"cannot read {path}: expected a .parquet, .jsonl or .json file")
            dataset = datasets.load_dataset(kind, data_files=[str(path)], split="train", streaming=True)
        elif path.is_dir():
            shards = split_files(path, split) if any(path.rglob("*.parquet")) else []
            if shards:
                dataset = datasets.load_dataset(
                    "parquet", data_files=[str(f) for f in shards], split="train", streaming=True
                )
            else:
                dataset = datasets.load_dataset(str(path), split=split or "train", streaming=True)
        elif _looks_like_path(location):
            raise DataSourceError(f"dataset path not found: {location}")
        else:
            dataset = datasets.load_dataset(location, split=split, streaming=True)
    except DataSourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the cause is kept
        hint = ""
        if not path.exists():
            offline = bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))
            hint = (
                " Offline mode is on and this dataset is not in the local datasets cache." if offline else ""
            ) + (
                " Pass a local copy instead: a parquet file, or a folder holding the dataset's parquet shards"
                " (a snapshot of the hub repository)."
            )
        raise DataSourceError(f"could not open dataset {description}: {type(exc).__name__}: {exc}.{hint}") from exc

    dataset = dataset.decode(False)
    columns = list(dataset.column_names or [])
    rows: Iterable[dict[str, Any]] = dataset
    if not columns:  # some builders only know their columns after the first row
        iterator = iter(dataset)
        first = next(iterator, None)
        if first is None:
            return RowStream([], [], description)
        columns = list(first)
        rows = itertools.chain([first], iterator)
    return RowStream(rows, columns, description)


def resolve_column(
    role: str, candidates: tuple[str, ...], columns: list[str], description: str, *, required: bool = True
) -> str | None:
    """The first candidate present in ``columns``; a clear error (or None) when none is."""
    for name in candidates:
        if name in columns:
            return name
    if not required:
        return None
    wanted = " or ".join(repr(c) for c in candidates)
    raise MissingColumnError(
        f"{description}: no column {wanted} (needed for the {role}); columns present: {sorted(columns)}. "
        f"Name the right one with columns={{'{role}': '<column>'}} (CLI: --column {role}=<column>)."
    )
