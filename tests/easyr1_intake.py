"""This project's model of EasyR1's data intake (EasyR1 cannot be installed beside upstream verl).

From EasyR1's ``verl/utils/dataset.py`` behaviour: the image of a row is a path (joined with
``data.image_dir``), a ``{"bytes": ...}`` dict, raw bytes or a PIL image; ``process_image`` scales it
down (``int`` truncation of ``sqrt(max_pixels / area)`` times each side) when it has more than
``data.max_pixels`` pixels and up when it has fewer than ``data.min_pixels``, then converts to RGB;
``data.format_prompt`` is rendered with ``content=problem``, each ``<image>`` becomes an image slot,
and with ``filter_overlong_prompts`` a row whose processed prompt is longer than
``data.max_prompt_length`` tokens is dropped.
"""

from __future__ import annotations

import io
import math
import os

import jinja2

from imageedit_r1.prompts import template_path


def process_image(image, *, min_pixels: int, max_pixels: int, image_dir: str | None = None):
    from PIL import Image

    if isinstance(image, str):
        image = Image.open(os.path.join(image_dir, image) if image_dir else image)
    elif isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"]))
    elif isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    image.load()
    if image.width * image.height > max_pixels:
        factor = math.sqrt(max_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    if image.width * image.height < min_pixels:
        factor = math.sqrt(min_pixels / (image.width * image.height))
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    return image.convert("RGB") if image.mode != "RGB" else image


def chat_content(problem: str) -> list[dict]:
    """``data.format_prompt`` (decompose.jinja) around ``problem``, split at ``<image>`` into chat parts."""
    template = jinja2.Template(template_path("decompose").read_text(encoding="utf-8").strip())
    content = []
    for i, piece in enumerate(template.render(content=problem).split("<image>")):
        if i:
            content.append({"type": "image"})
        if piece:
            content.append({"type": "text", "text": piece})
    return content


def row_inputs(processor, example: dict, *, min_pixels: int, max_pixels: int, image_dir: str | None = None):
    """The processor inputs EasyR1 builds for one row (its length is what the overlong filter compares)."""
    content = chat_content(example["problem"])
    images = [process_image(im, min_pixels=min_pixels, max_pixels=max_pixels, image_dir=image_dir)
              for im in example["images"]]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                           tokenize=False)
    return processor(images, [prompt], add_special_tokens=False, return_tensors="pt"), content
