"""Benchmark samples for evaluation: a seeded id subset of a data loader, or a local manifest.

Subset files (``python -m imageedit_r1.data subsets``) and manifests (JSONL of
``{"id", "image" (path relative to the manifest), "request"}``) are read by ``imageedit_r1.data``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imageedit_r1.eval.config import BenchmarkConfig
from imageedit_r1.store import content_key


class BenchmarkSamples(list):
    """The samples a run takes (after ``limit``); ``total`` is the benchmark's size before it."""

    total: int = 0


def _select(samples: Iterable[Any], ids: list[str] | None, bench: BenchmarkConfig) -> list[Any]:
    samples = list(samples)
    if ids is not None:
        by_id = {str(sample.id): sample for sample in samples}
        missing = [sample_id for sample_id in ids if sample_id not in by_id]
        if missing:
            raise KeyError(f"benchmark {bench.name!r}: {len(missing)} subset ids not in the data, e.g. {missing[:3]}")
        samples = [by_id[sample_id] for sample_id in ids]
    chosen = BenchmarkSamples(samples[: bench.limit] if bench.limit is not None else samples)
    chosen.total = len(samples)
    return chosen


def load_benchmark(bench: BenchmarkConfig) -> list[Any]:
    """The samples of one benchmark, in subset order; each has ``id``, ``image`` and ``request``.

    Benchmark images stay encoded (``imageedit_r1.data`` raw records) until an item is edited, so a
    1,000-sample subset does not sit decoded in memory.
    """
    from imageedit_r1.data import build_loader
    from imageedit_r1.data.subsets import read_subset

    if bench.subset and not Path(bench.subset).exists():
        raise FileNotFoundError(
            f"subset file {bench.subset} not found; draw the seeded subsets with `python -m imageedit_r1.data subsets`"
        )
    subset = read_subset(bench.subset) if bench.subset else None
    ids = subset.ids if subset is not None else None
    source = bench.source or (subset.source if subset is not None else "")
    if source == "manifest":
        source = f"manifest:{bench.manifest}"
    loader = build_loader(source, ids=ids, **dict(bench.options))
    return _select(loader.records(), ids, bench)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(sample_id: str) -> str:
    """A file name for a sample id: readable, and unique even when ids differ only in odd characters."""
    readable = _UNSAFE.sub("_", sample_id).strip("._")[:80] or "sample"
    if readable == sample_id:
        return readable
    return f"{readable}-{content_key(sample_id)[:8]}"
