"""Labelled samples as training files for EasyR1, upstream verl and TRL.

``exporter`` streams the samples through the image budget and the seeded train/val split into
every requested format; each trainer's row format has its own module (``easyr1``, ``verl``,
``trl``), over the decomposition ``prompt`` they share; ``writers`` write the parquet and JSONL
files (and read them back). ``python -m imageedit_r1.data export`` runs it.
"""

from imageedit_r1.data.export.exporter import (
    DROP_IMAGE_UNFIT,
    DROP_PROMPT_TOO_LONG,
    FORMATS,
    PARQUET_ONLY,
    TRAINERS,
    Exporter,
    ExportItem,
    ExportReport,
    ExportStats,
    export_labelled,
    split_of,
    write_items,
)
from imageedit_r1.data.export.prompt import (
    IMAGE_TOKEN,
    decomposition_prompt,
    decomposition_prompt_parts,
    easyr1_problem,
    max_prompt_length,
    prompt_text_bytes,
)
from imageedit_r1.data.export.trl import trl_prompt
from imageedit_r1.data.export.writers import JsonlRowWriter, ParquetRowWriter, image_of, iter_rows

__all__ = [
    "DROP_IMAGE_UNFIT",
    "DROP_PROMPT_TOO_LONG",
    "FORMATS",
    "IMAGE_TOKEN",
    "PARQUET_ONLY",
    "TRAINERS",
    "ExportItem",
    "ExportReport",
    "ExportStats",
    "Exporter",
    "JsonlRowWriter",
    "ParquetRowWriter",
    "decomposition_prompt",
    "decomposition_prompt_parts",
    "easyr1_problem",
    "export_labelled",
    "image_of",
    "iter_rows",
    "max_prompt_length",
    "prompt_text_bytes",
    "split_of",
    "trl_prompt",
    "write_items",
]
