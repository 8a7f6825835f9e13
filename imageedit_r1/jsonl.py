"""Append-only JSONL files that survive a run killed halfway.

Each record is written with one ``write`` call on a file opened in append mode and flushed,
so a crash leaves at most one truncated last line; ``read_jsonl`` skips such a line instead of
failing. ``JsonlStore`` indexes records by a key so a re-run resumes from what is on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def content_key(*parts: Any) -> str:
    """A stable hex key for any JSON-serialisable parts (dict key order does not matter)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as handle:
        # A run killed mid-write leaves a line without its newline: end it so this record
        # starts on a line of its own (the torn line is then skipped by read_jsonl).
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; a missing file yields nothing, a torn line is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn tail of a killed run
            if isinstance(record, dict):
                yield record


class JsonlStore:
    """A thread-safe, append-only key → record map backed by one JSONL file.

    The last record written for a key wins, so a failure can later be overwritten by a success.
    """

    def __init__(self, path: str | os.PathLike, key_field: str = "key") -> None:
        self.path = Path(path)
        self.key_field = key_field
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        for record in read_jsonl(self.path):
            key = record.get(key_field)
            if isinstance(key, str):
                self._records[key] = record

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def values(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {self.key_field: key, **{k: v for k, v in record.items() if k != self.key_field}}
        with self._lock:
            append_jsonl(self.path, record)
            self._records[key] = record
        return record
