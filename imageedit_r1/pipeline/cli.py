"""``python -m imageedit_r1.pipeline``: edit one image, a batch from a manifest, or run the offline demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imageedit_r1.cli_common import add_quiet_flag, interrupted, print_error
from imageedit_r1.pipeline.outputs import check_output, print_plan, print_summary, trace_path_for, write_edit
from imageedit_r1.store import IF_BUSY, RunBusy

EPILOG = """\
examples:
  # offline demo: tiny random-weight agents and editor built on the fly (CPU, no downloads; output is noise)
  python -m imageedit_r1.pipeline --demo --out demo_out/edited.png

  # any format Pillow writes, by the extension: .png, .jpg, .webp, .tif, ...
  python -m imageedit_r1.pipeline --demo --out demo_out/edited.tif

  # one image with the paper's setup (Qwen2.5-VL-7B agents, FLUX.1-Kontext-dev editor; needs the weights)
  python -m imageedit_r1.pipeline --config examples/configs/flux_kontext.yaml \\
      --image photo.jpg --request "Change the color of her coat to scarlet" --out edited.png

  # a batch; re-running skips finished items and retries failed ones
  python -m imageedit_r1.pipeline --config examples/configs/nano_banana.yaml \\
      --manifest examples/manifest.jsonl --out-dir runs/nano

  # the same batch on every GPU of this machine, or of the Ray cluster at $RAY_ADDRESS (one editor per GPU)
  python -m imageedit_r1.pipeline --config examples/configs/flux_kontext.yaml \\
      --manifest examples/manifest.jsonl --out-dir runs/flux executor=ray

  # show the plan (decomposition, sub-requests, editor instructions) without editing; --json: the full plan
  python -m imageedit_r1.pipeline --image photo.jpg --request "..." --dry-run [--json]

  # verify each edit with a judge VLM; up to 3 attempts, keep the best (see docs/pipeline.md)
  python -m imageedit_r1.pipeline --config examples/configs/flux_kontext.yaml --image photo.jpg \\
      --request "..." --out out.png --verify openai:gpt-4o-2024-08-06 verify.max_cost_usd=0.05

  # any config key can be overridden as key=value
  python -m imageedit_r1.pipeline --image photo.jpg --request "..." --out out.png \\
      editor.options.num_inference_steps=20 decomposer.backend=openai decomposer.base_url=http://localhost:8000/v1

