"""Write labelled samples as EasyR1, upstream-verl and TRL training files, streaming, with a seeded split.

Each trainer's row format has its own module (``easyr1``, ``verl``, ``trl``); this one decides
what goes in: every image is written at exactly the size the image budget gives it
(``imageedit_r1.image_budget``: padded first when its aspect ratio is beyond what Qwen's processor
accepts, then resized with Qwen's ``smart_resize`` arithmetic), so no trainer resizes it again and
each row costs the image tokens the agent will see at inference. A row whose prompt could not fit
the derived ``max_prompt_length`` is refused here, counted by reason, instead of dropped silently by
the trainer.

All three trainers see the same prompt text with the image in the same place. The split is a hash of
(seed, id): stable when data is added, and it needs no pass over the data first. Rows go through the
``writers``, so memory stays flat however many rows are exported, and a failed or refused export
leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.data.edit_sample import EditSample
from imageedit_r1.data.export import easyr1, trl, verl
from imageedit_r1.data.export.prompt import max_prompt_length, prompt_text_bytes
from imageedit_r1.data.export.writers import JsonlRowWriter, ParquetRowWriter
from imageedit_r1.data.labels import LabelIndex
from imageedit_r1.data.source_issues import SourceIssues
from imageedit_r1.data.sources import Loader
from imageedit_r1.data.subsets import EvalGuard, LeakageError, leakage_message
from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, ImageBudgetError
from imageedit_r1.images import SkipReport, fit_to_budget, to_png_bytes
from imageedit_r1.store import atomic_write_bytes, atomic_write_json

# Each trainer's row format: ``features()``, ``row(...)``, ``PARQUET_ONLY``, ``IMAGE_CARRIES_BUDGET``.
TRAINERS = {"easyr1": easyr1, "verl": verl, "trl": trl}
FORMATS = tuple(TRAINERS)
PARQUET_ONLY = tuple(name for name, module in TRAINERS.items() if module.PARQUET_ONLY)
DROP_PROMPT_TOO_LONG = "prompt too long"
DROP_IMAGE_UNFIT = "image cannot fit the budget"


def split_of(item_id: str, seed: int, val_fraction: float) -> str:
    """``train`` or ``val`` from a hash of (seed, id): reproducible and order-independent."""
    digest = hashlib.sha256(f"split:{seed}:{item_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


@dataclass
class ExportItem:
    sample: EditSample
    ground_truth: str  # Decomposition.to_json()


@dataclass
class ExportStats:
    rows: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    ids: dict[str, list[str]] = field(default_factory=lambda: {"train": [], "val": []})
    files: list[str] = field(default_factory=list)
    # reason -> ids of rows refused because a trainer could not use them
    dropped: dict[str, list[str]] = field(default_factory=dict)
    padded: int = 0  # rows whose image was padded to an aspect ratio the processor accepts
    resized: int = 0  # rows whose image was resized to the budget
    max_image_tokens: int = 0
    max_prompt_bound: int = 0  # the largest per-row prompt-length bound written

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class Exporter:
    """Writes ``ExportItem`` rows to every requested format at once, splitting train/val."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        formats: Iterable[str] = FORMATS,
        *,
        file_format: str = "parquet",
        seed: int = 0,
        val_fraction: float = 0.05,
        image_budget: ImageBudget = DEFAULT_BUDGET,
        row_group_rows: int = 256,
        keep_ids: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.formats = tuple(dict.fromkeys(formats))
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"unknown export formats {bad}; choose from {list(FORMATS)}")
        if file_format not in ("parquet", "jsonl"):
            raise ValueError(f"file_format must be 'parquet' or 'jsonl', got {file_format!r}")
        parquet_only = [f for f in self.formats if f in PARQUET_ONLY]
        if file_format == "jsonl" and parquet_only:
            raise ValueError(f"{' and '.join(parquet_only)} reads parquet: export with file_format='parquet'")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.file_format, self.seed, self.val_fraction = file_format, seed, val_fraction
        self.row_group_rows, self.keep_ids = row_group_rows, keep_ids
        self.image_budget = image_budget
        self.max_prompt_length = max_prompt_length(image_budget)
        self.stats = ExportStats()
        self.writers: dict[tuple[str, str], Any] = {}

    def _writer(self, fmt: str, split: str):
        key = (fmt, split)
        if key not in self.writers:
            path = self.out_dir / fmt / f"{split}.{self.file_format}"
            if self.file_format == "jsonl":
                self.writers[key] = JsonlRowWriter(path)
            else:
                self.writers[key] = ParquetRowWriter(path, TRAINERS[fmt].features(), max_rows=self.row_group_rows)
        return self.writers[key]

    def _image_ref(self, fmt: str, png: bytes, digest: str) -> Any:
        if self.file_format == "parquet":
            bounds = self.image_budget.as_dict() if TRAINERS[fmt].IMAGE_CARRIES_BUDGET else {}
            return {"bytes": png, "path": None, **bounds}
        relative = f"images/{digest}.png"
        path = self.out_dir / fmt / relative
        if not path.exists():
            atomic_write_bytes(path, png)
        return relative

    def _drop(self, reason: str, item_id: str) -> None:
        self.stats.dropped.setdefault(reason, []).append(item_id)

    def add(self, item: ExportItem) -> str | None:
        """Write one row to every format; the split it went to, or None when it was refused (see ``stats.dropped``)."""
        sample = item.sample
        try:
            fit = self.image_budget.fit(sample.image.width, sample.image.height)
        except ImageBudgetError:
            self._drop(DROP_IMAGE_UNFIT, sample.id)
            return None
        bound = self.image_budget.prompt_length_bound(prompt_text_bytes(sample.request), fit.tokens)
        if bound > self.max_prompt_length:
            self._drop(DROP_PROMPT_TOO_LONG, sample.id)
            return None
        split = split_of(sample.id, self.seed, self.val_fraction)
        index = self.stats.rows[split]
        image = fit_to_budget(sample.image, self.image_budget)
        self.stats.padded += fit.padded
        self.stats.resized += image.size != sample.image.size
        self.stats.max_image_tokens = max(self.stats.max_image_tokens, fit.tokens)
        self.stats.max_prompt_bound = max(self.stats.max_prompt_bound, bound)
        png = to_png_bytes(image)
        digest = sample.image_sha256()
        for fmt in self.formats:
            ref = self._image_ref(fmt, png, digest)
            row = TRAINERS[fmt].row(sample, item.ground_truth, ref, index=index, split=split, digest=digest)
            self._writer(fmt, split).write(row, image_bytes=len(png))
        self.stats.rows[split] += 1
        if self.keep_ids:
            self.stats.ids[split].append(sample.id)
        return split

    def commit(self) -> ExportStats:
        for fmt in self.formats:  # an empty val split still gets its (empty) file
            for split in ("train", "val"):
                self._writer(fmt, split)
        for _, writer in sorted(self.writers.items()):
            writer.commit()
            self.stats.files.append(str(writer.path))
        return self.stats

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_items(items: Iterable[ExportItem], out_dir: str | os.PathLike, **options: Any) -> ExportStats:
    """Export every item, or nothing if iterating them raises."""
    with Exporter(out_dir, **options) as exporter:
        for item in items:
            exporter.add(item)
        return exporter.commit()


