"""What the service's replicas do, without Ray: plan a batch of requests, edit one image.

The planner deployment hands each batch that ``@serve.batch`` gathers to ``plan_outcomes``; the
editor deployment calls ``edit_image`` once per output image. Both take and return plain
values (bytes, dicts), so they cross Ray's process boundaries as they are, and every failure is
an ``APIError`` in OpenAI's shape (``imageedit_r1.serve.errors``).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from imageedit_r1.masking import mask
from imageedit_r1.serve.errors import APIError, error_for

OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
# What a client sees of each image's trace: how the plan was run, not the agents' raw answers.
SUMMARY_FIELDS = ("status", "mode", "sub_requests", "instructions", "seeds", "seconds", "models", "editor",
                  "fallbacks", "errors", "refusal", "output", "worker")


def plan_outcomes(pipeline, images: list[bytes], requests: list[str]) -> list[dict[str, Any] | APIError]:
    """One outcome per (image, request) pair, in order: the plan (``Plan.to_dict()``, secrets
    masked) or the ``APIError`` that pair gets. The pairs are planned together
    (``ImageEditR1.plan_batch``: one batched call per agent stage); one pair's failure never fails
    the others, and agents that cannot start fail every pair with the same error."""
    try:
        plans = pipeline.plan_batch(images, requests)
    except Exception as exc:  # noqa: BLE001 - the agents cannot start: every pair is told why
        return [error_for(exc, "planning") for _ in requests]
    return [error_for(plan, "planning") if isinstance(plan, BaseException) else mask(plan.to_dict())
            for plan in plans]


def edit_image(pipeline, image: bytes, plan: dict[str, Any], *, seed: int, output_format: str = "png",
               output_compression: int | None = None, worker: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the editor on ``plan`` as given; ``{"b64_json", "trace"}`` (the trace's summary,
    masked), or raise the ``APIError`` the failure gets."""
    try:
        result = pipeline.execute(image, plan, seed=seed)
    except Exception as exc:  # noqa: BLE001 - every failure leaves as OpenAI's error shape
        raise error_for(exc, "editing") from None
    trace = dict(result.trace)
    if worker is not None:
        trace["worker"] = worker
    return {"b64_json": encode_image(result.image, output_format, output_compression),
            "trace": trace_summary(trace)}


def trace_summary(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace fields a client reads (``SUMMARY_FIELDS``), with whether and how the plan was changed."""
    summary = {name: trace[name] for name in SUMMARY_FIELDS if trace.get(name) is not None}
    plan = trace.get("plan") or {}
    summary["plan"] = {key: plan.get(key) for key in ("changed", "changed_by", "changes", "image_matches")}
    return mask(summary)


def encode_image(image, output_format: str, compression: int | None) -> str:
    """``image`` as base64 in ``output_format`` (png, jpeg, webp); ``compression`` 0-100 for the
    lossy ones, as OpenAI's ``output_compression`` (100: least compressed)."""
    from imageedit_r1.images import for_format, save_options

    fmt = OUTPUT_FORMATS[output_format]
    options = save_options(fmt)
    if compression is not None and fmt in ("JPEG", "WEBP"):
        options["quality"] = int(compression)
    buffer = io.BytesIO()
    for_format(image, fmt).save(buffer, format=fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
