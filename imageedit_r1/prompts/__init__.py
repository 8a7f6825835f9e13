"""Prompt templates shipped with the package (Jinja2 files beside this module)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PROMPT_DIR = Path(__file__).parent


def template_path(name: str) -> Path:
    path = PROMPT_DIR / f"{name}.jinja"
    if not path.exists():
        available = sorted(p.stem for p in PROMPT_DIR.glob("*.jinja"))
        raise FileNotFoundError(f"no prompt template {name!r}; available: {available}")
    return path


@cache
def _template(name: str):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    return env.from_string(template_path(name).read_text(encoding="utf-8"))


def render_prompt(name: str, **variables) -> str:
    """Render ``prompts/<name>.jinja``; a missing variable is an error, never an empty string."""
    return _template(name).render(**variables).strip()


def prompt_sha256(name: str) -> str:
    return hashlib.sha256(template_path(name).read_bytes()).hexdigest()
