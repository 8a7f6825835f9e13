"""``python -m imageedit_r1.testing``: offline stand-ins a user can start, no weights or keys needed.

    python -m imageedit_r1.testing build --out tiny            # tiny random-weight models
    python -m imageedit_r1.testing serve --api openai --port 8765 [--replies replies.json]
    python -m imageedit_r1.testing config --models tiny --port 8765 > offline.yaml
    python -m imageedit_r1.pipeline --config offline.yaml --image photo.jpg --request "..." --out out.png
    python -m imageedit_r1.testing config --eval --models tiny --port 8765 > offline-eval.yaml
    python -m imageedit_r1.eval run --config offline-eval.yaml
    python -m imageedit_r1.testing warm-start --model tiny/tiny-qwen25vl --train-files rl/verl/train.parquet --out warm

The models have random weights (their output is noise). The server answers each agent from what it
is given (``stand_ins``: the request split by rule, the images measured; or a script of replies)
and edits images at /v1/images/edits: together they exercise every stage of the pipeline, eval and
data tools with the real libraries and the real SDK clients, on a CPU, offline.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from imageedit_r1.cli_common import print_error

MODELS = {
    "qwen25vl": ("tiny-qwen25vl", "a tiny Qwen2.5-VL (decomposition / sequencing agents, teacher)"),
    "flux-kontext": ("tiny-flux-kontext", "a tiny FluxKontextPipeline (editor flux-kontext)"),
    "qwen-image-edit": ("tiny-qwen-image-edit", "a tiny QwenImageEditPipeline (editor qwen-image-edit)"),
}
APIS = ("openai", "gemini")


def cmd_build(args) -> int:
    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext, build_tiny_qwen_image_edit
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    builders = {"qwen25vl": build_tiny_qwen25vl, "flux-kontext": build_tiny_flux_kontext,
                "qwen-image-edit": build_tiny_qwen_image_edit}
    out = Path(args.out)
    for name in args.models:
        folder, what = MODELS[name]
        started = time.perf_counter()
        path = builders[name](out / folder)
        print(f"{name}: {what} -> {path} ({time.perf_counter() - started:.1f}s)")
    return 0


def read_replies(path: str) -> list[str]:
    """A JSON list of replies (strings, or objects printed as JSON), served in order; the last repeats."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc}); write a JSON list of reply strings") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: write a non-empty JSON list of replies")
    return [item if isinstance(item, str) else json.dumps(item) for item in data]


