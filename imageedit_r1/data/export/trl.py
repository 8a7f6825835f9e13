"""TRL's rows (``<out>/trl/{train,val}.parquet``, the vision-language format of ``GRPOTrainer``).

``prompt`` = one conversational user turn whose content blocks are the rendered decomposition prompt
split at its image slot (text, ``{"type": "image"}``, text), ``images`` = one image, ``ground_truth``
(the reward functions of ``imageedit_r1.integrations.trl`` read it), ``data_source`` and ``id``.
"""

from __future__ import annotations

from typing import Any

from imageedit_r1.data.edit_sample import EditSample
from imageedit_r1.data.export.prompt import decomposition_prompt_parts

PARQUET_ONLY = True
IMAGE_CARRIES_BUDGET = False


def trl_prompt(request: str) -> list[dict[str, Any]]:
    """TRL's conversational vision prompt: one user turn, the image block where the other trainers put it.

    TRL fills each ``{"type": "image"}`` block that has no ``image`` key with the row's ``images``
    in order; ``text`` is None on image blocks because parquet stores one block type for both.
    """
    before, after = decomposition_prompt_parts(request)
    blocks = [{"type": "text", "text": before}, {"type": "image", "text": None}, {"type": "text", "text": after}]
    return [{"role": "user", "content": [b for b in blocks if b["type"] == "image" or b["text"]]}]


def features():
    import datasets

    string = datasets.Value("string")
    return datasets.Features(
        {
            "prompt": datasets.List({"role": string, "content": datasets.List({"type": string, "text": string})}),
            "images": datasets.List(datasets.Image()),
            "ground_truth": string,
            "data_source": string,
            "id": string,
        }
    )


def row(sample: EditSample, ground_truth: str, image: Any, *, index: int, split: str, digest: str) -> dict[str, Any]:
    return {
        "prompt": trl_prompt(sample.request),
        "images": [image],
        "ground_truth": ground_truth,
        "data_source": f"imageedit_r1/{sample.source}",
        "id": sample.id,
    }
