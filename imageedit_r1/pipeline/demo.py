"""The OFFLINE DEMO behind ``python -m imageedit_r1.pipeline --demo``.

It builds tiny random-weight models on the fly (a Qwen2.5-VL for the decomposition and sequencing
agents, a FluxKontextPipeline for the editor), saves them, loads them back with
``from_pretrained`` and runs the real pipeline on a sample image drawn in code: no downloads, no
GPU, under a minute. Random weights cannot follow the decomposition format, so the configured
fallbacks (``keywords`` for the decomposition, ``template`` for the sequencing) take over and the
trace records that they did. The edited image is noise. The demo shows that every stage runs and
what a trace looks like; the real configurations are in ``examples/configs/``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

BANNER = """\
======================================================================
 OFFLINE DEMO: tiny RANDOM-WEIGHT models, built on the fly on the CPU.
 The agents' answers are gibberish and the edited image is NOISE.
 This checks that the three agents and the editor run end to end; for
 real edits use a config from examples/configs/ (weights or API keys).
======================================================================"""

DEMO_SAMPLE = "portrait"
DEMO_SIZE = (320, 240)


def demo_config_dict(qwen_dir: str, flux_dir: str) -> dict:
    return {
        "mode": "single-turn",
        "seed": 0,
        "decomposer": {
            "backend": "transformers",
            "model": qwen_dir,
            "max_tokens": 32,
            "options": {"device": "cpu", "dtype": "float32"},
        },
        "editor": {
            "name": "flux-kontext",
            "options": {
                "model_id": flux_dir,
                "local_files_only": True,
                "device": "cpu",
                "dtype": "float32",
                # Small working size and few steps: the tiny editor's output is noise at any size.
                "max_area": 80 * 60,
                "min_area": 0,
                "num_inference_steps": 3,
                "max_sequence_length": 64,
            },
        },
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    }


# Where ``build_demo_models(work)`` writes the tiny models, inside the demo's working folder.
QWEN_DIR, FLUX_DIR = "tiny-qwen25vl", "tiny-flux-kontext"


def demo_pipeline_config(work: Path, overrides=()):
    """The demo's ``PipelineConfig`` for the models ``build_demo_models(work)`` writes, with
    ``key=value`` overrides, through the config door: a typo stops here, before anything is built."""
    from imageedit_r1.config import load_config
    from imageedit_r1.pipeline.config import PipelineConfig

    data = demo_config_dict(str(work / QWEN_DIR), str(work / FLUX_DIR))
    return load_config(PipelineConfig, overrides=list(overrides), data=data).validate()


def build_demo_models(work: Path) -> None:
    """The tiny random-weight Qwen2.5-VL (agents) and FLUX.1-Kontext pipeline (editor), in ``work``."""
    import diffusers
    import transformers

    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    build_tiny_qwen25vl(work / QWEN_DIR)
    build_tiny_flux_kontext(work / FLUX_DIR)


def sample_path_for(out: Path) -> Path:
    """``<stem>.input.png`` beside the output: the drawn sample belongs to that output, as its trace
    does, so a file of the user's (an ``input.png`` of their own) is never written over."""
    return out.with_name(f"{out.stem}.input.png")


def run_demo(args, overrides: list[str]) -> int:
    from imageedit_r1.pipeline.core import ImageEditR1
    from imageedit_r1.pipeline.outputs import print_plan, print_summary, trace_path_for, write_edit
    from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image
    from imageedit_r1.store import atomic_save_image

    work = Path(tempfile.mkdtemp(prefix="imageedit-r1-demo-"))
    try:
        config = demo_pipeline_config(work, overrides)
        print(BANNER, flush=True)
        out = Path(args.out or "demo_out/edited.png")
        print("building a tiny random Qwen2.5-VL (agents) and a tiny random FLUX.1-Kontext pipeline (editor)...", flush=True)
        build_demo_models(work)
        pipeline = ImageEditR1(config=config)
        if args.image:
            image, request = args.image, args.request or SAMPLE_REQUESTS[DEMO_SAMPLE]
        else:
            image, request = sample_image(DEMO_SAMPLE, DEMO_SIZE), args.request or SAMPLE_REQUESTS[DEMO_SAMPLE]
            atomic_save_image(image, sample_path_for(out))
        print(f"request: {request}", flush=True)
        if args.dry_run:
            plan = pipeline.plan(image, request).trace()
            if args.json:
                print(json.dumps(plan, indent=2, ensure_ascii=False, default=str))
            else:
                print_plan(plan, args.image or "the sample image")
            return 0
        result = pipeline(image, request)
        result.trace["demo"] = {
            "offline_demo": True,
            "note": "tiny random-weight models built on the fly: the agents' outputs are not meaningful "
            "and the edited image is noise",
        }
        print_summary(result.trace, write_edit(result.image, result.trace, out), trace_path_for(out))
        if not args.image:
            print(f"input sample: {sample_path_for(out)}")
        print("reminder: OFFLINE DEMO with random weights: the edited image is noise.")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
