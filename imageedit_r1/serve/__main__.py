"""``python -m imageedit_r1.serve``: the OpenAI-compatible images API on Ray Serve (see docs/serving.md)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from imageedit_r1.serve.front_door import KEYS_ENV

EPILOG = f"""\
examples:
  # offline demo on this machine: tiny random-weight models built on the fly (CPU; the edits are noise)
  python -m imageedit_r1.serve --demo

  # the paper's setup on every GPU of this machine (one editor replica per GPU)
  python -m imageedit_r1.serve --config examples/configs/flux_kontext.yaml

  # several pipelines, sized for a cluster (RAY_ADDRESS), keys required, on every interface
  RAY_ADDRESS=ray://head:10001 python -m imageedit_r1.serve --config examples/serve.yaml \\
      --host 0.0.0.0 --api-keys-file keys.txt editor.max_queued_requests=32

  # then, from any OpenAI client:
  curl http://127.0.0.1:8000/v1/images/edits -H "Authorization: Bearer $KEY" \\
      -F model=imageedit-r1 -F image=@photo.png -F prompt="Change the color of her coat to scarlet"

The service listens on 127.0.0.1 unless --host says otherwise, and refuses to listen elsewhere
without API keys (--api-keys-file: one key a line; or ${KEYS_ENV}, comma-separated).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.serve",
        description="ImageEdit-R1 for programs: OpenAI's POST /v1/images/edits plus plan routes, on Ray Serve.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a service config (pipelines + deployment sizes) or one pipeline config "
                        "(examples/configs/); overrides go after as key=value")
    parser.add_argument("--demo", action="store_true",
                        help="OFFLINE DEMO: tiny random-weight agents and editor built on the fly (CPU, no downloads); "
                        "the edited images are noise")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-keys-file", help=f"file of API keys, one a line (or set {KEYS_ENV}, comma-separated); "
                        "clients send 'Authorization: Bearer KEY'")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (omegaconf dotlist)")
    return parser


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM while models build or Ray starts unwinds like Ctrl-C, so what was started is stopped
    # and the demo's models are deleted; once serving, ``run`` takes both signals over.
    signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo == bool(args.config):
        parser.error("give --config CONFIG, or --demo (which builds its own tiny models)")
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"overrides must look like key=value, got: {bad}")
    from imageedit_r1.app.__main__ import is_loopback
    from imageedit_r1.masking import register_values
    from imageedit_r1.serve.front_door import key_digest, read_api_keys

    try:
        keys = read_api_keys(args.api_keys_file)
    except (OSError, ValueError) as exc:
        parser.error(f"API keys: {exc}")
    register_values(keys)
    if not keys and not is_loopback(args.host):
        parser.error(f"listening on {args.host} needs API keys: --api-keys-file FILE or {KEYS_ENV}")
    if not keys:
        print("note: no API keys set: every program on this machine may call the service", file=sys.stderr)
    import importlib.util

    if importlib.util.find_spec("ray.serve") is None or importlib.util.find_spec("fastapi") is None:
        print('error: the service needs Ray Serve: pip install -e ".[serve]"', file=sys.stderr)
        return 2
    from imageedit_r1.serve.config import load_serve_config
    from imageedit_r1.serve.server import demo_config, run
    from imageedit_r1.unavailable import Unavailable

    work = Path(tempfile.mkdtemp(prefix="imageedit-r1-serve-demo-")) if args.demo else None
    try:
        try:
            config = demo_config(work, args.overrides) if args.demo else load_serve_config(args.config, args.overrides)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            return run(config, host=args.host, port=args.port, key_digests=tuple(key_digest(key) for key in keys),
                       demo=args.demo)
        except (ValueError, Unavailable) as exc:  # too few GPUs, a cluster out of reach, a model that cannot load
            print(f"error: {exc}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("stopped before the service was ready", file=sys.stderr)
        return 130
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
