"""The editing agent's contract, its errors, and the size bookkeeping every editor shares.

An editor takes an RGB image and one instruction and returns an edited image of exactly the
input's size. The answer is RGB, its transparency composited onto white (``images.to_rgb``),
unless the editor was asked for transparency (``keeps_transparency``): then an answer with alpha
keeps it, and the writer keeps it where the output format can (``images.for_format``). Models work at other sizes (multiples of 16, an area budget, a fixed set of aspect
ratios), so each editor maps the input onto a size its model accepts and maps the result back.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol, runtime_checkable

from PIL import Image

from imageedit_r1.images import has_alpha, resize, to_rgb
from imageedit_r1.refusals import DECLINED, Refusal
from imageedit_r1.unavailable import Unavailable


class EditorError(RuntimeError):
    """An edit failed for a reason another attempt will not fix."""


class EditRefusedError(EditorError, Refusal):
    """The model or service refused the edit (a safety block, a content policy); ``reason`` is the
    provider's code for it (``IMAGE_SAFETY``, ``moderation_blocked``, ...)."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or DECLINED


class EditorUnavailableError(EditorError, Unavailable):
    """The editor cannot run here: weights, an API key or a package is missing; the message says which."""


@runtime_checkable
class Editor(Protocol):
    name: str
    model_id: str

    def edit(self, image: Image.Image, instruction: str, *, seed: int | None = None) -> Image.Image: ...


