"""The image budget: how many pixels, and so how many image tokens, the decomposition agent sees.

Qwen2.5-VL cuts an image into 14-px patches and merges 2x2 of them into one token, so an image of
``h x w`` pixels costs ``(h / 28) * (w / 28)`` tokens after ``smart_resize`` has snapped both sides
to multiples of 28 and clamped the pixel count into ``[min_pixels, max_pixels]``. The budget is
defined here, once, and used by every stage that sizes an image:

- the data exporter writes each image at exactly the size this arithmetic gives (padded first if
  its aspect ratio is beyond what the processor accepts), so both trainers see it unchanged;
- the EasyR1 recipe passes it as ``data.min_pixels`` / ``data.max_pixels``; verl reads it from the
  ``min_pixels`` / ``max_pixels`` keys the exporter puts in each image dict;
- ``train export-checkpoint`` writes it into the checkpoint's ``preprocessor_config.json``;
- every local or served decomposer backend fits images to it before the model sees them.

The default is the EasyR1 recipe's: 262,144 to 1,003,520 pixels (335 to 1,280 image tokens).
Standard library only, so anything (a trainer's reward process, a TRL exporter) can import it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imageedit_r1.store import atomic_write_json

PATCH_SIZE = 14  # pixels per side of a vision patch (Qwen2-VL / Qwen2.5-VL)
MERGE_SIZE = 2  # patches merged per side into one image token
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28: every resized side is a multiple of this
PIXELS_PER_TOKEN = FACTOR * FACTOR  # 784

MIN_PIXELS = 262_144  # 512 x 512; EasyR1's default data.min_pixels
MAX_PIXELS = 1_280 * PIXELS_PER_TOKEN  # 1,003,520: at most 1,280 image tokens
# Qwen2-VL's processor (transformers and qwen_vl_utils) refuses a longer/shorter side ratio above this.
MAX_ASPECT_RATIO = 200.0

# Tokens a Qwen2.5-VL chat template adds around one user turn: the default system turn
# ("You are a helpful assistant."), role names, <|im_start|>/<|im_end|>, newlines, the
# generation prompt, plus <|vision_start|>/<|vision_end|> around the image. Counted generously.
CHAT_TEMPLATE_TOKENS = 64
# Longest request (UTF-8 bytes) the derived max_prompt_length makes room for; longer ones are
# refused by the exporter rather than silently dropped by the trainer's length filter.
MAX_REQUEST_BYTES = 1_024
# max_prompt_length is rounded up to a multiple of this.
PROMPT_LENGTH_STEP = 128
# Key under which ``write_budget`` records the budget in a processor config.
CONFIG_KEY = "imageedit_r1_image_budget"


class ImageBudgetError(ValueError):
    """A budget that cannot be used (non-integer, non-positive, min above max, below one token)."""


def _round(value: float) -> int:
    return round(value / FACTOR) * FACTOR


def smart_resize(
    height: int, width: int, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, factor: int = FACTOR
) -> tuple[int, int]:
    """Qwen's resize arithmetic: ``(height, width)`` snapped to multiples of ``factor`` within the bounds.

    The same integer arithmetic as ``qwen_vl_utils.smart_resize`` and the transformers Qwen2-VL
    image processor (Python's ``round``, then a floor or ceil rescale by ``sqrt`` of the pixel
    ratio), without their aspect-ratio check: callers pad first (see ``ImageBudget.fit``).
    A side never drops below ``factor`` (as in transformers; qwen_vl_utils can floor one to 0). Returns ``(height, width)`` in pixels.
    """
    if height < 1 or width < 1:
        raise ImageBudgetError(f"image sides must be at least 1 pixel, got {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Fit:
    """How one image is fitted: ``canvas`` = (width, height) after padding, ``size`` = final (width, height)."""

    original: tuple[int, int]
    canvas: tuple[int, int]
    size: tuple[int, int]

    @property
    def padded(self) -> bool:
        return self.canvas != self.original

    @property
    def tokens(self) -> int:
        return (self.size[0] // FACTOR) * (self.size[1] // FACTOR)


@dataclass(frozen=True)
class ImageBudget:
    """Bounds on the pixel count of an image the agent sees; image tokens follow from them."""

    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ImageBudgetError(f"{name} must be an integer number of pixels, got {value!r}")
        if self.min_pixels < 1:
            raise ImageBudgetError(f"min_pixels must be positive, got {self.min_pixels}")
        if self.max_pixels < PIXELS_PER_TOKEN:
            raise ImageBudgetError(f"max_pixels must be at least {PIXELS_PER_TOKEN} (one image token), got {self.max_pixels}")
        if self.min_pixels > self.max_pixels:
            raise ImageBudgetError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")

    # ------------------------------------------------------------------ arithmetic

    @property
    def max_image_tokens(self) -> int:
        """The most image tokens one image can cost under this budget."""
        return self.max_pixels // PIXELS_PER_TOKEN

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) Qwen's processor resizes a ``width x height`` image to under this budget."""
        h, w = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    def image_tokens(self, width: int, height: int) -> int:
        """Image tokens of a ``width x height`` image after fitting (``fit``)."""
        return self.fit(width, height).tokens

    def fit(self, width: int, height: int) -> Fit:
        """Pad (if needed) and resize so that the result is exactly what the processor keeps.

        An aspect ratio beyond ``MAX_ASPECT_RATIO`` (a 4600x20 banner) is refused by Qwen's
        processor, and rounding a thin side to 28 px can push a ratio just under it over the
        edge. The canvas is padded on its short side (content centred) until both the canvas
        and the resized size are within the ratio; the final size is a fixed point of
        ``smart_resize`` under this budget, so every later resize leaves it unchanged.
        """
        if width < 1 or height < 1:
            raise ImageBudgetError(f"image sides must be at least 1 pixel, got {width}x{height}")
        canvas_w, canvas_h = width, height
        limit = MAX_ASPECT_RATIO
        for _ in range(64):  # the ratio limit shrinks 10% a step: square long before the end
            size = self.resized_size(canvas_w, canvas_h)
            if _ratio(canvas_w, canvas_h) <= MAX_ASPECT_RATIO and _ratio(*size) <= MAX_ASPECT_RATIO and self._stable(size):
                return Fit((width, height), (canvas_w, canvas_h), size)
            limit = max(1.0, limit * 0.9)
            long_side = max(canvas_w, canvas_h)
            short = max(1, math.ceil(long_side / limit))
            if canvas_w >= canvas_h:
                canvas_h = max(canvas_h, short)
            else:
                canvas_w = max(canvas_w, short)
        raise ImageBudgetError(
            f"cannot fit a {width}x{height} image into {self}: no size there is stable under Qwen's resize; "
            "widen the gap between min_pixels and max_pixels"
        )

    def _stable(self, size: tuple[int, int]) -> bool:
        return self.resized_size(*size) == size

    # ------------------------------------------------------------------ prompt length

    def prompt_length_bound(self, prompt_text_bytes: int, image_tokens: int | None = None) -> int:
        """An upper bound on the prompt tokens of one image plus ``prompt_text_bytes`` of text.

        A byte-level BPE tokenizer (Qwen's) never makes more tokens than the text has UTF-8
        bytes; the chat template adds at most ``CHAT_TEMPLATE_TOKENS``.
        """
        tokens = self.max_image_tokens if image_tokens is None else image_tokens
        return tokens + CHAT_TEMPLATE_TOKENS + prompt_text_bytes

    def max_prompt_length(self, template_bytes: int, request_bytes: int = MAX_REQUEST_BYTES) -> int:
        """The trainers' ``max_prompt_length``: the largest image, the prompt template and a request."""
        bound = self.prompt_length_bound(template_bytes + request_bytes)
        return -(-bound // PROMPT_LENGTH_STEP) * PROMPT_LENGTH_STEP

    # ------------------------------------------------------------------ carrying it around

    def as_dict(self) -> dict[str, int]:
        return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any]) -> ImageBudget:
        unknown = sorted(set(value) - {"min_pixels", "max_pixels"})
        if unknown:
            raise ImageBudgetError(f"unknown image budget keys {unknown}; use min_pixels and max_pixels")
        return cls(**{key: value[key] for key in ("min_pixels", "max_pixels") if key in value})

    def __str__(self) -> str:
        return (
            f"{self.min_pixels:,}..{self.max_pixels:,} pixels "
            f"({-(-self.min_pixels // PIXELS_PER_TOKEN)}..{self.max_image_tokens} image tokens)"
        )