manifest: a JSONL file, one item a line: {"id": "...", "image": "path (relative to the manifest)",
"request": "...", "mode": optional, "seed": optional}. Each item writes <out-dir>/<id>.png (or
--out-format's extension) and <out-dir>/<id>.trace.json; <out-dir>/results.jsonl records every item's status.

output files: the extension picks the format (anything Pillow writes); one it cannot write is refused
before any work. Transparency is kept only when asked for and the format keeps it, else composited
onto white. An image that cannot be written after the edit goes to <stem>.png (or <stem>-1.png, ... when
that is taken: never over an existing file), with one line naming it.

exit status: 0 all edited, 1 some items failed (recorded), 2 cannot run (bad input, missing weights or keys).
"""

def build_parser() -> argparse.ArgumentParser:
    from imageedit_r1.agents.editors import EDITORS
    from imageedit_r1.backends import available_backends
    from imageedit_r1.pipeline.config import MODES

    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.pipeline",
        description="ImageEdit-R1: decompose an edit request, order it into sub-requests, and edit the image.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = parser.add_argument_group("what to edit")
    inputs.add_argument("--image", help="input image (any format Pillow reads)")
    inputs.add_argument("--request", help="the edit request, in natural language")
    inputs.add_argument("--out", help="where to write the edited image (its trace goes beside it: <out>.trace.json)")
    inputs.add_argument("--manifest", help="JSONL batch of {id, image, request}")
    inputs.add_argument("--out-dir", help="output folder for --manifest")
    inputs.add_argument("--out-format", metavar="EXT",
                        help="with --manifest: the images' format by extension (png, jpg, webp, tif, ...; default png)")
    inputs.add_argument("--retry-failed", action="store_true",
                        help="with --manifest: also send again items quarantined for killing their Ray replicas")
    inputs.add_argument("--if-busy", choices=IF_BUSY,
                        help="when another batch is writing to --out-dir: wait for it, then edit only what it left "
                             "(default), or stop at once")
    inputs.add_argument(
        "--demo",
        action="store_true",
        help="OFFLINE DEMO: build tiny random-weight models on the fly and run all three agents on a sample "
        "image (CPU, no downloads, under a minute). The output is noise: it proves the plumbing, not quality.",
    )
    setup = parser.add_argument_group("how to edit")
    setup.add_argument("--config", help="pipeline YAML (see examples/configs/); overrides go after as key=value")
    setup.add_argument("--mode", choices=MODES, help="single-turn (default), multi-turn, or original (editor alone)")
    setup.add_argument("--editor", choices=sorted(EDITORS), help="editing agent (sets editor.name)")
    setup.add_argument(
        "--decomposer",
        metavar="[BACKEND:]MODEL",
        help="decomposition agent: a model (hub id, local checkpoint or served name), optionally prefixed by "
        f"its backend ({', '.join(available_backends())}), e.g. transformers:/ckpt/merged or openai:imageedit-r1",
    )
    setup.add_argument("--seed", type=int, help="base seed (multi-turn step i uses seed + i)")
    setup.add_argument(
        "--verify",
        metavar="[BACKEND:]MODEL",
        help="turn on the verify stage with this judge VLM (e.g. openai:gpt-4o-2024-08-06, gemini:gemini-2.5-flash, "
        "or a served model: openai:NAME verify.judge.base_url=URL): score each edit, retry below verify.threshold "
        "within the budget (verify.attempts, verify.max_calls, verify.max_seconds, verify.max_cost_usd), keep the best",
    )
    setup.add_argument("--dry-run", action="store_true",
                       help="run the decomposition and sequencing agents only and print a short plan summary")
    setup.add_argument("--json", action="store_true", help="with --dry-run: print the full plan as JSON instead")
    add_quiet_flag(setup)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (omegaconf dotlist)")
    return parser


def _overrides_from_flags(args) -> list[str]:
    overrides = []
    if args.mode:
        overrides.append(f"mode={args.mode}")
    if args.editor:
        overrides.append(f"editor.name={args.editor}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.verify:  # the judge of the verify stage: [BACKEND:]MODEL, like --decomposer
        backend, model = split_backend(args.verify)
        if backend is not None:
            overrides.append(f"verify.judge.backend={backend}")
        overrides.append(f"verify.judge.model={json.dumps(model)}")
    return overrides


def split_backend(spec: str) -> tuple[str | None, str]:
    """``[BACKEND:]MODEL`` -> (the backend as written, or None; the model). A backend is any name
    the config takes (``endpoints.backend_spellings``: old spellings too, read by the config door
    like the same key in a file)."""
    from imageedit_r1.endpoints import backend_spellings

    backend, sep, model = spec.partition(":")
    if sep and backend in backend_spellings():
        return backend, model
    return None, spec


def load_cli_config(args):
    """The config file, then ``--decomposer`` and ``--editor``, then the other flags and ``key=value``
    overrides.

    A switch to another decomposer backend or another editor drops the settings the file gives
    the old one (``decomposer.options``, ``base_url``, ``api_key_env``; ``editor.options``): they
    belong to it, and a note says so. Overrides on the command line still apply after it.
    """
    from dataclasses import replace

    from imageedit_r1.config import apply_overrides
    from imageedit_r1.endpoints import backend_spellings
    from imageedit_r1.pipeline.config import load_pipeline_config

    overrides = [*_overrides_from_flags(args), *args.overrides]
    if not args.decomposer and not args.editor:
        return load_pipeline_config(args.config, overrides)
    config = load_pipeline_config(args.config)
    flags = []
    if args.decomposer:
        backend, model = split_backend(args.decomposer)
        agent = config.decomposer
        if backend is not None and backend_spellings()[backend] != agent.backend:
            dropped = [name for name, value in (("options", agent.options), ("base_url", agent.base_url),
                                                  ("api_key_env", agent.api_key_env)) if value]
            _note_switch("--decomposer", "backend", agent.backend, backend, "decomposer", dropped)
            config.decomposer = replace(agent, options={}, base_url=None, api_key_env=None)
        # The backend as written, through the config door: an old spelling reads as the config file's would.
        flags += [*([f"decomposer.backend={backend}"] if backend is not None else []),
                  f"decomposer.model={json.dumps(model)}"]
    if args.editor and args.editor != config.editor.name:
        _note_switch("--editor", "editor", config.editor.name, args.editor, "editor",
                     ["options"] if config.editor.options else [])
        config.editor = replace(config.editor, name=args.editor, options={})
    return apply_overrides(config, [*flags, *overrides]).validate()


# Flags of a batch: given without --manifest they would be ignored, so they are refused.
BATCH_FLAGS = ("out_dir", "out_format", "if_busy", "retry_failed")


def _note_switch(flag: str, what: str, old: str, new: str, section: str, dropped: list[str]) -> None:
    if dropped:
        print(f"note: {flag} switches the {what} from {old} to {new}; the config's {section} "
              f"{', '.join(dropped)} (for {old}) are not used", file=sys.stderr)


def _check_args(parser, args) -> None:
    """Refuse a combination of flags the run would not follow (a flag it would silently ignore)."""
    if args.json and not args.dry_run:
        parser.error("--json goes with --dry-run (it prints the full plan instead of the summary)")
    ignored = [f"--{name.replace('_', '-')}" for name in BATCH_FLAGS if getattr(args, name) and not args.manifest]
    if ignored:
        parser.error(f"{', '.join(ignored)}: for a batch (--manifest) only")
    if args.demo:
        if args.manifest:
            parser.error("--demo edits one sample image; it does not take --manifest")
        own = [flag for flag, value in (("--config", args.config), ("--decomposer", args.decomposer)) if value]
        if own:
            parser.error(f"--demo builds its own tiny models; it does not take {' or '.join(own)}")
        return
    single = args.image or args.request or args.out
    if args.manifest and single:
        parser.error("use either --image/--request/--out or --manifest/--out-dir, not both")
    if args.manifest:
        if not args.out_dir and not args.dry_run:
            parser.error("--manifest needs --out-dir")
        return
    if not (args.image and args.request):
        parser.error("give --image and --request (or --manifest, or --demo); see --help")
    if not args.out and not args.dry_run:
        parser.error("--out is required unless --dry-run")


def check_outputs(args) -> None:
    """Refuse an output the run could not write (an extension Pillow cannot write, a place that
    cannot hold it), before any work."""
    if args.dry_run:
        return
    if args.manifest:
        check_output(Path(args.out_dir or ".") / f"item.{(args.out_format or 'png').lstrip('.')}", "--out-format")
    elif args.out or args.demo:
        check_output(args.out or "demo_out/edited.png")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"overrides must look like key=value, got: {bad}")

    from imageedit_r1.images import ImageLoadError, load_image
    from imageedit_r1.pipeline.batch import ManifestError, read_manifest, run_batch
    from imageedit_r1.pipeline.core import ImageEditR1
    from imageedit_r1.pipeline.preflight import check_pipeline
    from imageedit_r1.unavailable import is_unavailable

    try:
        check_outputs(args)
        if args.demo:
            from imageedit_r1.pipeline.demo import run_demo

            return run_demo(args, [*_overrides_from_flags(args), *args.overrides])
        config = load_cli_config(args)
        # The inputs first (a typo in a manifest, an unreadable image), then the setup.
        if args.manifest:
            read_manifest(Path(args.manifest))
        else:
            load_image(args.image, max_pixels=config.max_image_pixels)
        # Names, options, API keys and weights, before any model loads (the editor only when it will run).
        check_pipeline(config, editor=not args.dry_run)
        pipeline = ImageEditR1(config=config)
        if args.manifest:
            return run_batch(pipeline, Path(args.manifest), Path(args.out_dir) if args.out_dir else None, args.dry_run,
                             if_busy=args.if_busy or "wait", out_format=args.out_format or "png",
                             retry_failed=args.retry_failed, progress=not args.quiet)
        return run_single(pipeline, args.image, args.request, args.out, args.dry_run, args.json)
    except KeyboardInterrupt:
        return interrupted()
    except (FileNotFoundError, ValueError, ImageLoadError, ManifestError, RunBusy) as exc:
        print_error(exc)
        return 2
    except Exception as exc:
        if is_unavailable(exc):  # missing weights, key or package, of any part (its message names which)
            print_error(f"cannot run here: {exc}")
            return 2
        raise


def run_single(pipeline, image: str, request: str, out: str | None, dry_run: bool, as_json: bool = False) -> int:
    from imageedit_r1.pipeline.trace import EditFailed, write_trace

    if dry_run:
        try:
            plan = pipeline.plan(image, request).trace()
        except EditFailed as exc:
            if as_json:
                print(json.dumps(exc.trace, indent=2, ensure_ascii=False, default=str))
            print_error(exc)
            return 1
        if as_json:
            print(json.dumps(plan, indent=2, ensure_ascii=False, default=str))
        else:
            print_plan(plan, image)
        return 0
    try:
        result = pipeline(image, request)
    except EditFailed as exc:
        write_trace(trace_path_for(out), exc.trace)
        print_error(f"{exc} (trace: {trace_path_for(out)})")
        return 1
    written = write_edit(result.image, result.trace, out)
    print_summary(result.trace, written, trace_path_for(out))
    return 0
