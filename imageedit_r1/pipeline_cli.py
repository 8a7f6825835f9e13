"""``python -m imageedit_r1.pipeline``: edit one image, a batch from a manifest, or run the offline demo."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  # offline demo: tiny random-weight agents and editor built on the fly (CPU, no downloads; output is noise)
  python -m imageedit_r1.pipeline --demo --out demo_out/edited.png

  # one image with the paper's setup (Qwen2.5-VL-7B agents, FLUX.1-Kontext-dev editor; needs the weights)
  python -m imageedit_r1.pipeline --config examples/configs/flux_kontext.yaml \\
      --image photo.jpg --request "Change the color of her coat to scarlet" --out edited.png

  # a batch; re-running skips finished items and retries failed ones
  python -m imageedit_r1.pipeline --config examples/configs/nano_banana.yaml \\
      --manifest examples/manifest.jsonl --out-dir runs/nano

  # show the plan (decomposition, sub-requests, editor instructions) without editing
  python -m imageedit_r1.pipeline --image photo.jpg --request "..." --dry-run

  # any config key can be overridden as key=value
  python -m imageedit_r1.pipeline --image photo.jpg --request "..." --out out.png \\
      editor.options.num_inference_steps=20 decomposer.backend=openai decomposer.base_url=http://localhost:8000/v1

manifest: a JSONL file, one item a line: {"id": "...", "image": "path (relative to the manifest)",
"request": "...", "mode": optional, "seed": optional}. Each item writes <out-dir>/<id>.png and
<out-dir>/<id>.trace.json; <out-dir>/results.jsonl records every item's status.

exit status: 0 all edited, 1 some items failed (recorded), 2 cannot run (bad input, missing weights or keys).
"""

BACKENDS = ("openai", "gemini", "transformers", "vllm")


def build_parser() -> argparse.ArgumentParser:
    from imageedit_r1.agents.editors import EDITORS
    from imageedit_r1.pipeline import MODES

    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.pipeline",
        description="ImageEdit-R1: decompose an edit request, order it into sub-requests, and edit the image.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = parser.add_argument_group("what to edit")
    inputs.add_argument("--image", help="input image (any format Pillow reads)")
    inputs.add_argument("--request", help="the edit request, in natural language")
    inputs.add_argument("--out", help="where to write the edited image (the trace goes beside it as .trace.json)")
    inputs.add_argument("--manifest", help="JSONL batch of {id, image, request}")
    inputs.add_argument("--out-dir", help="output folder for --manifest")
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
        f"its backend ({', '.join(BACKENDS)}), e.g. transformers:/ckpt/merged or openai:imageedit-r1",
    )
    setup.add_argument("--seed", type=int, help="base seed (multi-turn step i uses seed + i)")
    setup.add_argument("--dry-run", action="store_true", help="run the decomposition and sequencing agents only")
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
    if args.decomposer:
        backend, sep, model = args.decomposer.partition(":")
        if sep and backend in BACKENDS:
            overrides.append(f"decomposer.backend={backend}")
        else:
            model = args.decomposer
        overrides.append(f"decomposer.model={json.dumps(model)}")
    return overrides