def _ratio(width: int, height: int) -> float:
    return max(width, height) / min(width, height)


DEFAULT_BUDGET = ImageBudget()


def resolve(spec: Any, model: str | os.PathLike | None = None) -> ImageBudget | None:
    """The budget a backend uses for option value ``spec``.

    ``"auto"`` (or None): the budget recorded in ``model``'s processor config if ``model`` is a
    folder that carries one (``write_budget``), else ``DEFAULT_BUDGET``. ``"off"`` or False: no
    budget (images go to the model as they are). A mapping with ``min_pixels`` / ``max_pixels``,
    or an ``ImageBudget``: that budget.
    """
    if isinstance(spec, ImageBudget):
        return spec
    if spec is False or (isinstance(spec, str) and spec.lower() in ("off", "none")):
        return None
    if spec is None or (isinstance(spec, str) and spec.lower() == "auto"):
        recorded = read_budget(model) if model is not None else None
        return recorded or DEFAULT_BUDGET
    if isinstance(spec, Mapping):
        return ImageBudget.from_mapping(spec)
    raise ImageBudgetError(f"image_budget must be 'auto', 'off' or {{min_pixels, max_pixels}}, got {spec!r}")


# Where a model folder keeps its image processor's settings: the flat file of the released Qwen
# checkpoints, and the combined file transformers 5 writes (image processor under "image_processor").
PREPROCESSOR_CONFIG = "preprocessor_config.json"
PROCESSOR_CONFIG = "processor_config.json"


