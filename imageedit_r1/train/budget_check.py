"""Preflight for the image budget: refuse a launch whose settings would drop or resize exported rows.

Both trainers drop a row whose prompt (image tokens + text) exceeds ``data.max_prompt_length``
when ``filter_overlong_prompts`` is on, with no message beyond a progress bar (and fail or
truncate when it is off). And a trainer that resizes images to a different budget than the one
the data was exported with trains the agent on a token count it will never see at inference.

The exporter records the budget and the longest prompt bound of the rows it wrote in
``<out>/export_manifest.json``; the files sit in ``<out>/easyr1/`` and ``<out>/verl/``. These
checks read that manifest when it is there, and fall back to the budget's worst case otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, ImageBudgetError

MANIFEST = "export_manifest.json"


def export_manifest(data_file: str) -> tuple[Path, dict] | None:
    """The export manifest of an exported data file (``<out>/<format>/train.parquet``), if any."""
    path = Path(data_file)
    for folder in (path.parent.parent, path.parent):
        candidate = folder / MANIFEST
        if candidate.is_file():
            try:
                return candidate, json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
    return None


def _manifest_budget(manifest: dict) -> ImageBudget | None:
    try:
        return ImageBudget.from_mapping(manifest["image_budget"])
    except (KeyError, TypeError, ImageBudgetError):
        return None


def required_prompt_length(budget: ImageBudget, manifests: list[dict]) -> tuple[int, str]:
    """The ``max_prompt_length`` no row may exceed, and where the figure comes from."""
    from imageedit_r1.data.export import max_prompt_length

    bounds = [m.get("max_prompt_bound") for m in manifests]
    if manifests and all(isinstance(b, int) and b > 0 for b in bounds):
        return max(bounds), "the longest prompt the exported rows can have"
    return max_prompt_length(budget), f"the longest prompt under the image budget {budget}"


def verl_images_without_budget(data_file: str) -> bool:
    """True when a verl parquet's image dicts lack the per-image ``min_pixels``/``max_pixels`` keys."""
    try:
        import pyarrow.parquet as pq

        schema = pq.read_schema(data_file)
    except Exception:  # noqa: BLE001 - not a readable parquet: check_data_files reports missing files
        return False
    if "images" not in schema.names:
        return False
    field_type = schema.field("images").type
    item = getattr(field_type, "value_type", None)
    names = {item.field(i).name for i in range(item.num_fields)} if item is not None and hasattr(item, "num_fields") else set()
    return not {"min_pixels", "max_pixels"} <= names


def check_image_budget(
    report: Any,
    trainer: str,
    *,
    train_files: list[str],
    max_prompt_length: Any,
    config_budget: ImageBudget | None = None,
) -> None:
    """Add problems to ``report`` (a preflight ``Report``) for budget settings that would lose rows.

    ``config_budget``: the budget the trainer's config resizes to (EasyR1's ``data.min_pixels`` /
    ``data.max_pixels``); None for verl, which takes it from the data.
    """
    found = [m for m in (export_manifest(f) for f in train_files) if m is not None]
    manifests = [manifest for _, manifest in found]
    data_budgets = {b for b in (_manifest_budget(m) for m in manifests) if b is not None}
    if len(data_budgets) > 1:
        report.fail(f"the training files were exported with different image budgets: {sorted(map(str, data_budgets))}")
    data_budget = next(iter(data_budgets)) if len(data_budgets) == 1 else None
    fix = "export and train with one budget (`data export --image-min-pixels/--image-max-pixels`, recipe IMAGE_MIN_PIXELS/IMAGE_MAX_PIXELS)"
    if config_budget is not None and data_budget is not None and config_budget != data_budget:
        report.fail(
            f"data.min_pixels/data.max_pixels give the image budget {config_budget}, but {found[0][0]} says the data "
            f"was exported for {data_budget}: the trainer would resize every image away from what the agent sees at "
            f"inference; {fix}"
        )
    budget = config_budget or data_budget or DEFAULT_BUDGET
    if not found:
        report.notes.append(f"no {MANIFEST} beside the training files: assuming the image budget {budget}")
    if trainer == "verl":
        for data_file in train_files:
            if verl_images_without_budget(data_file):
                report.fail(
                    f"{data_file}: its images carry no min_pixels/max_pixels, so verl would resize them with "
                    "qwen_vl_utils' defaults (up to 16,384 image tokens) and drop rows over max_prompt_length; "
                    "re-export it with `python -m imageedit_r1.data export`"
                )
    if isinstance(max_prompt_length, bool) or not isinstance(max_prompt_length, int):
        return
    required, source = required_prompt_length(budget, manifests)
    if max_prompt_length < required:
        report.fail(
            f"data.max_prompt_length={max_prompt_length} is below {required}, {source}: the trainer would drop "
            f"(filter_overlong_prompts) or cut such rows; set data.max_prompt_length={required} or more "
            "(`python -m imageedit_r1.train budget` prints the value the recipes use)"
        )
