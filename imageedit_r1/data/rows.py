"""Stream the rows of a dataset from the Hugging Face hub, a parquet file or a local folder.

Every location is streamed, so a 4M-row dataset never sits in memory, and images stay encoded,
so a corrupt image reaches our own intake (where it is skipped and reported) instead of raising
inside a library halfway through a pass. Local parquet is read with ``pyarrow`` batch by batch;
hub datasets, JSON files and other folders through ``datasets`` in streaming mode with image
decoding switched off.

Opening a location reads only its schema (for parquet, the file footer). ``RowStream.read(columns)``
then streams only the named columns: for local parquet by pyarrow's column projection, for parquet
on the hub through the ``columns`` option of the ``datasets`` parquet builder, so the other column
chunks are never read from disk or the network. A builder without that option (JSON, image
folders) reads every column and the others are dropped after reading.

Locations:
- a hub name (``PSRDataset/PSR-328``), with ``split``; offline this needs the datasets cache;
- a ``.parquet`` / ``.jsonl`` / ``.json`` file;
- a folder of parquet shards (e.g. a downloaded snapshot of the hub repository): the shards of
  ``split`` are those whose path has the split name as a folder or a file-name prefix
  (``data/test-00000-of-00002.parquet``, ``test/0.parquet``); ``split=None`` reads them all;
- any other folder ``datasets`` can read (an ``imagefolder`` with ``metadata.jsonl``).

``revision`` pins a hub dataset to a commit, tag or branch (hub repositories re-upload files); a
local copy has no revision, and asking for one is an error.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A dataset's missing column and a manifest's missing field are one error, defined with the manifests.
from imageedit_r1.manifest import MissingColumnError  # noqa: F401


class DataSourceError(RuntimeError):
    """A dataset location could not be opened or read."""


# (column, wanted): rows whose value in ``column`` fails ``wanted`` are not needed in full.
RowFilter = tuple[str, Callable[[Any], bool]]


@dataclass
class RowStream:
    """The rows of one location, their column names, and a description for messages.

    Iterating yields every column; ``read(columns)`` only the named ones (see the module docstring).
    """

    rows: Iterable[dict[str, Any]]
    columns: list[str]
    description: str
    # (columns, where) -> rows of only those columns, read without the others (None: read all, then drop)
    project: Callable[[list[str], RowFilter | None], Iterable[dict[str, Any]]] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def read(self, columns: Iterable[str], where: RowFilter | None = None) -> Iterator[dict[str, Any]]:
        """Rows holding only ``columns`` (each must be one of ``self.columns``), in row order.

        ``where = (column, wanted)``: a row whose ``column`` value fails ``wanted`` may come back
        holding that column alone (local parquet skips the other columns of a row group none of
        whose rows is wanted); every row still comes back, so row numbers stay true.
        """
        wanted = [name for name in self.columns if name in set(columns)]
        if self.project is not None and (wanted != self.columns or where is not None):
            return iter(self.project(wanted, where))
        if wanted == self.columns:
            return iter(self.rows)
        return ({name: row.get(name) for name in wanted} for row in self.rows)


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


def open_rows(location: str | os.PathLike, split: str | None = None, *, revision: str | None = None) -> RowStream:
    """Open ``location`` as a stream of row dicts with images left as ``{"bytes", "path"}``.

    Only the schema is read here; rows are read as the stream is iterated.
    """
    location = os.fspath(location)
    path = Path(location).expanduser()
    description = f"{location}" + (f" (split {split})" if split else "") + (f" at revision {revision}" if revision else "")
    if revision is not None and path.exists():
        raise DataSourceError(
            f"revision {revision!r} given for the local copy {location}: a revision pins a hub dataset; "
            "download the revision you want instead (e.g. huggingface-cli download --repo-type dataset --revision ...)"
        )
    if path.is_file() and path.suffix.lower() == ".parquet":
        return _parquet_stream([path], description)
    if path.is_dir() and any(path.rglob("*.parquet")):
        return _parquet_stream(split_files(path, split), description)
    return _datasets_stream(location, path, split, revision, description)


class _ParquetRows:
    """The rows of local parquet files, read with pyarrow one batch at a time.

    Each row group is read on its own, and of it only the column chunks of ``columns``, when the
    first of its rows is wanted: a pass that stops early stops reading at that row group. With
    ``where``, a row group's filter column is read first, and a group none of whose rows is
    wanted yields its rows holding that column alone, its other column chunks never read.
    """

    batch_rows = 64

    def __init__(self, files: list[Path], columns: list[str] | None = None, where: RowFilter | None = None) -> None:
        self.files, self.columns, self.where = files, columns, where

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        for file in self.files:
            with pq.ParquetFile(file) as parquet:
                for group in range(parquet.num_row_groups):
                    if self.where is not None:
                        column, wanted = self.where
                        keys = parquet.read_row_group(group, columns=[column]).column(0).to_pylist()
                        if not any(wanted(key) for key in keys):
                            yield from ({column: key} for key in keys)
                            continue
                    batches = parquet.iter_batches(batch_size=self.batch_rows, row_groups=[group], columns=self.columns)
                    for batch in batches:
                        yield from batch.to_pylist()


def _parquet_stream(files: list[Path], description: str) -> RowStream:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schemas = [pq.read_schema(file) for file in files]
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"could not open dataset {description}: {type(exc).__name__}: {exc}") from exc
    columns = list(schemas[0].names) if schemas else []
    for file, schema in zip(files, schemas, strict=True):
        if set(schema.names) != set(columns):  # the order may differ between shards; the columns may not
            raise DataSourceError(
                f"could not open dataset {description}: {file} has columns {list(schema.names)}, "
                f"the first shard {columns}; pass the split whose shards belong together"
            )
    return RowStream(
        _ParquetRows(files), columns, description, lambda wanted, where: _ParquetRows(files, wanted, where)
    )


def _datasets_stream(location: str, path: Path, split: str | None, revision: str | None, description: str) -> RowStream:
    """A hub dataset, a JSON file or another folder, through ``datasets`` in streaming mode."""
    import datasets

    def load(columns: list[str] | None = None):
        projection = {"columns": columns} if columns is not None else {}
        if path.is_file():
            kind = {".jsonl": "json", ".json": "json"}.get(path.suffix.lower())
            if kind is None:
                raise DataSourceError(f"cannot read {path}: expected a .parquet, .jsonl or .json file")
            return datasets.load_dataset(kind, data_files=[str(path)], split="train", streaming=True)
        if path.is_dir():
            return _load_with_projection(datasets, str(path), projection, split=split or "train", streaming=True)
        if _looks_like_path(location):
            raise DataSourceError(f"dataset path not found: {location}")
        _check_hub(datasets, description)
        return _load_with_projection(datasets, location, projection, split=split, streaming=True, revision=revision)

    try:
        dataset = load()
    except DataSourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the cause is kept
        raise DataSourceError(_open_error(datasets, path, description, exc)) from exc

    dataset = dataset.decode(False)
    columns = list(dataset.column_names or [])
    rows: Iterable[dict[str, Any]] = dataset

    def project(wanted: list[str], where: RowFilter | None = None) -> Iterable[dict[str, Any]]:
        if wanted == columns:
            return dataset
        projected = load(wanted).decode(False)
        if set(projected.column_names or wanted) != set(wanted):  # the builder ignored the projection
            projected = projected.select_columns(wanted)
        return projected

    if not columns:  # some builders only know their columns after the first row
        iterator = iter(dataset)
        first = next(iterator, None)
        if first is None:
            return RowStream([], [], description)
        columns = list(first)
        rows = itertools.chain([first], iterator)
        return RowStream(rows, columns, description)
    return RowStream(rows, columns, description, project)


def _check_hub(datasets: Any, description: str) -> None:
    """A hub dataset streams from the hub: when it cannot be reached, say so at once instead of
    after the client's retries. In offline mode ``datasets`` reads its own cache, so it is asked."""
    if getattr(datasets.config, "HF_HUB_OFFLINE", False):
        return
    from imageedit_r1.hub import offline_reason

    why = offline_reason()
    if why:
        raise DataSourceError(
            f"could not open dataset {description}: {why}. Pass a local copy instead: a parquet file, or a folder "
            "holding the dataset's parquet shards (a snapshot of the hub repository); or set HF_DATASETS_OFFLINE=1 "
            "to read the datasets cache"
        )


def _load_with_projection(datasets: Any, location: str, projection: dict[str, Any], **kwargs: Any):
    """``load_dataset`` with the ``columns`` option where the dataset's builder has it (parquet)."""
    if kwargs.get("revision") is None:
        kwargs.pop("revision", None)
    try:
        return datasets.load_dataset(location, **kwargs, **projection)
    except ValueError as exc:
        if projection and "doesn't have a 'columns' key" in str(exc):
            return datasets.load_dataset(location, **kwargs)
        raise


def _open_error(datasets: Any, path: Path, description: str, exc: Exception) -> str:
    hint = ""
    if not path.exists():
        offline = bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))
        hint = (" Offline mode is on and this dataset is not in the local datasets cache." if offline else "") + (
            " Pass a local copy instead: a parquet file, or a folder holding the dataset's parquet shards"
            " (a snapshot of the hub repository)."
        )
    return f"could not open dataset {description}: {type(exc).__name__}: {exc}.{hint}"


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
