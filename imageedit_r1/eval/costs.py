"""Token and cost arithmetic: estimates before a run, actual cost from reported usage after it.

Image token counts follow the providers' published rules (OpenAI's 512-px tiles after fitting
into 2048² and scaling the short side to 768; Gemini's 258 tokens per image up to 384 px, else per
768-px tile); other servers are assumed to be OpenAI-like. They are estimates: the reported usage
of each call is what ``cost_usd`` charges.
"""

from __future__ import annotations

import math

from imageedit_r1.eval.config import PriceConfig


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


def price_for(prices: dict[str, PriceConfig], *models: str | None) -> PriceConfig | None:
    for model in models:
        if model and model in prices:
            return prices[model]
    return None


def cost_usd(price: PriceConfig | None, prompt_tokens: int = 0, completion_tokens: int = 0,
             images: int = 0) -> float | None:
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6 \
        + images * price.per_image
