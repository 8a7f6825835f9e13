"""``python -m imageedit_r1.testing``: offline stand-ins a user can start, no weights or keys needed.

    python -m imageedit_r1.testing build --out tiny            # tiny random-weight models
    python -m imageedit_r1.testing serve --api openai --port 8765 --replies replies.json
    python -m imageedit_r1.testing config --models tiny --port 8765 > offline.yaml
    python -m imageedit_r1.pipeline --config offline.yaml --image photo.jpg --request "..." --out out.png
    python -m imageedit_r1.testing warm-start --model tiny/tiny-qwen25vl --train-files rl/verl/train.parquet --out warm

The models have random weights (their output is noise) and the server answers from a script:
together they exercise every stage of the pipeline, eval and data tools with the real libraries
and the real SDK clients, on a CPU, offline.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

MODELS = {
    "qwen25vl": ("tiny-qwen25vl", "a tiny Qwen2.5-VL (decomposition / sequencing agents, teacher)"),
    "flux-kontext": ("tiny-flux-kontext", "a tiny FluxKontextPipeline (editor flux-kontext)"),
    "qwen-image-edit": ("tiny-qwen-image-edit", "a tiny QwenImageEditPipeline (editor qwen-image-edit)"),
}
APIS = ("openai", "gemini")
EXAMPLE_REPLIES = [
    '<think>The coat is the subject.</think><action>["Recoloring"]</action><subjects>["coat"]</subjects>'
    '<goals>["scarlet"]</goals>',
    '{"sub_requests": ["Recolor the coat to scarlet"]}',
]
# Without --replies the server answers each prompt in kind (recognised by its opening words), so a run can
# be repeated and a verifier, an eval judge or a teacher on the same server gets an answer it can read.
ROLE_MARKERS = (
    ("sequence", "You are the sequencing agent"),
    ("checklist", "You are checking an image edit"),
    ("judge", "You are an expert image quality evaluator"),
    ("teacher", "You are labelling training data"),
)
JUDGE_REPLY = ('{"reasoning": "The coat is scarlet; the rest is untouched.", "fulfillment": 4, "quality": 2, '
               '"preservation": 3, "unmet": []}')
TEACHER_REPLY = ('{"rationale": "A recoloring of the coat.", "actions": ["Recoloring"], "subjects": ["coat"], '
                 '"goals": ["scarlet"]}')
_PLAN_ITEM = re.compile(r"^\s*(\d+)\.\s+\S", re.MULTILINE)


def reply_in_kind(text: str) -> str:
    """The default answer to a prompt of the decomposition, sequencing, judge, verifier or teacher kind."""
    role = next((name for name, marker in ROLE_MARKERS if marker in text), "decompose")
    if role == "sequence":
        return EXAMPLE_REPLIES[1]
    if role == "checklist":
        plan_size = max([int(n) for n in _PLAN_ITEM.findall(text.split("sub-requests:", 1)[-1])] or [1])
        return json.dumps({"checks": [{"index": i, "note": "", "met": True} for i in range(1, plan_size + 1)]})
    if role == "judge":
        return JUDGE_REPLY
    if role == "teacher":
        return TEACHER_REPLY
    return EXAMPLE_REPLIES[0]


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
    from imageedit_r1.testing.fake_servers import (
        FakeServer,
        add_gemini_route,
        add_openai_chat_route,
        gemini_text,
        openai_text,
        scripted,
    )

    replies = read_replies(args.replies) if args.replies else None
    server = FakeServer(port=args.port, raise_handler_errors=False)
    if args.api == "openai":
        reply = scripted(*replies) if replies else (lambda request: reply_in_kind(openai_text(request)))
        add_openai_chat_route(server, reply, model=args.model)
    else:
        reply = scripted(*replies) if replies else (lambda request: reply_in_kind(gemini_text(request)))
        add_gemini_route(server, reply, model=args.model)
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    base = f"{server.url}/v1" if args.api == "openai" else server.url
    script = (f"{len(replies)} scripted replies; the last repeats" if replies else
              "answering each decomposition, sequencing, judge, verifier or teacher prompt in kind")
    try:  # from the line that says Ctrl-C stops it on, Ctrl-C stops it
        print(f"fake {args.api} server on {base} (model {args.model!r}, {script}). Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(f"stopped after {len(server.requests)} request(s)", file=sys.stderr)
        return 0
    finally:
        server.stop()


def offline_config(models: Path, port: int, api: str = "openai", model: str = "fake-model") -> str:
    """A pipeline YAML: agents on the fake server, the editor a tiny local FLUX.1-Kontext pipeline."""
    agent = {"backend": api, "model": model, "base_url": f"http://127.0.0.1:{port}" + ("/v1" if api == "openai" else ""),
             "retry": {"attempts": 1}, "timeout": 30}
    if api == "gemini":
        agent["api_key_env"] = "FAKE_GEMINI_KEY"
    config = {
        "mode": "single-turn",
        "seed": 0,
        "decomposer": agent,
        "editor": {"name": "flux-kontext", "options": {
            "model_id": str((models / MODELS["flux-kontext"][0]).resolve()), "local_files_only": True,
            "device": "cpu", "dtype": "float32", "max_area": 64 * 64, "min_area": 0, "num_inference_steps": 2,
            "max_sequence_length": 64}},
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


def cmd_config(args) -> int:
    models = Path(args.models)
    flux = models / MODELS["flux-kontext"][0]
    if not flux.is_dir():
        print(f"error: no tiny editor in {flux}: run `python -m imageedit_r1.testing build --out {models}` first",
              file=sys.stderr)
        return 2
    sys.stdout.write(offline_config(models, args.port, args.api, args.model))
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
    serve = sub.add_parser("serve", help="a loopback fake OpenAI-compatible or Gemini server with scripted replies")
    serve.add_argument("--api", choices=APIS, default="openai")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free one)")
    serve.add_argument("--replies", help="JSON list of replies, in order, the last repeating "
                                         "(default: an answer in kind to each decomposition, sequencing, judge, verifier "
                                         "or teacher prompt, the same every time)")
    serve.add_argument("--model", default="fake-model", help="the model name the server reports")
    serve.set_defaults(func=cmd_serve)
    config = sub.add_parser("config", help="print a pipeline YAML that uses the tiny editor and the fake server")
    config.add_argument("--models", required=True, help="the folder given to `build --out`")
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
            print(f"error: unknown model(s) {unknown}; choose from {', '.join(MODELS)}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
