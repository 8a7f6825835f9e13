"""What every command line of the project does alike: common flags, error lines (secrets masked) and Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
import threading

INTERRUPTED = "interrupted: re-run the same command to resume"


def add_common_flags(parser: argparse.ArgumentParser, subcommands: argparse._SubParsersAction) -> None:
    """``-q``/``--quiet`` (also spelled ``--no-progress``): no progress bars, read as ``args.quiet``.

    Accepted before the subcommand and after it, by every subcommand alike: ``data -q label`` and
    ``data label -q`` mean the same. The subcommands' copy has no default of its own, so it never
    overwrites a flag given before the subcommand.
    """
    add_quiet_flag(parser)
    for command in subcommands.choices.values():
        add_quiet_flag(command, default=argparse.SUPPRESS)


def add_quiet_flag(parser, default=False) -> None:
    """``-q``/``--quiet``/``--no-progress`` on one parser (or argument group): ``args.quiet``."""
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action=_Quiet, default=default,
                        help="no progress bars")


# The Hugging Face libraries' own switch: huggingface_hub and transformers read it when imported,
# and the diffusion editors pass it on to diffusers, which has none.
NO_HF_PROGRESS = "HF_HUB_DISABLE_PROGRESS_BARS"


class _Quiet(argparse._StoreTrueAction):
    """``-q``: ``args.quiet``, and the libraries' loading bars off (set before they are imported)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        os.environ[NO_HF_PROGRESS] = "1"
        super().__call__(parser, namespace, values, option_string)


def print_error(exc: BaseException | str) -> None:
    """``error: …`` on stderr, one line per line of the message (a list of problems stays readable),
    every secret masked (``imageedit_r1.masking``): an error may quote a key, a URL with one, a header."""
    from imageedit_r1.masking import mask_text

    lines = mask_text(str(exc)).splitlines() or [type(exc).__name__]
    for line in lines:
        print(f"error: {line.strip()}" if line.strip() else "", file=sys.stderr)


def interrupted() -> int:
    """Ctrl-C: one line instead of a traceback; exit status 130 (128 + SIGINT), as shells report it.

    Work already finished is on disk (every store here appends atomically), so the same command
    resumes. Worker threads still busy with a request would hold the interpreter open until they
    return; the process exits at once instead.
    """
    print(f"\n{INTERRUPTED}" if _progress_bar_open() else INTERRUPTED, file=sys.stderr, flush=True)
    sys.stdout.flush()
    if threading.active_count() > 1:
        os._exit(130)
    return 130


def _progress_bar_open() -> bool:
    try:
        from tqdm import tqdm
    except ImportError:
        return False
    return bool(getattr(tqdm, "_instances", None))
