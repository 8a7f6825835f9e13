"""Uploaded files, read within bounds: file size, pixel count (decompression bombs), formats.

Every check runs on the file's header before any pixel is decoded, so a small file that would
decode into gigabytes is refused without allocating them. Paths are accepted only inside the
folders the web framework stores uploads in (``allowed_roots``), so a request cannot make the
server open a file it chose. Every refusal is an ``UploadRefused`` whose message is safe to show
in the page (it names no server path).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Formats a photo editor is expected to take; anything else (SVG, PDF, EPS, ...) is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF")
ACCEPTED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class UploadRefused(ValueError):
    """An upload is refused; the message says why and how to fix it, without server paths."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 25 * 1024 * 1024  # 25 MiB: a 50 MP JPEG fits
    max_pixels: int = 40_000_000  # 40 MP: larger than phone photos, far below a bomb
    formats: tuple[str, ...] = ACCEPTED_FORMATS


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def read_upload(value, limits: UploadLimits, allowed_roots: list[str | os.PathLike]):
    """Open an uploaded image file: bounded, format-checked, upright RGB.

    ``value`` is the path the framework stored the upload at. Raises ``UploadRefused`` for no
    image, a path outside ``allowed_roots``, a file over ``max_bytes``, a format outside
    ``formats``, more than ``max_pixels`` pixels, or a file Pillow cannot read.
    """
    from imageedit_r1.images import ImageLoadError, load_image

    if value is None or value == "":
        raise UploadRefused("no image: upload one (or pick a sample) first")
    if not isinstance(value, (str, os.PathLike)):
        raise UploadRefused(f"the image must be an uploaded file, got {type(value).__name__}")
    path = Path(value)
    roots = [Path(root).resolve() for root in allowed_roots]
    if not _inside(path, roots) or not path.is_file():
        raise UploadRefused("the image must be a file uploaded to this app; server paths are not accepted")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise UploadRefused(f"the file is {size / 2**20:.1f} MiB; this app accepts at most "
                            f"{limits.max_bytes / 2**20:.0f} MiB (resize or compress it)")
    try:
        with Image.open(path) as header:  # reads the header only
            fmt, (width, height) = header.format, header.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for sizes far past any limit here
        declared = re.search(r"\(\d+ pixels\)", str(exc))
        raise UploadRefused(f"the image declares more pixels than Pillow will open {declared.group(0) if declared else ''}; "
                            f"this app accepts at most {limits.max_pixels / 1e6:.0f} megapixels "
                            "(a decompression bomb, or a scan to downscale first)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadRefused("the file is not a readable image (corrupt, truncated, or not an image); "
                            f"accepted formats: {', '.join(limits.formats)}") from exc
    if fmt not in limits.formats:
        raise UploadRefused(f"{fmt or 'this'} images are not accepted; use one of: {', '.join(limits.formats)}")
    if width * height > limits.max_pixels:
        raise UploadRefused(f"the image is {width}x{height} = {width * height / 1e6:.1f} megapixels; this app "
                            f"accepts at most {limits.max_pixels / 1e6:.0f} megapixels (downscale it)")
    try:
        return load_image(path, max_pixels=limits.max_pixels)
    except ImageLoadError as exc:
        raise UploadRefused("the image could not be decoded (corrupt or truncated file)") from exc
