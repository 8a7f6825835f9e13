"""Seeded evaluation subsets, written as id lists, and the guard that keeps them out of RL data.

The paper evaluates on PSR (its 328 requests), 1,000 requests sampled from RealEdit's test split
and 1,000 sampled from UltraEdit. A draw here is reproducible and independent of row order:
every id gets a priority ``sha256("<seed>:<id>")`` and the subset is the ``size`` lowest
priorities whose image decodes. The draw streams the source twice (ids first, then only the
chosen images), so it never holds the dataset in memory.

File ``subsets/<benchmark>.json``::

    {"benchmark": "realedit", "source": "realedit@test", "seed": 0, "size": 1000,
     "pool": 9337, "ids": [...], "image_sha256": {"<id>": "<hash of the decoded pixels>"},
     "skipped": [["<id>", "<reason>"], ...], "duplicates": {"<id>": [<row>, <row>, ...]},
     "conflicting_rows": [["<id>", "<reason>"], ...]}

The first pass reads the id column alone. An id that two rows share (the loader keeps the first
row) is listed in ``duplicates`` with its rows, and the draw goes on: a repeated id never stops
a draw, of this source or of the next. The second pass reads the chosen requests' images: a
chosen PSR post whose rows show different source images is listed in ``conflicting_rows`` (its
first row is the one evaluated).

``read_subset`` also accepts a bare JSON list of ids.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from imageedit_r1.data.sources import Loader
from imageedit_r1.store import atomic_write_json

# The paper's evaluation draws: benchmark -> (source spec, size; None = every request).
PAPER_SUBSETS: dict[str, tuple[str, int | None]] = {
    "psr": ("psr@test", None),
    "realedit": ("realedit@test", 1000),
    "ultraedit": ("ultraedit@FreeForm_0", 1000),
}
DEFAULT_SEED = 0


@dataclass
class Subset:
    benchmark: str
    ids: list[str]
    image_sha256: dict[str, str] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    size: int | None = None
    source: str = ""
    pool: int = 0
    skipped: list[list[str]] = field(default_factory=list)
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    conflicting_rows: list[list[str]] = field(default_factory=list)

    def write(self, folder: str | os.PathLike) -> Path:
        return atomic_write_json(Path(folder) / f"{self.benchmark}.json", asdict(self), indent=1)


def read_subset(path: str | os.PathLike) -> Subset:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid subset file ({exc.msg})") from exc
    if isinstance(data, list):
        return Subset(benchmark=path.stem, ids=[str(i) for i in data])
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
        raise ValueError(f"{path}: a subset file is a JSON list of ids or an object with an 'ids' list")
    known = set(Subset.__dataclass_fields__)
    fields = {k: v for k, v in data.items() if k in known}
    fields.setdefault("benchmark", path.stem)  # a hand-written subset may name only its ids
    return Subset(**fields)


def subset_ids(benchmark: str, folder: str | os.PathLike = "subsets") -> list[str]:
    """The ids of ``subsets/<benchmark>.json`` in draw order (what evaluation iterates)."""
    path = Path(folder) / f"{benchmark}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no eval subset {path}; draw it with: python -m imageedit_r1.data subsets --benchmark {benchmark}"
        )
    return read_subset(path).ids


def priority(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def draw_subset(
    loader: Loader, benchmark: str, size: int | None, seed: int = DEFAULT_SEED, source: str = "", progress: bool = True
) -> Subset:
    """Draw ``size`` requests (all when None) from ``loader``, skipping unreadable images."""
    if size is not None and size < 1:
        raise ValueError(f"subset size must be positive, got {size}")
    pool = 0

    def keyed_ids():
        nonlocal pool
        records = loader.records(roles=("id",))
        for record in tqdm(records, desc=f"{benchmark}: reading ids", unit=" rows", disable=not progress):
            pool += 1
            yield priority(seed, record.id), record.id

    if size is None:
        candidates = sorted(keyed_ids())
    else:  # a few spares stand in for unreadable images
        candidates = heapq.nsmallest(size + max(16, size // 20), keyed_ids())
    duplicates = {item_id: list(rows) for item_id, rows in loader.issues.duplicates.items()}
    order = {item_id: rank for rank, (_, item_id) in enumerate(candidates)}

    chosen_loader = loader.restricted_to(order)
    hashes: dict[str, str] = {}
    for sample in tqdm(chosen_loader, desc=f"{benchmark}: hashing images", total=len(order), disable=not progress):
        hashes[sample.id] = sample.image_sha256()
    chosen = sorted(hashes, key=order.__getitem__)
    if size is not None:
        chosen = chosen[:size]
    kept = set(chosen)
    conflicts = [list(item) for item in chosen_loader.issues.conflicts if item[0] in kept]
    # Found by the image pass only (the id pass reads no image): told to the caller's loader too.
    loader.issues.conflicts.extend(item for item in chosen_loader.issues.conflicts
                                   if item[0] in kept and item not in loader.issues.conflicts)
    return Subset(
        benchmark=benchmark,
        ids=chosen,
        image_sha256={item_id: hashes[item_id] for item_id in chosen},
        seed=seed,
        size=size,
        source=source,
        pool=pool,
        skipped=[list(item) for item in chosen_loader.report.skipped],
        duplicates=duplicates,
        conflicting_rows=conflicts,
    )


# ----------------------------------------------------------------------------- leakage guard


class LeakageError(ValueError):
    """RL data overlaps an evaluation subset (by id or by image content)."""


@dataclass
class EvalGuard:
    """Every eval id and image hash, with the subset each came from."""

    ids: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike]) -> EvalGuard:
        guard = cls()
        for path in paths:
            path = Path(path)
            files = sorted(path.glob("*.json")) if path.is_dir() else [path]
            if not path.exists():
                raise FileNotFoundError(f"eval subsets not found: {path}")
            for file in files:
                subset = read_subset(file)
                guard.files.append(str(file))
                for item_id in subset.ids:
                    guard.ids[item_id] = subset.benchmark
                for item_id, digest in subset.image_sha256.items():
                    guard.hashes[digest] = f"{subset.benchmark}:{item_id}"
        return guard

    def overlap(self, item_id: str, digest: str) -> str | None:
        """Why this sample may not be trained on, or None."""
        if item_id in self.ids:
            return f"id {item_id} is in eval subset {self.ids[item_id]}"
        if digest in self.hashes:
            return f"image of {item_id} (sha256 {digest[:16]}…) is eval sample {self.hashes[digest]}"
        return None


def leakage_message(overlaps: list[str], limit: int = 20) -> str:
    lines = [f"refusing to export: {len(overlaps)} RL samples overlap the eval subsets:"]
    lines += [f"  {reason}" for reason in overlaps[:limit]]
    if len(overlaps) > limit:
        lines.append(f"  ... and {len(overlaps) - limit} more")
    lines.append("Remove them from the RL data, or pass --drop-eval-overlap to leave them out of the export.")
    return "\n".join(lines)
