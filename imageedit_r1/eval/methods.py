"""Turn a ``MethodConfig`` into an editing function ``sample -> EditOutput``.

Kinds:
- ``original``: the edit model alone, given the user's request as is (the paper's "Original").
- ``pipeline``: ImageEdit-R1 (decompose → sequence → edit) with the configured decomposer;
  the base VLM gives "w/o RL", the GRPO checkpoint gives "ImageEdit-R1". In an evaluation the
  plan comes from the plan stage (``plans.py``) and the edit function only executes it.
- ``pipeline-verify``: ``pipeline`` with the verify stage (``verify``: ``VerifyConfig`` keys): a
  verifier scores each edit, the loop refines within a budget and keeps the best; beside
  ``pipeline`` in Table 1 it shows what verification adds. These kinds run through
  ``imageedit_r1.pipeline.ImageEditR1`` (modes "original", "single-turn", "multi-turn"), so the
  edit records carry its trace (decomposition, sub-requests, model ids, seeds, timings).
- ``precomputed``: edited images made elsewhere (a closed model's outputs), read from a folder
  (``<images_dir>/<sample id>.png``; an id that is not a plain file name is looked up by its safe name).
- ``identity``: returns the original unchanged; a judge sanity check (fulfillment should be low).
- ``callable``: any ``module:function(image, request, *, seed, sample)`` returning an image,
  an ``(image, trace)`` pair or an object with ``.image`` and ``.trace``; or ``module:Class``, built
  once (per Ray replica: load its model in ``__init__``) and then called like the function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.eval.benchmark_samples import safe_name
from imageedit_r1.eval.config import PIPELINE_KINDS, MethodConfig
from imageedit_r1.images import load_image
from imageedit_r1.paths import file_name


@dataclass
class EditOutput:
    image: Any  # PIL image
    trace: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] | None = None  # where it was made (replica, node, GPU, seconds) when not here


# (sample, original PIL image) -> EditOutput; pipeline kinds also take ``plan=``: the shared plan to execute.
EditFn = Callable[..., EditOutput]


def _as_output(result: Any) -> EditOutput:
    if isinstance(result, EditOutput):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return EditOutput(result[0], dict(result[1] or {}))
    if hasattr(result, "image"):
        return EditOutput(result.image, dict(getattr(result, "trace", None) or {}))
    return EditOutput(result, {})


def _import_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import callable method target {target!r}: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"method target {target!r} is not callable")
    return fn


def _precomputed(method: MethodConfig) -> EditFn:
    folder = Path(method.images_dir or "")
    if not folder.is_dir():
        raise FileNotFoundError(f"method {method.name!r}: images_dir {folder} is not a folder")

    def edit(sample: Any, image: Any) -> EditOutput:
        # A sample id names a file in the folder, never a path: "../secret" is looked up as its
        # safe name only, so no id reads outside images_dir.
        sample_id = str(sample.id)
        stems = (sample_id, safe_name(sample_id)) if file_name(sample_id) else (safe_name(sample_id),)
        for stem in dict.fromkeys(stems):
            for ext in (".png", ".jpg", ".jpeg", ".webp"):
                path = folder / f"{stem}{ext}"
                if path.exists():
                    return EditOutput(load_image(path), {"source": str(path)})
        raise FileNotFoundError(f"no edited image for sample {sample.id!r} in {folder} "
                                f"(looked for {' or '.join(dict.fromkeys(stems))} with .png, .jpg, .jpeg or .webp)")

    return edit


def pipeline_config(method: MethodConfig):
    """The method's ``imageedit_r1.pipeline.PipelineConfig`` ("original" = the editor alone)."""
    return method.pipeline_config().validate()


def _pipeline(method: MethodConfig) -> EditFn:
    from imageedit_r1.pipeline import ImageEditR1

    pipe = ImageEditR1(config=pipeline_config(method))

    def edit(sample: Any, image: Any, plan: Any = None) -> EditOutput:
        if plan is not None:  # the plan stage's shared plan: the agents do not run here
            return _as_output(pipe.execute(image, plan, seed=method.seed))
        return _as_output(pipe(image, sample.request, seed=method.seed))

    return edit


def build_edit_fn(method: MethodConfig) -> EditFn:
    """Load what the method needs (models, clients) once; the returned function edits one sample."""
    if method.kind == "identity":
        return lambda sample, image: EditOutput(image.copy(), {"request": sample.request, "sub_requests": []})
    if method.kind == "precomputed":
        return _precomputed(method)
    if method.kind == "callable":
        fn = _import_target(method.target or "")
        if isinstance(fn, type):  # an editor with a set-up: built once here, where it will run
            fn = fn()
        return lambda sample, image: _as_output(fn(image, sample.request, seed=method.seed, sample=sample))
    if method.kind == "original" or method.kind in PIPELINE_KINDS:
        return _pipeline(method)
    raise ValueError(f"unknown method kind {method.kind!r}")
