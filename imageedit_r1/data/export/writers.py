"""Row writers for the exported files: parquet in bounded row groups, or JSONL, each written under a
temporary name and renamed on commit; and the readers tools and checks use on them."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from imageedit_r1.store import AtomicFile


class ParquetRowWriter:
    """Buffers rows and writes a row group whenever ``max_rows`` or ``max_bytes`` is reached."""

    def __init__(self, path: Path, features, max_rows: int = 256, max_bytes: int = 32 << 20) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.file = AtomicFile(path)
        self.schema = features.arrow_schema
        self.writer = pq.ParquetWriter(self.file.tmp, self.schema)
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.buffer: list[dict[str, Any]] = []
        self.buffered_bytes = 0
        self.rows = 0

    def write(self, row: dict[str, Any], image_bytes: int = 0) -> None:
        self.buffer.append(row)
        self.buffered_bytes += image_bytes
        self.rows += 1
        if len(self.buffer) >= self.max_rows or self.buffered_bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer, self.buffered_bytes = [], 0

    def commit(self) -> None:
        self.flush()
        self.writer.close()
        self.file.commit()

    def abort(self) -> None:
        self.writer.close()
        self.file.abort()


class JsonlRowWriter:
    """EasyR1 JSONL: one JSON object a line; image files are written by the exporter beforehand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = AtomicFile(path)
        self.handle = open(self.file.tmp, "w", encoding="utf-8")
        self.rows = 0

    def write(self, row: dict[str, Any], image_bytes: int = 0) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def commit(self) -> None:
        self.handle.close()
        self.file.commit()

    def abort(self) -> None:
        self.handle.close()
        self.file.abort()


def iter_rows(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Read back an exported parquet file row group by row group (for checks and tools)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        yield from parquet.read_row_group(group).to_pylist()


def image_of(ref: Any, base: str | os.PathLike | None = None) -> Image.Image:
    """Decode an exported image reference (embedded bytes or a relative path)."""
    if isinstance(ref, dict):
        return Image.open(io.BytesIO(ref["bytes"]))
    return Image.open(Path(base or ".") / ref)