def _check_args(parser, args) -> None:
    if args.demo:
        if args.manifest:
            parser.error("--demo edits one sample image; it does not take --manifest")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"overrides must look like key=value, got: {bad}")

    from imageedit_r1.agents.editors import EditorUnavailableError
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline import ImageEditR1, is_unavailable, load_pipeline_config

    try:
        if args.demo:
            from imageedit_r1.demo import run_demo

            return run_demo(args, [*args.overrides, *_overrides_from_flags(args)])
        config = load_pipeline_config(args.config, [*args.overrides, *_overrides_from_flags(args)])
        pipeline = ImageEditR1(config=config)
        if args.manifest:
            return run_batch(pipeline, Path(args.manifest), Path(args.out_dir) if args.out_dir else None, args.dry_run)
        return run_single(pipeline, args.image, args.request, args.out, args.dry_run)
    except (FileNotFoundError, ValueError, ImageLoadError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EditorUnavailableError as exc:
        print(f"error: the editor cannot run here: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if is_unavailable(exc):
            print(f"error: cannot run: {exc}", file=sys.stderr)
            return 2
        raise


def trace_path_for(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".trace.json")


def save_image(image, path: Path) -> None:
    """Write atomically: a killed run never leaves a half-written image that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=(path.suffix.lstrip(".") or "png").upper().replace("JPG", "JPEG"))
    os.replace(tmp, path)


def run_single(pipeline, image: str, request: str, out: str | None, dry_run: bool) -> int:
    from imageedit_r1.pipeline import EditFailed, write_trace

    if dry_run:
        print(json.dumps(pipeline.plan(image, request), indent=2, ensure_ascii=False, default=str))
        return 0
    try:
        result = pipeline(image, request)
    except EditFailed as exc:
        write_trace(trace_path_for(out), exc.trace)
        print(f"error: {exc} (trace: {trace_path_for(out)})", file=sys.stderr)
        return 1
    save_image(result.image, Path(out))
    write_trace(trace_path_for(out), result.trace)
    _print_summary(result.trace, out)
    return 0


def _print_summary(trace: dict[str, Any], out) -> None:
    print(f"wrote {out} and {trace_path_for(out)}")
    if trace.get("sub_requests"):
        print("sub-requests:\n" + "\n".join(f"  {i + 1}. {s}" for i, s in enumerate(trace["sub_requests"])))
    for fallback in trace.get("fallbacks", []):
        print(f"fallback: the {fallback['stage']} stage used '{fallback['used']}' ({fallback['reason'][:120]})")
    seconds = ", ".join(f"{k} {v:.2f}s" for k, v in trace.get("seconds", {}).items())
    print(f"seconds: {seconds}")


# ----------------------------------------------------------------------------- batches


class ManifestError(ValueError):
    pass


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Items of a JSONL manifest, validated up front so a typo stops the batch before any work."""
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    items, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise ManifestError(f"{path}:{lineno}: expected an object with image and request")
        missing = [key for key in ("image", "request") if not record.get(key)]
        if missing:
            raise ManifestError(f"{path}:{lineno}: missing {', '.join(missing)}")
        item_id = str(record.get("id") or f"item-{lineno:05d}")
        safe_id = _SAFE_ID.sub("_", item_id).strip("._") or f"item-{lineno:05d}"
        if safe_id in seen:
            raise ManifestError(f"{path}:{lineno}: duplicate id {item_id!r}")
        seen.add(safe_id)
        image = Path(record["image"])
        items.append({**record, "id": safe_id, "image": str(image if image.is_absolute() else path.parent / image)})
    if not items:
        raise ManifestError(f"manifest {path} has no items")
    return items


def is_finished(out_dir: Path, item_id: str) -> bool:
    trace_path = out_dir / f"{item_id}.trace.json"
    if not (out_dir / f"{item_id}.png").exists() or not trace_path.exists():
        return False
    try:
        return json.loads(trace_path.read_text(encoding="utf-8")).get("status") == "ok"
    except (OSError, json.JSONDecodeError):
        return False


def run_batch(pipeline, manifest: Path, out_dir: Path | None, dry_run: bool) -> int:
    from tqdm import tqdm

    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.jsonl import JsonlStore
    from imageedit_r1.pipeline import EditFailed, is_unavailable, write_trace

    items = read_manifest(manifest)
    if dry_run:
        for item in items:
            plan = pipeline.plan(item["image"], item["request"], mode=item.get("mode"))
            print(json.dumps({"id": item["id"], **plan}, ensure_ascii=False, default=str))
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    results = JsonlStore(out_dir / "results.jsonl", key_field="id")
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    progress = tqdm(items, desc="editing", unit="image", dynamic_ncols=True)
    for item in progress:
        item_id = item["id"]
        if is_finished(out_dir, item_id):
            counts["skipped"] += 1
            progress.set_postfix(counts)
            continue
        image_path, trace_path = out_dir / f"{item_id}.png", out_dir / f"{item_id}.trace.json"
        record = {"request": item["request"], "image": item["image"]}
        try:
            result = pipeline(item["image"], item["request"], mode=item.get("mode"), seed=item.get("seed"))
        except (EditFailed, ImageLoadError, ValueError) as exc:
            trace = getattr(exc, "trace", None) or {
                "request": item["request"], "status": "failed",
                "errors": [{"stage": "input", "type": type(exc).__name__, "message": str(exc)}],
            }
            write_trace(trace_path, trace)
            results.put(item_id, {**record, "status": "failed", "error": str(exc), "trace": trace_path.name})
            counts["failed"] += 1
        except Exception as exc:
            if is_unavailable(exc):
                progress.close()
                raise
            # An unexpected error in one item is recorded; the batch goes on.
            write_trace(trace_path, {"request": item["request"], "status": "failed",
                                     "errors": [{"stage": "unknown", "type": type(exc).__name__, "message": str(exc)}]})
            results.put(item_id, {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
            counts["failed"] += 1
        else:
            save_image(result.image, image_path)
            write_trace(trace_path, result.trace)
            results.put(item_id, {**record, "status": "ok", "output": image_path.name, "trace": trace_path.name,
                                  "seconds": result.trace["seconds"]})
            counts["ok"] += 1
        progress.set_postfix(counts)
    progress.close()
    print(f"{counts['ok']} edited, {counts['skipped']} already done, {counts['failed']} failed; "
          f"results in {out_dir / 'results.jsonl'}")
    return 1 if counts["failed"] else 0
