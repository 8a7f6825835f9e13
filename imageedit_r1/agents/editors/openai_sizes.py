"""The ``size`` each OpenAI image model accepts, in one table, and the size to ask for an input.

Documented rules (the ``openai`` SDK's ``images.edit`` reference and the model pages):

- ``gpt-image-2`` (and its snapshots, ``gpt-image-2.5-*``): any ``WIDTHxHEIGHT`` with both sides
  multiples of 16, aspect within 1:3..3:1, 655,360 to 8,294,400 pixels, longest edge <= 3,840.
- ``gpt-image-1``, ``gpt-image-1.5``, ``gpt-image-1-mini``, ``chatgpt-image-latest``: fixed sizes
  1024x1024, 1536x1024, 1024x1536 (or ``auto``).
- ``dall-e-2``: squares 256x256, 512x512, 1024x1024; the upload must be a square PNG under 4 MB,
  and base64 comes back only when ``response_format="b64_json"`` is asked for.

``size_rule(model)`` finds a model's rule (a dated snapshot shares its family's); a model the
table does not know gets the three standard sizes every GPT image model takes.
``SizeRule.choose(width, height, area=...)`` gives the valid size closest to the input's aspect at
about ``area`` pixels; the editor pads the input to exactly that size and cuts the padding off the
answer, so any input shape (1:20 to 20:1, 1x1 to panoramas) meets the rule exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STANDARD_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))


@dataclass(frozen=True)
class SizeRule:
    """What one model accepts as ``size``: a fixed list (``sizes``), or free sizes within bounds."""

    name: str
    sizes: tuple[tuple[int, int], ...] = ()  # fixed sizes; empty: free sizes within the bounds below
    multiple: int = 16
    min_aspect: float = 1 / 3
    max_aspect: float = 3.0
    min_pixels: int = 0
    max_pixels: int = 0
    max_edge: int = 0
    auto: bool = True  # "auto" is a valid size
    square_input: bool = False  # the uploaded image must be square (dall-e-2)
    response_format: str | None = None  # sent with every request ("b64_json" for dall-e-2)

    def violation(self, width: int, height: int) -> str | None:
        """Why ``WIDTHxHEIGHT`` is not a valid size for this model, or None when it is."""
        if self.sizes:
            if (width, height) in self.sizes:
                return None
            return f"{width}x{height} is not one of {', '.join(f'{w}x{h}' for w, h in self.sizes)}"
        if width < 1 or height < 1 or width % self.multiple or height % self.multiple:
            return f"{width}x{height}: both sides must be multiples of {self.multiple}"
        if not self.min_aspect - 1e-9 <= width / height <= self.max_aspect + 1e-9:
            return f"{width}x{height}: the aspect ratio must be within 1:{1 / self.min_aspect:g}..{self.max_aspect:g}:1"
        if self.min_pixels and width * height < self.min_pixels:
            return f"{width}x{height}: at least {self.min_pixels:,} pixels"
        if self.max_pixels and width * height > self.max_pixels:
            return f"{width}x{height}: at most {self.max_pixels:,} pixels"
        if self.max_edge and max(width, height) > self.max_edge:
            return f"{width}x{height}: the longest edge must be at most {self.max_edge}"
        return None

    def check(self, size: str) -> None:
        """Raise ``ValueError`` saying what is wrong when ``size`` (``"WxH"`` or ``"auto"``) is invalid."""
        if size == "auto":
            if not self.auto:
                raise ValueError(f"size 'auto' is not available for {self.name}")
            return
        try:
            width, height = (int(part) for part in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"size must be 'match', 'auto' or WIDTHxHEIGHT, got {size!r}") from None
        problem = self.violation(width, height)
        if problem:
            raise ValueError(f"size {size!r} is not valid for {self.name}: {problem}")

    def choose(self, width: int, height: int, *, area: int = 1024 * 1024) -> tuple[int, int]:
        """The valid size closest to ``width:height`` (log scale) at about ``area`` pixels.

        Free sizes: among the valid sizes within 10% of the target area (clamped into the
        model's pixel range), the one with the closest aspect; fixed sizes: the closest aspect,
        then the closest area.
        """
        if width < 1 or height < 1:
            raise ValueError(f"invalid image size {width}x{height}")
        aspect = width / height
        if self.sizes:
            return min(self.sizes, key=lambda s: (round(abs(math.log(s[0] / s[1] / aspect)), 9),
                                                  abs(math.log(s[0] * s[1] / area))))
        target = min(max(area, self.min_pixels or 1), self.max_pixels or area)
        aspect = min(self.max_aspect, max(self.min_aspect, aspect))
        step = self.multiple
        longest = self.max_edge or step * math.ceil(math.sqrt(target * max(aspect, 1 / aspect)) * 2 / step)
        candidates = []
        for h in range(step, longest + 1, step):
            ideal = aspect * h
            for w in {max(step, math.floor(ideal / step) * step), max(step, math.ceil(ideal / step) * step)}:
                if self.violation(w, h) is None:
                    area_error = abs(math.log(w * h / target))
                    candidates.append((area_error > math.log(1.1), abs(math.log(w / h / aspect)), area_error, (w, h)))
        if not candidates:
            raise ValueError(f"no valid {self.name} size near {width}x{height}")
        return min(candidates)[3]


_GPT_IMAGE_2 = SizeRule("gpt-image-2", min_pixels=655_360, max_pixels=8_294_400, max_edge=3840)
_STANDARD = SizeRule("gpt-image-1", sizes=STANDARD_SIZES)

SIZE_RULES: dict[str, SizeRule] = {
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-1": _STANDARD,
    "gpt-image-1.5": SizeRule("gpt-image-1.5", sizes=STANDARD_SIZES),
    "gpt-image-1-mini": SizeRule("gpt-image-1-mini", sizes=STANDARD_SIZES),
    "chatgpt-image-latest": SizeRule("chatgpt-image-latest", sizes=STANDARD_SIZES),
    "dall-e-2": SizeRule("dall-e-2", sizes=((256, 256), (512, 512), (1024, 1024)), auto=False, square_input=True,
                         response_format="b64_json"),
}


def size_rule(model: str) -> SizeRule:
    """The rule of ``model``: its own entry, else its family's (the longest entry it starts with,
    followed by ``-`` or ``.``: ``gpt-image-2-2026-04-21`` and ``gpt-image-2.5-flare`` take
    gpt-image-2's), else the standard sizes every GPT image model takes."""
    if model in SIZE_RULES:
        return SIZE_RULES[model]
    for name in sorted(SIZE_RULES, key=len, reverse=True):
        if model.startswith(name) and model[len(name)] in "-.":
            return SIZE_RULES[name]
    return SizeRule(f"{model} (standard sizes)", sizes=STANDARD_SIZES)
