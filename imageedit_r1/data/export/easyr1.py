"""EasyR1's rows (``<out>/easyr1/{train,val}.parquet`` or ``.jsonl``).

``problem`` = ``"<image>" + request`` (EasyR1 renders ``data.format_prompt`` = ``prompts/decompose.jinja``
around it with ``content=problem``), ``answer`` = the ground truth as a JSON string, ``images`` = one
image. In parquet the images are embedded PNG bytes; in JSONL they are files under ``images/`` named
by content, referenced by relative path (train with ``data.image_dir=<out>/easyr1``).
"""

from __future__ import annotations

from typing import Any

from imageedit_r1.data.edit_sample import EditSample
from imageedit_r1.data.export.prompt import easyr1_problem

PARQUET_ONLY = False  # JSONL with image files works too
IMAGE_CARRIES_BUDGET = False


def features():
    import datasets

    return datasets.Features(
        {"problem": datasets.Value("string"), "answer": datasets.Value("string"), "images": datasets.List(datasets.Image())}
    )


def row(sample: EditSample, ground_truth: str, image: Any, *, index: int, split: str, digest: str) -> dict[str, Any]:
    return {"problem": easyr1_problem(sample.request), "answer": ground_truth, "images": [image]}
