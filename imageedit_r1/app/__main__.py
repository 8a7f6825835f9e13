"""``python -m imageedit_r1.app``: serve the interactive editor (see ``--help`` and docs/app.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from imageedit_r1.cli_common import print_error
from imageedit_r1.request_limits import check_logins

AUTH_ENV = "IMAGEEDIT_R1_APP_AUTH"

EPILOG = f"""\
examples:
  # offline demo on this machine: tiny random-weight models built on the fly (CPU; output is noise)
  python -m imageedit_r1.app --demo

  # the paper's setup (Qwen2.5-VL-7B agents, FLUX.1-Kontext-dev editor; needs a GPU and the weights)
  python -m imageedit_r1.app --config examples/configs/flux_kontext.yaml

  # a shared server: listen on every interface, with a login (user:password; several separated by
  # commas, a comma or backslash inside a password written \\, or \\\\; or --auth-file, one per line)
  {AUTH_ENV}='alice:a-long-passphrase' python -m imageedit_r1.app --config cfg.yaml --host 0.0.0.0

The app listens on 127.0.0.1 unless --host says otherwise and makes no public share link unless
--share is given. With a login, every route but the login page needs it, and failed logins are
throttled per client. Uploads are bounded (--max-upload-mb, --max-megapixels; PNG, JPEG, WebP,
BMP, TIFF) and kept within --upload-store-mb and --upload-keep-hours. Model calls run one at a
time; up to --queue-size requests wait. Endpoints /plan and /execute serve gradio_client
(docs/app.md, which also describes the security model).
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
    parser.add_argument("--auth-file", help=f"file of logins, one user:password a line (split at the first colon; "
                        f"the password may hold anything); or set {AUTH_ENV}")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload accepted, in MiB (default 25)")
    parser.add_argument("--max-megapixels", type=float, default=40.0,
                        help="largest image accepted, in megapixels (default 40; stops decompression bombs)")
    parser.add_argument("--queue-size", type=int, default=16,
                        help="requests that may wait for the model at once; more are turned away (default 16)")
    parser.add_argument("--upload-store-mb", type=float, default=2048.0,
                        help="uploads kept at most, in MiB; the oldest go first (default 2048)")
    parser.add_argument("--upload-keep-hours", type=float, default=24.0,
                        help="uploads older than this are deleted (default 24)")
    parser.add_argument("--output-dir", help="where edited images and traces are kept for download (default: a temp folder)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (omegaconf dotlist)")
    return parser


def read_auth(auth_file: str | None, environ=os.environ) -> list[tuple[str, str]]:
    """Login pairs from ``--auth-file`` or ``$IMAGEEDIT_R1_APP_AUTH``, each password at least
    ``MIN_PASSWORD_CHARS`` long (ValueError otherwise, naming no password).

    The file holds one ``user:password`` a line, split at the first colon: the password is the
    rest of the line, commas, colons and spaces included; blank lines and lines starting with
    ``#`` are skipped. The variable separates entries by commas; inside a password ``\\,`` is a
    comma and ``\\\\`` a backslash.
    """
    if auth_file:
        entries = [line.rstrip("\r") for line in Path(auth_file).read_text(encoding="utf-8").split("\n")]
        entries = [line for line in entries if line.strip() and not line.lstrip().startswith("#")]
    else:
        entries = [item.strip() for item in _split_escaped(environ.get(AUTH_ENV, "")) if item.strip()]
    pairs = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError("login entries must look like user:password (the password is not shown here)")
        pairs.append((user.strip(), password))
    return check_logins(pairs)


def _split_escaped(text: str) -> list[str]:
    """``text`` split at commas, where ``\\,`` is a comma and ``\\\\`` a backslash within an entry."""
    entries, current, chars = [], [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(following if following in (",", "\\") else char + following)
        elif char == ",":
            entries.append("".join(current))
            current = []
        else:
            current.append(char)
    entries.append("".join(current))
    return entries


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
    if min(args.queue_size, args.max_upload_mb, args.max_megapixels, args.upload_store_mb, args.upload_keep_hours) <= 0:
        parser.error("--queue-size, --max-upload-mb, --max-megapixels, --upload-store-mb and --upload-keep-hours "
                     "must be positive")
    if args.upload_store_mb < args.max_upload_mb:
        parser.error(f"--upload-store-mb ({args.upload_store_mb:g}) must hold at least one upload of "
                     f"--max-upload-mb ({args.max_upload_mb:g})")
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
