"""Upstream verl's rows (``<out>/verl/{train,val}.parquet``).

``data_source`` = ``imageedit_r1/<source>``, ``prompt`` = one user message holding the rendered
decomposition prompt with its ``<image>``, ``images``, ``ability``, ``reward_model`` =
``{"style": "rule", "ground_truth": …}``, ``extra_info`` = ``{index, id, source, request,
image_sha256, split}``. Image dicts also carry ``min_pixels`` / ``max_pixels``, which verl hands to
``qwen_vl_utils.fetch_image``.
"""

from __future__ import annotations

from typing import Any

from imageedit_r1.data.edit_sample import EditSample
from imageedit_r1.data.export.prompt import decomposition_prompt

PARQUET_ONLY = True
# verl hands each image dict to qwen_vl_utils.fetch_image, which honours per-image pixel bounds:
# the exporter adds the budget's min_pixels / max_pixels to every embedded image.
IMAGE_CARRIES_BUDGET = True
ABILITY = "image_edit_decomposition"


def features():
    import datasets

    string = datasets.Value("string")
    image = {
        "bytes": datasets.Value("binary"),
        "path": string,
        "min_pixels": datasets.Value("int64"),
        "max_pixels": datasets.Value("int64"),
    }
    return datasets.Features(
        {
            "data_source": string,
            "prompt": datasets.List({"role": string, "content": string}),
            "images": datasets.List(image),
            "ability": string,
            "reward_model": {"style": string, "ground_truth": string},
            "extra_info": {
                "index": datasets.Value("int64"),
                "id": string,
                "source": string,
                "request": string,
                "image_sha256": string,
                "split": string,
            },
        }
    )


def row(sample: EditSample, ground_truth: str, image: Any, *, index: int, split: str, digest: str) -> dict[str, Any]:
    return {
        "data_source": f"imageedit_r1/{sample.source}",
        "prompt": [{"role": "user", "content": decomposition_prompt(sample.request)}],
        "images": [image],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {
            "index": index,
            "id": sample.id,
            "source": sample.source,
            "request": sample.request,
            "image_sha256": digest,
            "split": split,
        },
    }
