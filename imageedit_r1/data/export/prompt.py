"""The decomposition prompt every trainer's rows carry: the same text, the image in the same place."""

from __future__ import annotations

from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget
from imageedit_r1.prompts import render_prompt

IMAGE_TOKEN = "<image>"
PROMPT_NAME = "decompose"


def easyr1_problem(request: str) -> str:
    """The EasyR1 ``problem`` text: the image slot, then the request."""
    return IMAGE_TOKEN + request.replace(IMAGE_TOKEN, "")


def decomposition_prompt(request: str) -> str:
    """The full prompt (decompose.jinja around ``problem``): what EasyR1 builds and what verl is given."""
    return render_prompt(PROMPT_NAME, content=easyr1_problem(request))


def decomposition_prompt_parts(request: str) -> tuple[str, str]:
    """The decomposition prompt as (text before the image, text after it), for structured chat content."""
    before, _, after = decomposition_prompt(request).partition(IMAGE_TOKEN)
    return before, after


def prompt_text_bytes(request: str) -> int:
    """UTF-8 bytes of the prompt text around the image slot (a bound on its tokens)."""
    return len(decomposition_prompt(request).replace(IMAGE_TOKEN, "").encode("utf-8"))


def max_prompt_length(budget: ImageBudget = DEFAULT_BUDGET) -> int:
    """The trainers' ``max_prompt_length`` for ``budget``: the largest image, this prompt and a request."""
    return budget.max_prompt_length(prompt_text_bytes(""))
