"""Sample images drawn in code, paired with the paper's example requests.

They give the demo, the tests and ``examples/`` inputs without downloading or shipping photos.
Each drawing has the things its request talks about (a coat and hair to recolour, a faded black
and white street to restore, a person and a bright strip to remove, handwriting to enhance).
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# name -> the request it illustrates (the first three are Figure 2's, the fourth the paper's running example)
SAMPLE_REQUESTS: dict[str, str] = {
    "old_photo": "Restore the color on this black and white photo and enhance the image to show more detail.",
    "balloons": (
        "Please remove the lady and her hand from the image, and also remove the bright white strip on the left. "
        "Retain the orange balloons in the background but blur them a little."
    ),
    "wall_text": "Enhance the visibility and clarity of the handwritten text for a tattoo.",
    "portrait": "Change the color of her coat and possibly hair to scarlet or copper red",
}


def _street(size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):  # sky gradient
        t = y / h
        draw.line([(0, y), (w, y)], fill=(int(110 + 90 * t), int(160 + 60 * t), int(230 - 20 * t)))
    draw.rectangle([0, int(h * 0.7), w, h], fill=(90, 90, 95))  # road
    for i in range(4):  # houses
        x0 = int(w * (0.03 + 0.24 * i))
        x1 = x0 + int(w * 0.2)
        top = int(h * (0.32 + 0.06 * (i % 2)))
        draw.rectangle([x0, top, x1, int(h * 0.7)], fill=(rng.randint(150, 220), rng.randint(110, 170), rng.randint(80, 140)))
        draw.polygon([(x0 - 4, top), ((x0 + x1) // 2, top - int(h * 0.12)), (x1 + 4, top)], fill=(120, 50, 40))
        for wx in (x0 + (x1 - x0) // 5, x0 + 3 * (x1 - x0) // 5):
            draw.rectangle([wx, top + int(h * 0.06), wx + (x1 - x0) // 5, top + int(h * 0.14)], fill=(240, 230, 170))
    draw.ellipse([int(w * 0.8), int(h * 0.05), int(w * 0.92), int(h * 0.05) + int(w * 0.12)], fill=(255, 235, 150))
    return img


def _old_photo(size, rng):
    img = _street(size, rng).convert("L").filter(ImageFilter.GaussianBlur(1.2))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(12):  # scratches and dust
        x = rng.randrange(w)
        draw.line([(x, rng.randrange(h)), (x + rng.randint(-8, 8), rng.randrange(h))], fill=rng.choice([30, 235]), width=1)
    return img.convert("RGB")


def _person(draw, cx, top, scale, coat, hair):
    head = int(18 * scale)
    draw.ellipse([cx - head, top - int(4 * scale), cx + head, top + 2 * head], fill=hair)  # hair
    draw.ellipse([cx - int(head * 0.8), top + int(4 * scale), cx + int(head * 0.8), top + int(2 * head * 0.95)], fill=(235, 200, 170))
    body_top = top + 2 * head
    draw.polygon(
        [(cx - int(22 * scale), body_top), (cx + int(22 * scale), body_top),
         (cx + int(34 * scale), body_top + int(90 * scale)), (cx - int(34 * scale), body_top + int(90 * scale))],
        fill=coat,
    )


def _portrait(size, rng):
    w, h = size
    img = Image.new("RGB", size, (205, 215, 225))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * 0.75), w, h], fill=(160, 150, 130))
    _person(draw, w // 2, int(h * 0.18), h / 200, coat=(60, 80, 120), hair=(70, 50, 35))
    return img


def _balloons(size, rng):
    w, h = size
    img = Image.new("RGB", size, (180, 190, 200))
    draw = ImageDraw.Draw(img)
    for _ in range(7):
        x, y, r = rng.randrange(w), rng.randrange(int(h * 0.6)), rng.randint(h // 14, h // 9)
        draw.ellipse([x - r, y - r, x + r, y + int(r * 1.2)], fill=(245, rng.randint(120, 160), 30))
        draw.line([(x, y + int(r * 1.2)), (x + rng.randint(-5, 5), h)], fill=(90, 90, 90))
    draw.rectangle([0, 0, int(w * 0.06), h], fill=(252, 252, 252))  # the bright strip on the left
    _person(draw, int(w * 0.62), int(h * 0.3), h / 240, coat=(30, 30, 35), hair=(40, 30, 25))
    draw.ellipse([int(w * 0.4), int(h * 0.55), int(w * 0.47), int(h * 0.63)], fill=(235, 200, 170))  # a hand
    return img


def _wall_text(size, rng):
    w, h = size
    img = Image.new("RGB", size, (170, 150, 135))
    draw = ImageDraw.Draw(img)
    brick_h = max(6, h // 12)
    for row in range(0, h, brick_h):
        offset = (row // brick_h % 2) * brick_h
        for col in range(-offset, w, brick_h * 2):
            shade = rng.randint(-15, 15)
            draw.rectangle([col + 1, row + 1, col + brick_h * 2 - 1, row + brick_h - 1], fill=(160 + shade, 95 + shade, 80 + shade))
    font = ImageFont.load_default(size=max(10, h // 7))
    draw.text((w // 2, h // 2), "carpe diem", fill=(125, 105, 100), font=font, anchor="mm")  # faint, faded writing
    return img.filter(ImageFilter.GaussianBlur(0.8))


_DRAWERS = {"old_photo": _old_photo, "balloons": _balloons, "wall_text": _wall_text, "portrait": _portrait}


def sample_image(name: str, size: tuple[int, int] = (512, 384), seed: int = 0) -> Image.Image:
    """Draw sample ``name`` (one of ``SAMPLE_REQUESTS``) at ``size``; the same arguments give the same pixels."""
    if name not in _DRAWERS:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(_DRAWERS)}")
    return _DRAWERS[name](tuple(size), random.Random(seed))