@dataclass
class ExportReport:
    stats: ExportStats
    unlabelled: int = 0
    overlaps: list[str] = field(default_factory=list)
    skipped: SkipReport = field(default_factory=SkipReport)
    issues: SourceIssues = field(default_factory=SourceIssues)
    manifest: str = ""

    def summary(self) -> str:
        stats = self.stats
        lines = [
            f"exported {stats.total} samples: {stats.rows['train']} train, {stats.rows['val']} val "
            f"({stats.resized} resized and {stats.padded} padded to the image budget)",
        ]
        for reason, ids in sorted(stats.dropped.items()):
            lines.append(f"dropped, {reason}: {len(ids)} (e.g. {', '.join(ids[:3])})")
        lines += [
            f"unlabelled (no ok label, not exported): {self.unlabelled}",
            f"left out for overlapping the eval subsets: {len(self.overlaps)}",
            self.skipped.summary(limit=10),
        ]
        if self.issues:
            lines.append(self.issues.summary(limit=10))
        lines += [f"wrote {path}" for path in [*self.stats.files, self.manifest] if path]
        return "\n".join(lines)


def export_labelled(
    loaders: Iterable[Loader],
    labels: LabelIndex,
    out_dir: str | os.PathLike,
    *,
    guard: EvalGuard | None = None,
    drop_eval_overlap: bool = False,
    progress: bool = True,
    **options: Any,
) -> ExportReport:
    """Export every sample of ``loaders`` that has an ok label in ``labels``.

    Refuses (``LeakageError``, nothing written) when a sample is in an eval subset by id or by
    image hash, unless ``drop_eval_overlap``, which leaves those samples out and lists them. When
    no sample is exported, nothing is written either (no empty files, no manifest).
    """
    from tqdm.auto import tqdm

    loaders = list(loaders)
    report = ExportReport(stats=ExportStats())
    with Exporter(out_dir, **options) as exporter:
        for loader in loaders:
            labelled = labels.ids if loader.ids is None else labels.ids & loader.ids
            # Rows without an ok label are never decoded, but they are counted: the report is true.
            report.unlabelled += sum(1 for record in loader.records() if record.id not in labelled)
            chosen = loader.restricted_to(labelled)  # decode only images that may have a label
            chosen.limit = loader.limit
            for sample in tqdm(chosen, desc=f"export {loader.describe()}", unit=" samples", disable=not progress):
                ground_truth = labels.ground_truth(sample.image_sha256(), sample.request)
                if ground_truth is None:
                    report.unlabelled += 1
                    continue
                reason = guard.overlap(sample.id, sample.image_sha256()) if guard is not None else None
                if reason is not None:
                    report.overlaps.append(reason)
                    continue
                if report.overlaps and not drop_eval_overlap:
                    continue  # the export will be refused; keep scanning to list every overlap
                exporter.add(ExportItem(sample, ground_truth))
            report.skipped.merge(chosen.report)
            report.issues.merge(chosen.issues)
        if report.overlaps and not drop_eval_overlap:
            raise LeakageError(leakage_message(report.overlaps))
        if not exporter.stats.total:  # nothing to train on: no empty files, and an earlier export stays whole
            exporter.abort()
            report.stats = exporter.stats
            return report
        report.stats = exporter.commit()
    manifest = {
        "formats": list(exporter.formats),
        "file_format": exporter.file_format,
        "seed": exporter.seed,
        "val_fraction": exporter.val_fraction,
        "image_budget": exporter.image_budget.as_dict(),
        "max_prompt_length": exporter.max_prompt_length,
        "max_image_tokens": report.stats.max_image_tokens,
        "max_prompt_bound": report.stats.max_prompt_bound,
        "rows": report.stats.rows,
        "resized": report.stats.resized,
        "padded": report.stats.padded,
        "dropped": report.stats.dropped,
        "files": report.stats.files,
        "sources": [loader.describe() for loader in loaders],
        "labels": labels.files,
        "teacher_models": sorted(labels.models),
        "eval_subsets": guard.files if guard is not None else [],
        "unlabelled": report.unlabelled,
        "dropped_eval_overlap": report.overlaps,
        "skipped": report.skipped.skipped,
        "repeated_ids": report.issues.duplicates,
        "conflicting_rows": report.issues.conflicts,
        "ids": report.stats.ids,
    }
    path = atomic_write_json(Path(out_dir) / "export_manifest.json", manifest, indent=1)
    report.manifest = str(path)
    return report
