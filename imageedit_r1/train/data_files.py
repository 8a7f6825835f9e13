"""Which trainer is installed, and whether the training files were exported for it.

EasyR1 and upstream verl both install as the package ``verl``: EasyR1's entry point is
``verl.trainer.main``, upstream verl's is ``verl.trainer.main_ppo``. A dry run must say which one
this interpreter holds, or the real launch dies with ``No module named verl.trainer.main``.

The exporter writes one file set per trainer (``imageedit_r1.data.export``): EasyR1 rows are
``problem / answer / images``; verl rows are ``data_source / prompt / images / ability /
reward_model / extra_info``; TRL rows are ``prompt / images / ground_truth``. Each trainer's
preflight reads the columns (the parquet footer or the first JSON line; no image is decoded) and
rejects another trainer's files by name.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass

TRAINER_NAMES = {"easyr1": "EasyR1", "verl": "upstream verl", "trl": "TRL"}
ENTRY_POINTS = {"easyr1": "verl.trainer.main", "verl": "verl.trainer.main_ppo"}
RECIPES = {"easyr1": "recipes/run_grpo_qwen25vl.sh", "verl": "recipes/run_grpo_qwen25vl_verl.sh",
           "trl": "recipes/run_grpo_qwen25vl_trl.sh"}
# Columns that only one trainer's export has.
SIGNATURE_COLUMNS = {"easyr1": {"problem", "answer"}, "verl": {"prompt", "reward_model"}, "trl": {"ground_truth"}}


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def installed_trainer() -> str | None:
    """``easyr1``, ``verl`` or None: which trainer the package ``verl`` of this interpreter is."""
    if _has_module(ENTRY_POINTS["verl"]):
        return "verl"
    if _has_module(ENTRY_POINTS["easyr1"]):
        return "easyr1"
    return None


# How to get each trainer into an environment of its own (they both install as ``verl``).
INSTALL = {"easyr1": "`make setup-easyr1` (.venv-easyr1, which the EasyR1 recipe uses when PYTHON is not set)",
           "verl": "`pip install -e '.[verl]'` (docs/training.md)"}


def trainer_problem(trainer: str) -> str | None:
    """None when ``trainer`` is what is installed; else what is installed and what to do."""
    found = installed_trainer()
    if found == trainer:
        return None
    wanted, entry = TRAINER_NAMES[trainer], ENTRY_POINTS[trainer]
    if found is None:
        return (f"{wanted} is not installed in this interpreter (no module {entry}): install it with "
                f"{INSTALL[trainer]}, or set PYTHON to the training environment's interpreter")
    return (f"this interpreter has {TRAINER_NAMES[found]} installed as 'verl', not {wanted}: `-m {entry}` would "
            f"fail with No module named {entry}. Install {wanted} in an environment of its own with "
            f"{INSTALL[trainer]}, set PYTHON to an interpreter that has it, or use {RECIPES[found]} for "
            f"{TRAINER_NAMES[found]}")


@dataclass
class DataFileInfo:
    columns: list[str]
    rows: int


def read_data_file(path: str) -> DataFileInfo | None:
    """Columns and row count of a parquet or JSONL file; None for other kinds (hub datasets, folders)."""
    if path.endswith(".parquet") and os.path.isfile(path):
        import pyarrow.parquet as pq

        metadata = pq.read_metadata(path)
        return DataFileInfo(list(metadata.schema.to_arrow_schema().names), metadata.num_rows)
    if path.endswith((".jsonl", ".json")) and os.path.isfile(path):
        rows, columns = 0, []
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                if not rows:
                    first = json.loads(line)
                    columns = list(first) if isinstance(first, dict) else []
                rows += 1
        return DataFileInfo(columns, rows)
    return None


def data_file_problems(trainer: str, name: str, paths: list[str],
                       required_columns: list[str]) -> tuple[list[str], int | None]:
    """(problems, rows) of the files of one data setting (``data.train_files``); rows is None when
    no file could be counted (a hub dataset, a folder)."""
    problems: list[str] = []
    total = 0
    counted = False
    for path in paths:
        try:
            info = read_data_file(path)
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: cannot read {path}: {str(exc).splitlines()[0]}")
            continue
        if info is None:
            continue
        counted = True
        total += info.rows
        columns = set(info.columns)
        other = next((kind for kind, signature in SIGNATURE_COLUMNS.items()
                      if kind != trainer and signature <= columns), None)
        if other is not None and not set(required_columns) <= columns:
            problems.append(
                f"{name}: {path} is an {TRAINER_NAMES[other]} export (columns {', '.join(sorted(info.columns))}); "
                f"{TRAINER_NAMES[trainer]} needs {', '.join(required_columns)}: use the {trainer}/ files of "
                f"`python -m imageedit_r1.data export`, or {RECIPES[other]} for these")
            continue
        missing = [column for column in required_columns if column not in columns]
        if missing:
            problems.append(f"{name}: {path} lacks the column(s) {', '.join(missing)} "
                            f"(it has {', '.join(sorted(info.columns)) or 'none'})")
    return problems, (total if counted else None)
