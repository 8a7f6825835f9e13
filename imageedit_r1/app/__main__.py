"""``python -m imageedit_r1.app``: serve the interactive editor (see ``--help`` and docs/app.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from imageedit_r1.cli_common import print_error

AUTH_ENV = "IMAGEEDIT_R1_APP_AUTH"

EPILOG = f"""\
examples:
  # offline demo on this machine: tiny random-weight models built on the fly (CPU; output is noise)
  python -m imageedit_r1.app --demo

  # the paper's setup (Qwen2.5-VL-7B agents, FLUX.1-Kontext-dev editor; needs a GPU and the weights)
  python -m imageedit_r1.app --config examples/configs/flux_kontext.yaml

  # a shared server: listen on every interface, with a login (user:password; several separated by commas)
  {AUTH_ENV}='alice:long-passphrase' python -m imageedit_r1.app --config cfg.yaml --host 0.0.0.0

The app listens on 127.0.0.1 unless --host says otherwise and makes no public share link unless
--share is given. Uploads are bounded (--max-upload-mb, --max-megapixels; PNG, JPEG, WebP, BMP,
TIFF). Model calls run one at a time; up to --queue-size requests wait. Endpoints /plan and
/execute serve gradio_client (docs/app.md).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.app",
        description="ImageEdit-R1 in the browser: see the agents' plan, correct it, and edit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="pipeline YAML (examples/configs/); overrides go after as key=value")
    parser.add_argument("--demo", action="store_true",
                        help="OFFLINE DEMO: tiny random-weight agents and editor built on the fly (CPU, no downloads); "
                        "the edited image is noise")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    parser.add_argument("--auth-file", help=f"file of user:password lines for a login (or set {AUTH_ENV})")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload accepted, in MiB (default 25)")
    parser.add_argument("--max-megapixels", type=float, default=40.0,
                        help="largest image accepted, in megapixels (default 40; stops decompression bombs)")
    parser.add_argument("--queue-size", type=int, default=16,
                        help="requests that may wait for the model at once; more are turned away (default 16)")
    parser.add_argument("--output-dir", help="where edited images and traces are kept for download (default: a temp folder)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (omegaconf dotlist)")
    return parser


def read_auth(auth_file: str | None, environ=os.environ) -> list[tuple[str, str]]:
    """Login pairs from ``--auth-file`` (user:password a line) or ``$IMAGEEDIT_R1_APP_AUTH`` (comma-separated)."""
    text = Path(auth_file).read_text(encoding="utf-8") if auth_file else environ.get(AUTH_ENV, "")
    pairs = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError("login entries must look like user:password (the password is not shown here)")
        pairs.append((user, password))
    return pairs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    bad = [item for item in args.overrides if "=" not in item]
    if bad:
        parser.error(f"overrides must look like key=value, got: {bad}")
    if args.demo and args.config:
        parser.error("--demo builds its own tiny models; it does not take --config")
    if args.queue_size < 1 or args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        parser.error("--queue-size, --max-upload-mb and --max-megapixels must be positive")
    try:
        auth = read_auth(args.auth_file)
    except (OSError, ValueError) as exc:
        parser.error(f"login: {exc}")
    if not is_loopback(args.host) and not auth:
        print(f"warning: listening on {args.host} without a login; anyone who can reach this port can edit. "
              f"Set {AUTH_ENV} or --auth-file for shared deployments.", file=sys.stderr)

    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        print_error('the app needs Gradio: pip install -e ".[app]" (and ".[diffusers]" for local editors)')
        return 2
    from imageedit_r1.app.server import serve

    return serve(args, auth)


if __name__ == "__main__":
    sys.exit(main())