def cmd_serve(args) -> int:
    from imageedit_r1.testing.fake_image_servers import add_openai_images_route
    from imageedit_r1.testing.fake_servers import (
        FakeServer,
        add_gemini_route,
        add_openai_chat_route,
        gemini_images,
        gemini_text,
        openai_images,
        openai_text,
        scripted,
    )
    from imageedit_r1.testing.stand_ins import edit_by_rule, reply_in_kind

    replies = read_replies(args.replies) if args.replies else None
    server = FakeServer(port=args.port, raise_handler_errors=False)
    if args.api == "openai":
        reply = scripted(*replies) if replies else (
            lambda request: reply_in_kind(openai_text(request), openai_images(request)))
        add_openai_chat_route(server, reply, model=args.model)
        add_openai_images_route(server, lambda image, prompt, request: edit_by_rule(image, prompt))
    else:
        reply = scripted(*replies) if replies else (
            lambda request: reply_in_kind(gemini_text(request), gemini_images(request)))
        add_gemini_route(server, reply, model=args.model)
    try:
        server.start()
    except OSError as exc:
        print_error(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
        return 2
    base = f"{server.url}/v1" if args.api == "openai" else server.url
    script = (f"{len(replies)} scripted replies; the last repeats" if replies else
              "answering each decomposition, sequencing, judge, verifier or teacher prompt from what it is given")
    if args.api == "openai":
        script += "; image edits at /v1/images/edits"
    signal.signal(signal.SIGTERM, _stop)  # `kill` of a background server stops it as Ctrl-C does
    try:  # from the line that says Ctrl-C stops it on, Ctrl-C stops it
        print(f"fake {args.api} server on {base} (model {args.model!r}, {script}). Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(f"stopped after {len(server.requests)} request(s)", file=sys.stderr)
        return 0
    finally:
        server.stop()


def _stand_ins(models: Path, port: int, api: str, model: str) -> tuple[dict, dict]:
    """(an agent on the fake server, the tiny FLUX.1-Kontext editor)."""
    agent = {"backend": api, "model": model, "base_url": f"http://127.0.0.1:{port}" + ("/v1" if api == "openai" else ""),
             "retry": {"attempts": 1}, "timeout": 30}
    if api == "gemini":
        agent["api_key_env"] = "FAKE_GEMINI_KEY"
    editor = {"name": "flux-kontext", "options": {
        "model_id": str((models / MODELS["flux-kontext"][0]).resolve()), "local_files_only": True,
        "device": "cpu", "dtype": "float32", "max_area": 64 * 64, "min_area": 0, "num_inference_steps": 2,
        "max_sequence_length": 64}}
    return agent, editor


def _stop(signum, frame):
    raise KeyboardInterrupt


def offline_config(models: Path, port: int, api: str = "openai", model: str = "fake-model") -> str:
    """A pipeline YAML: agents on the fake server, the editor a tiny local FLUX.1-Kontext pipeline."""
    agent, editor = _stand_ins(models, port, api, model)
    config = {
        "mode": "single-turn",
        "seed": 0,
        "decomposer": agent,
        "editor": editor,
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    }
    from imageedit_r1.config import load_config, to_yaml
    from imageedit_r1.pipeline.config import PipelineConfig

    load_config(PipelineConfig, data=config).validate()  # what it writes, the pipeline reads
    header = ("# Offline stand-ins from `python -m imageedit_r1.testing`: the agents ask the fake "
              f"{api} server on port {port}\n# (start it with `python -m imageedit_r1.testing serve --api {api} "
              f"--port {port}`), the editor is a tiny random FLUX.1-Kontext\n# pipeline: its output is noise."
              + ("\n# The Gemini client needs a key: export FAKE_GEMINI_KEY=anything" if api == "gemini" else ""))
    return header + "\n" + to_yaml(config)


SAMPLES_FOLDER = "eval-samples"


def write_eval_samples(folder: Path, size: tuple[int, int] = (256, 192)) -> Path:
    """The sample drawings with the paper's example requests, and their manifest; returns the manifest."""
    from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image
    from imageedit_r1.store import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, request in SAMPLE_REQUESTS.items():
        sample_image(name, size).save(folder / f"{name}.png")
        lines.append(json.dumps({"id": name, "image": f"{name}.png", "request": request}))
    return atomic_write_text(folder / "manifest.jsonl", "\n".join(lines) + "\n")


def offline_eval_config(models: Path, port: int, manifest: Path, model: str = "fake-model") -> str:
    """An eval YAML: the sample benchmark, two editors (the tiny FLUX.1-Kontext, and the fake server's
    OpenAI image edits) each alone and behind the agents, judged by the fake server."""
    agent, flux = _stand_ins(models, port, "openai", model)
    images = {"name": "openai-image", "options": {"base_url": f"http://127.0.0.1:{port}/v1", "timeout": 60,
                                                  "retry": {"attempts": 1}}}
    methods = []
    for group, editor, short in (("tiny FLUX.1-Kontext (random weights)", flux, "tiny-flux"),
                                 ("OpenAI images (stand-in)", images, "images")):
        methods.append({"name": f"{short}-original", "group": group, "label": "Original", "kind": "original",
                        "baseline": True, "editor": editor})
        methods.append({"name": f"{short}-r1", "group": group, "label": "ImageEdit-R1", "kind": "pipeline",
                        "editor": editor, "decomposer": agent, "sequencer": agent,
                        "on_decompose_failure": "keywords", "on_sequence_failure": "template"})
    config = {
        "out_dir": "runs/offline-eval",
        "concurrency": 2,
        "benchmarks": [{"name": "samples", "source": "manifest", "manifest": str(manifest.resolve())}],
        "methods": methods,
        "judges": [{"name": "stand-in judge", "backend": "openai", "model": model,
                    "base_url": f"http://127.0.0.1:{port}/v1", "retry": {"attempts": 1}, "timeout": 30}],
    }
    from imageedit_r1.config import load_config, to_yaml
    from imageedit_r1.eval.config import EvalConfig

    load_config(EvalConfig, data=config).validate()  # what it writes, eval run reads
    header = (f"# An offline evaluation from `python -m imageedit_r1.testing config --eval`: the agents, the judge "
              f"and the OpenAI\n# image editor are the fake server on port {port} (start it first: "
              f"`python -m imageedit_r1.testing serve --port {port}`);\n# the other editor is a tiny random "
              "FLUX.1-Kontext (its output is noise, and the judge's scores say so).\n"
              "# Run it: python -m imageedit_r1.eval run --config THIS-FILE, then eval table/report --run-dir "
              "runs/offline-eval")
    return header + "\n" + to_yaml(config)


def cmd_config(args) -> int:
    models = Path(args.models)
    flux = models / MODELS["flux-kontext"][0]
    if not flux.is_dir():
        print_error(f"no tiny editor in {flux}: run `python -m imageedit_r1.testing build --out {models}` first")
        return 2
    if not args.eval:
        sys.stdout.write(offline_config(models, args.port, args.api, args.model))
        return 0
    if args.api != "openai":
        print("error: --eval uses the OpenAI API of the fake server (its image edits): drop --api gemini",
              file=sys.stderr)
        return 2
    manifest = write_eval_samples(models / SAMPLES_FOLDER)
    sys.stdout.write(offline_eval_config(models, args.port, manifest, args.model))
    print(f"wrote the {SAMPLES_FOLDER} benchmark: {manifest}", file=sys.stderr)
    return 0


def cmd_warm_start(args) -> int:
    from imageedit_r1.testing.warm_start import warm_start

    options = {} if args.target_loss is None else {"target_loss": args.target_loss}
    result = warm_start(args.model, args.train_files, args.out, max_steps=args.max_steps, **options)
    print(f"warm start: {result.steps} supervised step(s), answer loss {result.losses[0]} -> {result.losses[-1]}; "
          f"saved to {result.out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imageedit_r1.testing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build tiny random-weight models into a folder (nothing written elsewhere)")
    build.add_argument("--out", required=True, help="folder for the models (one sub-folder each)")
    build.add_argument("--models", type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
                       default=["qwen25vl", "flux-kontext"],
                       help=f"comma-separated, from {', '.join(MODELS)} (default: qwen25vl,flux-kontext)")
    build.set_defaults(func=cmd_build)
    serve = sub.add_parser("serve", help="a loopback fake OpenAI-compatible (chat and image edits) or Gemini server")
    serve.add_argument("--api", choices=APIS, default="openai")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free one)")
    serve.add_argument("--replies", help="JSON list of replies, in order, the last repeating "
                                         "(default: each decomposition, sequencing, judge, verifier or teacher prompt "
                                         "answered from what it is given: the request split by rule, the images "
                                         "measured; see imageedit_r1/testing/stand_ins.py)")
    serve.add_argument("--model", default="fake-model", help="the model name the server reports")
    serve.set_defaults(func=cmd_serve)
    config = sub.add_parser("config", help="print a pipeline YAML (or with --eval an eval YAML) that uses the tiny "
                                           "editor and the fake server")
    config.add_argument("--models", required=True, help="the folder given to `build --out`")
    config.add_argument("--eval", action="store_true",
                        help="an eval config instead: a benchmark of sample drawings (written to <models>/"
                             f"{SAMPLES_FOLDER}), the tiny editor and the fake server's image edits, alone and "
                             "behind the agents, judged by the fake server")
    config.add_argument("--port", type=int, default=8765)
    config.add_argument("--api", choices=APIS, default="openai")
    config.add_argument("--model", default="fake-model")
    config.set_defaults(func=cmd_config)
    warm = sub.add_parser("warm-start", help="a few supervised steps of a tiny Qwen2.5-VL on a verl export's answers, "
                                             "so a GRPO smoke run has rewards that differ")
    warm.add_argument("--model", required=True, help="the tiny Qwen2.5-VL folder (from `build`)")
    warm.add_argument("--train-files", required=True, help="verl parquet from `python -m imageedit_r1.data export`")
    warm.add_argument("--out", required=True, help="folder for the trained copy")
    warm.add_argument("--target-loss", type=float, default=None,
                      help="stop at this answer loss (default 0.1: answers mostly in format, not yet reliable)")
    warm.add_argument("--max-steps", type=int, default=200)
    warm.set_defaults(func=cmd_warm_start)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            print_error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
            return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print_error(exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