class BaseEditor:
    """Shared behaviour: input normalisation and the multi-turn loop."""

    name: str = ""
    model_id: str = ""
    # True when ``edit_batch`` makes its candidates in one model call (diffusers pipelines).
    can_batch: ClassVar[bool] = False
    # True when the user asked this editor for a transparent answer (OpenAI ``background: transparent``).
    keeps_transparency: bool = False

    def edit(self, image: Image.Image, instruction: str, *, seed: int | None = None) -> Image.Image:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("the edit instruction is empty")
        source = to_rgb(image)
        edited = self._edit(source, instruction.strip(), seed=seed)
        return restore_size(self._finish(edited), source.size)

    def _finish(self, edited: Image.Image) -> Image.Image:
        """The answer as the editor hands it on: RGBA when transparency was asked for and the
        answer has it, else RGB with any transparency composited onto white (never black)."""
        if self.keeps_transparency and has_alpha(edited):
            return edited if edited.mode == "RGBA" else edited.convert("RGBA")
        return to_rgb(edited)

    def edit_batch(self, image: Image.Image, instruction: str, *, seeds: list[int]) -> list[Image.Image]:
        """One edit of ``image`` per seed, each the input's size, in seed order. Editors with
        ``can_batch`` make them in one model call; the others call the model once per seed."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("the edit instruction is empty")
        if not seeds:
            raise ValueError("edit_batch needs at least one seed")
        source = to_rgb(image)
        edited = self._edit_batch(source, instruction.strip(), seeds=[int(seed) for seed in seeds])
        if len(edited) != len(seeds):
            raise RuntimeError(f"{self.name}: {len(edited)} images for {len(seeds)} seeds")
        return [restore_size(self._finish(item), source.size) for item in edited]

    def _edit_batch(self, image: Image.Image, instruction: str, *, seeds: list[int]) -> list[Image.Image]:
        return [self._edit(image, instruction, seed=seed) for seed in seeds]

    def edit_steps(
        self, image: Image.Image, instructions: list[str], *, seed: int | None = None
    ) -> list[Image.Image]:
        """Apply instructions one after another, each on the previous output (multi-turn editing).

        Step ``i`` uses seed ``seed + i`` so a run is reproducible without every step sharing noise.
        """
        outputs = []
        current = image
        for step, instruction in enumerate(instructions):
            current = self.edit(current, instruction, seed=None if seed is None else seed + step)
            outputs.append(current)
        return outputs

    def _edit(self, image: Image.Image, instruction: str, *, seed: int | None) -> Image.Image:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "model_id": self.model_id}


# ----------------------------------------------------------------------------- sizes


def working_size(
    width: int, height: int, *, max_area: int, min_area: int = 0, multiple: int = 16
) -> tuple[int, int]:
    """The size a model should edit at: the input's aspect, scaled into [min_area, max_area],
    both sides snapped down to ``multiple`` (never below one multiple).

    The area never passes ``max_area``: a side raised to one multiple (a 39,000,000 x 1 banner)
    shortens the other side instead, so the aspect is clamped, never the model's budget."""
    if width < 1 or height < 1:
        raise ValueError(f"invalid image size {width}x{height}")
    area = width * height
    scale = 1.0
    if max_area and area > max_area:
        scale = math.sqrt(max_area / area)
    elif min_area and area < min_area:
        scale = math.sqrt(min_area / area)
    snapped_w = max(multiple, int(width * scale) // multiple * multiple)
    snapped_h = max(multiple, int(height * scale) // multiple * multiple)
    if max_area and snapped_w * snapped_h > max_area:
        if snapped_w >= snapped_h:
            snapped_w = max(multiple, max_area // snapped_h // multiple * multiple)
        else:
            snapped_h = max(multiple, max_area // snapped_w // multiple * multiple)
    return snapped_w, snapped_h


def restore_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Return ``image`` at exactly ``size``; a differing aspect is centre-cropped first, never stretched."""
    if image.size == tuple(size):
        return image
    target_w, target_h = size
    src_w, src_h = image.size
    target_aspect, src_aspect = target_w / target_h, src_w / src_h
    if abs(src_aspect / target_aspect - 1.0) > 0.01:
        if src_aspect > target_aspect:
            crop_w = max(1, round(src_h * target_aspect))
            left = (src_w - crop_w) // 2
            image = image.crop((left, 0, left + crop_w, src_h))
        else:
            crop_h = max(1, round(src_w / target_aspect))
            top = (src_h - crop_h) // 2
            image = image.crop((0, top, src_w, top + crop_h))
    return resize(image, (target_w, target_h), Image.Resampling.LANCZOS)


def fit_to_size(
    image: Image.Image, size: tuple[int, int], fill: tuple[int, int, int] = (255, 255, 255), *, stretch: float = 0.01
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """``image`` scaled to fit inside ``size`` and padded to exactly ``size`` (centred); the original's
    box as fractions (for ``unletterbox``).

    Where the aspects differ by at most ``stretch`` (relative), the image is resized to ``size``
    instead of padded: a sliver of padding is worse than an invisible stretch. Memory is bounded
    by ``size``, never by the input (a 20:1 panorama is scaled down before it is padded).
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"invalid target size {width}x{height}")
    if abs(math.log((image.width / image.height) / (width / height))) <= stretch:
        return resize(image, (width, height), Image.Resampling.LANCZOS), (0.0, 0.0, 1.0, 1.0)
    scale = min(width / image.width, height / image.height)
    inner = (min(width, max(1, round(image.width * scale))), min(height, max(1, round(image.height * scale))))
    canvas = Image.new("RGB", (width, height), fill)
    left, top = (width - inner[0]) // 2, (height - inner[1]) // 2
    canvas.paste(resize(image, inner, Image.Resampling.LANCZOS), (left, top))
    return canvas, (left / width, top / height, (left + inner[0]) / width, (top + inner[1]) / height)


def aspect_size(aspect: float, area: int) -> tuple[int, int]:
    """(width, height) of about ``area`` pixels at ``aspect`` (width / height), at least 1x1."""
    height = math.sqrt(area / aspect)
    return max(1, round(height * aspect)), max(1, round(height))


def unletterbox(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Cut the region ``fit_to_size`` recorded out of a model's output (whatever size it came back at);
    at least one pixel each way, however thin the region."""
    if box == (0.0, 0.0, 1.0, 1.0):
        return image
    width, height = image.size
    left, top, right, bottom = (round(box[0] * width), round(box[1] * height),
                                round(box[2] * width), round(box[3] * height))
    left, top = min(left, width - 1), min(top, height - 1)
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def nearest_aspect(width: int, height: int, ratios: list[str]) -> str:
    """The ratio string ("4:3") closest to width:height on a log scale."""
    aspect = math.log(width / height)

    def distance(ratio: str) -> float:
        num, den = (float(part) for part in ratio.split(":"))
        return abs(math.log(num / den) - aspect)

    return min(ratios, key=distance)


def ratio_value(ratio: str) -> float:
    num, den = (float(part) for part in ratio.split(":"))
    return num / den
