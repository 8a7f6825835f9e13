"""Benchmark samples for evaluation: a seeded id subset of a data loader, or a local manifest.

A subset file is the JSON list of sample ids written by ``python -m imageedit_r1.data subsets``
(or an object with an ``"ids"`` list). A manifest is a JSONL file of
``{"id": ..., "image": "path relative to the manifest", "request": ...}`` for a user's own images.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.eval.config import BenchmarkConfig
from imageedit_r1.jsonl import content_key, read_jsonl


@dataclass
class ManifestSample:
    id: str
    image: Any  # path or PIL image; read with imageedit_r1.images.load_image
    request: str
    source: str = "manifest"
    meta: dict[str, Any] = field(default_factory=dict)


def read_subset(path: str | Path) -> tuple[list[str], str]:
    """(ids in draw order, the source spec the subset was drawn from, or "")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"subset file {path} not found; draw the seeded subsets with `python -m imageedit_r1.data subsets`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"subset file {path} is not valid JSON ({exc.msg})") from exc
    source = ""
    if isinstance(data, dict):
        source = str(data.get("source") or "")
        data = data.get("ids")
    if not isinstance(data, list) or not all(isinstance(item, (str, int)) for item in data):
        raise ValueError(f"subset file {path} must hold a JSON list of sample ids (or {{\"ids\": [...]}})")
    return [str(item) for item in data], source


def read_manifest(path: str | Path) -> list[ManifestSample]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} not found")
    samples: list[ManifestSample] = []
    for line_no, record in enumerate(read_jsonl(path), start=1):
        missing = [key for key in ("id", "image", "request") if key not in record]
        if missing:
            raise ValueError(f"{path}: record {line_no} lacks {missing}")
        image = record["image"]
        if isinstance(image, str) and not Path(image).is_absolute():
            image = str(path.parent / image)
        meta = {k: v for k, v in record.items() if k not in ("id", "image", "request")}
        samples.append(ManifestSample(str(record["id"]), image, str(record["request"]), meta=meta))
    return samples


def _select(samples: Iterable[Any], ids: list[str] | None, bench: BenchmarkConfig) -> list[Any]:
    samples = list(samples)
    if ids is not None:
        by_id = {str(sample.id): sample for sample in samples}
        missing = [sample_id for sample_id in ids if sample_id not in by_id]
        if missing:
            raise KeyError(f"benchmark {bench.name!r}: {len(missing)} subset ids not in the data, e.g. {missing[:3]}")
        samples = [by_id[sample_id] for sample_id in ids]
    return samples[: bench.limit] if bench.limit is not None else samples


def load_benchmark(bench: BenchmarkConfig) -> list[Any]:
    """The samples of one benchmark, in subset order; each has ``id``, ``image`` and ``request``.

    Benchmark images stay encoded (``imageedit_r1.data`` raw records) until an item is edited, so a
    1,000-sample subset does not sit decoded in memory.
    """
    ids, subset_source = read_subset(bench.subset) if bench.subset else (None, "")
    source = bench.source or subset_source
    if source == "manifest":
        return _select(read_manifest(bench.manifest), ids, bench)
    from imageedit_r1.data import build_loader

    loader = build_loader(source, ids=ids, **dict(bench.options))
    return _select(loader.records(), ids, bench)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(sample_id: str) -> str:
    """A file name for a sample id: readable, and unique even when ids differ only in odd characters."""
    readable = _UNSAFE.sub("_", sample_id).strip("._")[:80] or "sample"
    if readable == sample_id:
        return readable
    return f"{readable}-{content_key(sample_id)[:8]}"
