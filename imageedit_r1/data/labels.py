"""The on-disk record of a ground-truth label, shared by the labeller (writer) and the exporter (reader).

A labels file is JSONL, one record per (image, request, teacher setup), appended as it is made
(``imageedit_r1.store``): a run killed halfway keeps everything it paid for. Fields:

- ``key``: the cache key, a hash of the sample content (``sample_key``), the teacher backend and
  model, the teacher prompt's sha256 and the generation settings: change any and the sample is
  labelled afresh; keep them and a re-run sends nothing.
- ``sample_key``: ``content_key(image_sha256, request)``, how the exporter finds a sample's label.
- ``id``, ``source``, ``request``, ``image_sha256``: where the sample came from.
- ``status``: ``ok`` or ``failed``; a failure has ``error_kind`` (``invalid``, ``refused``,
  ``api``, ``retries_exhausted``) and ``error``.
- ``ground_truth``: ``Decomposition.to_json()`` after mapping actions onto the taxonomy
  (keys ``actions``, ``subjects``, ``goals``), the exact string exported as the answer.
- ``teacher_actions`` (as the teacher wrote them) and ``unknown_actions`` (outside the taxonomy).
- ``raw`` (the teacher's text), ``model``, ``backend``, ``prompt_sha256``, ``prompt_tokens``,
  ``completion_tokens``, ``attempts``, ``created``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.store import content_key, read_jsonl

OK, FAILED = "ok", "failed"


def sample_key(image_sha256: str, request: str) -> str:
    """Identity of a sample's content: the decoded image and the request text."""
    return content_key("sample", image_sha256, request.strip())


@dataclass
class LabelIndex:
    """``sample_key`` -> the last successful label record across one or more labels files."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    failed: int = 0
    files: list[str] = field(default_factory=list)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike]) -> LabelIndex:
        index = cls()
        for path in paths:
            path = Path(path)
            if not path.exists():
                raise FileNotFoundError(f"labels file not found: {path}")
            index.files.append(str(path))
            for record in read_jsonl(path):
                key = record.get("sample_key")
                if not isinstance(key, str):
                    continue
                if record.get("status") == OK and isinstance(record.get("ground_truth"), str):
                    index.records[key] = record
                    index.ids.add(str(record.get("id")))
                    index.models.add(str(record.get("model") or ""))
                else:
                    index.failed += 1
        return index

    def ground_truth(self, image_sha256: str, request: str) -> str | None:
        record = self.records.get(sample_key(image_sha256, request))
        return None if record is None else record["ground_truth"]

    def __len__(self) -> int:
        return len(self.records)
