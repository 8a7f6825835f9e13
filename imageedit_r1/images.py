"""Image intake shared by every part of the project.

One function turns whatever a user or a dataset hands us (a path, bytes, a ``{"bytes": ...}``
dict, a PIL image) into an RGB ``PIL.Image`` with its EXIF orientation applied. Exotic modes
(RGBA, LA, P, CMYK, I;16, I, F, 1, L) become RGB; transparency is composited onto white.
A pixel limit guards against decompression bombs. Every failure is an ``ImageLoadError``.

Datasets hold corrupt images; ``load_or_skip`` turns one into a counted, reported skip (id and
reason in a ``SkipReport``) so a pass over thousands of rows never dies halfway.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# 64 megapixels: larger than any benchmark image, small enough to stop a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageLoadError(ValueError):
    """An image could not be read or converted; the message says which and why."""


def _open(source: Any) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return Image.open(io.BytesIO(source["bytes"]))
        if source.get("path"):
            return Image.open(source["path"])
        raise ImageLoadError(f"image dict has neither 'bytes' nor 'path' (keys: {sorted(source)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, (str, os.PathLike)):
        return Image.open(Path(source))
    raise ImageLoadError(f"cannot read an image from {type(source).__name__}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (alpha composited onto white, 16-bit scaled to 8-bit)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale high-bit-depth grayscale into 0..255 instead of clipping it to white.
        import numpy as np  # local: numpy only for the rare 16-bit/float case

        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype("uint8"), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``source`` into a fully decoded RGB image, upright per its EXIF orientation."""
    try:
        image = _open(source)
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageLoadError(
                f"image is {image.width}x{image.height} = {image.width * image.height:,} pixels, "
                f"over the limit of {max_pixels:,} (raise max_pixels if this is intended)"
            )
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return to_rgb(image)
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"image file not found: {exc.filename}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"unreadable image: {exc}") from exc


def shrink_to_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """``image`` scaled down (aspect kept, Lanczos) to at most ``max_pixels``; smaller ones unchanged."""
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_sha256(image: Image.Image) -> str:
    """Content hash of the decoded pixels (mode, size and bytes), independent of file format."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass
class SkipReport:
    """Which items were skipped for an unreadable image, and why; ``loaded`` counts the others."""

    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    @property
    def skipped_ids(self) -> list[str]:
        return [item_id for item_id, _ in self.skipped]

    def merge(self, other: SkipReport) -> None:
        self.loaded += other.loaded
        self.skipped.extend(other.skipped)

    def summary(self, limit: int = 20) -> str:
        if not self.skipped:
            return f"{self.loaded} images loaded, none skipped"
        lines = [f"{self.loaded} images loaded, {self.skipped_count} skipped:"]
        lines += [f"  {item_id}: {reason}" for item_id, reason in self.skipped[:limit]]
        if self.skipped_count > limit:
            lines.append(f"  ... and {self.skipped_count - limit} more")
        return "\n".join(lines)


def load_or_skip(
    item_id: str, source: Any, report: SkipReport, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image | None:
    """``load_image``, except that a bad image is recorded in ``report`` and gives None."""
    try:
        image = load_image(source, max_pixels=max_pixels)
    except ImageLoadError as exc:
        report.skipped.append((item_id, str(exc)))
        logger.warning("skipping %s: %s", item_id, exc)
        return None
    report.loaded += 1
    return image