def _image_processor_configs(model_dir: str | os.PathLike) -> list[tuple[Path, dict, dict]]:
    """(file, whole JSON, the image processor's dict inside it) for each processor file in the folder."""
    found = []
    for name in (PREPROCESSOR_CONFIG, PROCESSOR_CONFIG):
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        section = config.get("image_processor") if name == PROCESSOR_CONFIG else config
        if isinstance(section, dict):
            found.append((path, config, section))
    return found


def read_budget(model_dir: str | os.PathLike) -> ImageBudget | None:
    """The budget ``write_budget`` recorded in a model folder, or None (no folder, none recorded)."""
    for _, _, section in _image_processor_configs(model_dir):
        recorded = section.get(CONFIG_KEY)
        if isinstance(recorded, Mapping):
            return ImageBudget.from_mapping(recorded)
    return None


def write_budget(model_dir: str | os.PathLike, budget: ImageBudget = DEFAULT_BUDGET) -> list[Path]:
    """Set a model folder's image processor bounds to ``budget`` and record it; the files changed.

    In each processor file present (``preprocessor_config.json``, and ``processor_config.json``'s
    ``image_processor``) writes ``min_pixels`` / ``max_pixels`` and ``size`` (``shortest_edge`` /
    ``longest_edge``, the transformers 5 names for the same bounds), so that any loader of the
    folder (transformers, vLLM) resizes to the trained budget, plus ``CONFIG_KEY`` for this
    project's backends. Raises FileNotFoundError when the folder has no image processor config.
    """
    configs = _image_processor_configs(model_dir)
    if not configs:
        raise FileNotFoundError(f"{model_dir}: no {PREPROCESSOR_CONFIG} or {PROCESSOR_CONFIG} with an image processor")
    for path, config, section in configs:
        section["min_pixels"], section["max_pixels"] = budget.min_pixels, budget.max_pixels
        section["size"] = {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}
        section[CONFIG_KEY] = budget.as_dict()
        atomic_write_json(path, config, sort_keys=True)
    return [path for path, _, _ in configs]
