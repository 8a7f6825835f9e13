"""Prices, tokens and cost: estimates before a run, actual cost from reported usage after it.

One ``Price`` type for every paid model of the project (judges, verifiers, teachers, API
editors), looked up by model name with ``price_for``: the exact name, else the longest name
whose dated or numbered snapshot the model is (``gpt-4o-2024-08-06`` is priced as ``gpt-4o``,
``gpt-4o-mini-2024-07-18`` as ``gpt-4o-mini``, never as ``gpt-4o``).

Image token counts follow the providers' published rules (OpenAI's 512-px tiles after fitting
into 2048² and scaling the short side to 768; Gemini's 258 tokens per image up to 384 px, else per
768-px tile); other servers are assumed to be OpenAI-like. They are estimates: the reported usage
of each call is what ``cost_usd`` charges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class Price:
    """US dollars per million prompt and completion tokens, and per generated image."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    per_image: float = 0.0  # API editors

    renamed_keys: ClassVar[dict[str, str]] = {"input": "input_per_mtok", "output": "output_per_mtok"}


def image_tokens(provider: str, width: int, height: int) -> int:
    if provider == "gemini":
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))  # about four characters a token for English


def is_snapshot(model: str, name: str) -> bool:
    """``model`` is ``name`` pinned to a dated or numbered snapshot: ``name-2024-08-06``, ``name-001``."""
    rest = model[len(name):]
    return model.startswith(name) and rest.startswith("-") and rest[1:2].isdigit()


def priced_as(prices: dict[str, Price], *models: str | None) -> str | None:
    """The entry of ``prices`` that prices the first of ``models`` it knows: its exact name, else the
    longest name it is a snapshot of; None when none is priced."""
    for model in models:
        if not model:
            continue
        if model in prices:
            return model
        snapshots = [name for name in prices if is_snapshot(model, name)]
        if snapshots:
            return max(snapshots, key=len)
    return None


def price_for(prices: dict[str, Price], *models: str | None) -> Price | None:
    """The ``Price`` of the first of ``models`` that ``prices`` knows (see ``priced_as``), else None."""
    name = priced_as(prices, *models)
    return None if name is None else prices[name]


def cost_usd(price: Price | None, prompt_tokens: int = 0, completion_tokens: int = 0,
             images: int = 0) -> float | None:
    """USD for the given usage at ``price``; None when there is no price."""
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6 \
        + images * price.per_image
