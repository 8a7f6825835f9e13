"""Image intake shared by every part of the project.

One function turns whatever a user or a dataset hands us (a path, bytes, a ``{"bytes": ...}``
dict, a PIL image) into an RGB ``PIL.Image`` with its EXIF orientation applied. Exotic modes
(RGBA, LA, P, CMYK, I;16, I, F, 1, L) become RGB; transparency is composited onto white;
high-bit-depth images are scaled by their bit depth (65535 in 16 bits is white), never stretched
per image. Metadata is never a reason to lose an image: malformed EXIF that Pillow cannot
re-serialise still gets its orientation applied, or else the pixels are kept as stored.
A pixel limit guards against decompression bombs. Every failure is an ``ImageLoadError``.

Datasets hold corrupt images; ``load_or_skip`` turns one into a counted, reported skip (id and
reason in a ``SkipReport``) so a pass over thousands of rows never dies halfway.

Writing follows one rule too: the format comes from the file's extension as Pillow maps it
(``output_format``; any format Pillow can write), and ``for_format`` puts the image in a mode that
format holds. Transparency is kept where the image has it and the format keeps it, and is
composited onto white everywhere else; it never turns black. An image has alpha only when the user
asked for transparency (editors composite their answers onto white otherwise).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

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


_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose does).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned upright per its EXIF orientation; a metadata fault never loses the pixels.

    Only the orientation tag is read and applied (``ImageOps.exif_transpose`` also re-serialises
    the EXIF block, which raises on malformed tags, and copies an image that needs no turn). An
    upright image comes back as it is; if the tag cannot be read, the image is returned as stored.
    """
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - unreadable EXIF: keep the stored orientation
        return image
    method = _ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def bit_depth(image: Image.Image) -> int | None:
    """Bits per sample of a high-depth integer image (16 or 32), None for the 8-bit and float modes.

    ``I;16*`` modes are 16 bits. Mode ``I`` (32-bit storage) holds 16-bit PNG/PPM/PGM data as
    often as true 32-bit TIFF data: a TIFF's BitsPerSample decides, otherwise 16 when every
    value fits in 16 bits.
    """
    if image.mode.startswith("I;16"):
        return 16
    if image.mode != "I":
        return None
    declared = getattr(image, "tag_v2", {}).get(258) if hasattr(image, "tag_v2") else None
    if isinstance(declared, tuple) and declared:
        declared = declared[0]
    if isinstance(declared, int) and declared in (8, 16, 32):
        return declared
    lo, hi = image.getextrema()
    return 16 if lo >= 0 and hi <= 0xFFFF else 32


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_alpha(image: Image.Image) -> bool:
    """True when some pixels may be transparent: an alpha band, or a transparent colour (PNG ``tRNS``)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (transparency composited onto white, high bit depth scaled by depth).

    Transparency is an alpha band or a transparent colour (a palette entry, or PNG's ``tRNS`` key
    of an RGB, grey or 16-bit image): either way transparent pixels become white.
    Integer modes map ``[0, 2**bits - 1]`` onto ``[0, 255]`` (16 bits: divide by 257; 32-bit
    mode ``I`` is signed, so ``[0, 2**31 - 1]``); float
    mode ``F`` is taken as nominal ``[0, 1]``, as image tools store it. Out-of-range values clip.
    Memory stays a few bytes per pixel whatever the mode: high-depth samples are scaled a tile
    at a time, and transparency is pasted onto white rather than blended through RGBA copies.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_gray(image).convert("RGB")
    if image.mode in ("RGBa", "La"):  # premultiplied alpha: undone before pasting by alpha
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    if "transparency" in image.info and image.mode not in _ALPHA_MODES:
        image = image.convert("RGBA")  # the transparent colour becomes alpha 0
    if image.mode in _ALPHA_MODES:
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image.convert("RGB"), mask=image.getchannel("A"))
        return white
    return image.convert("RGB")


_TILE_PIXELS = 1 << 20  # high-depth samples are scaled this many at a time


def _tiles(width: int, height: int, pixels: int = _TILE_PIXELS):
    """Boxes covering a ``width x height`` image, each about ``pixels`` in area (any aspect)."""
    rows = max(1, pixels // width)
    columns = width if rows > 1 else min(width, pixels)
    for top in range(0, height, rows):
        for left in range(0, width, columns):
            yield left, top, min(width, left + columns), min(height, top + rows)


def _high_depth_to_gray(image: Image.Image) -> Image.Image:
    import numpy as np  # local: numpy only for the rare high-bit-depth case

    if image.mode == "F":
        scale = 255.0
    else:
        bits = bit_depth(image) or 16
        # Mode I is signed 32-bit: its 32-bit data tops out at 2**31 - 1.
        scale = 255.0 / (2**31 - 1 if bits == 32 else 2**bits - 1)
    key = image.info.get("transparency")
    gray = Image.new("L", image.size)
    for box in _tiles(*image.size):
        samples = np.asarray(image.crop(box), dtype=np.float64)
        scaled = np.nan_to_num(samples * scale, nan=0.0, posinf=255.0, neginf=0.0)
        tile = np.clip(np.rint(scaled), 0, 255).astype("uint8")
        if isinstance(key, int):  # a transparent grey level: those pixels become white
            tile[samples == key] = 255
        gray.paste(Image.fromarray(tile), box[:2])
    return gray


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
        return to_rgb(upright(image))
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"image file not found: {exc.filename}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"unreadable image: {exc}") from exc


_RESAMPLE_TILE = 1 << 17  # output pixels resampled per Pillow call
_REDUCING_GAP = 3.0  # box-reduce first when shrinking more than twice this (Pillow: indistinguishable from fair resampling)


def resize(image: Image.Image, size: tuple[int, int], resample: int = Image.Resampling.LANCZOS) -> Image.Image:
    """``image`` at ``size``, in memory bounded by the input and the output whatever their aspects.

    Pillow's ``resize`` precomputes filter weights for a whole output axis (8 bytes a tap: a
    39,000,000-pixel line upscaled with Lanczos asks for 2 GB) and passes through an image as
    wide as the output and as tall as the input. Here a large shrink is box-reduced first, and
    the output is resampled a tile at a time, each tile from the input region it covers (the
    same sample positions as one call, so the tiles meet without seams).
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"invalid target size {width}x{height}")
    if image.size == (width, height):
        return image
    factors = (max(1, int(image.width / width / _REDUCING_GAP)), max(1, int(image.height / height / _REDUCING_GAP)))
    if factors != (1, 1):
        image = image.reduce(factors)
    tile_w = min(width, _RESAMPLE_TILE)
    tile_h = max(1, min(height, _RESAMPLE_TILE // tile_w))
    if (tile_w, tile_h) == (width, height):
        return image.resize((width, height), resample)
    scale_x, scale_y = image.width / width, image.height / height
    out = Image.new(image.mode, (width, height))
    for top in range(0, height, tile_h):
        bottom = min(height, top + tile_h)
        for left in range(0, width, tile_w):
            right = min(width, left + tile_w)
            box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
            out.paste(image.resize((right - left, bottom - top), resample, box=box), (left, top))
    return out


def fit_to_budget(image: Image.Image, budget: Any) -> Image.Image:
    """``image`` (RGB) at exactly the size Qwen's processor keeps under ``budget`` (an
    ``image_budget.ImageBudget``, not imported: that module writes through the store, whose image
    writer uses this one); None: unchanged.

    An aspect ratio the processor refuses is padded (black bars, content centred) as
    ``budget.fit`` lays out. The content is shrunk straight to its place in the final size and
    padded there, never padded at its own scale first: a 39,000,000 x 1 banner would pad to
    terabytes. Memory is bounded by the input and the final size. Every stage that hands an
    image to the decomposition agent (the exporter, the inference backends) calls this, so they
    agree to the pixel. See ``imageedit_r1.image_budget``.
    """
    if budget is None:
        return image
    image = to_rgb(image)
    fit = budget.fit(image.width, image.height)
    if not fit.padded:
        return resize(image, fit.size, Image.Resampling.BICUBIC)
    (width, height), (canvas_w, canvas_h) = fit.size, fit.canvas
    inner = (min(width, max(1, round(image.width * width / canvas_w))),
             min(height, max(1, round(image.height * height / canvas_h))))
    canvas = Image.new("RGB", fit.size, (0, 0, 0))
    canvas.paste(resize(image, inner, Image.Resampling.BICUBIC), ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas


def shrink_to_pixels(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """``image`` scaled down (aspect kept, Lanczos) to at most ``max_pixels``; smaller ones unchanged."""
    if max_pixels is None or image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return resize(image, size, Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- writing

# Formats whose default quality is too lossy for an edit someone asked for.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "MPO": {"quality": 95}}


class ImageFormatError(ValueError):
    """An image cannot be written in the format asked for; the message says which formats can."""


@functools.cache
def writable_modes(fmt: str) -> tuple[str, ...]:
    """The modes Pillow writes as ``fmt`` here, among RGBA, RGB, P, L and 1 (asked of Pillow itself:
    plugins, optional codecs and stub handlers differ between installations)."""
    modes = []
    for mode in ("RGBA", "RGB", "P", "L", "1"):
        try:
            Image.new(mode, (2, 2)).save(io.BytesIO(), format=fmt)
        except Exception:  # noqa: BLE001 - each plugin refuses a mode its own way
            continue
        modes.append(mode)
    return tuple(modes)


@functools.cache
def keeps_alpha(fmt: str) -> bool:
    """True when a transparent pixel written as ``fmt`` reads back transparent (PNG, WebP, TIFF, GIF,
    ...). Some formats take RGBA and drop its alpha (BMP, PPM): there transparency would turn black."""
    if "RGBA" not in writable_modes(fmt):
        return False
    probe = Image.new("RGBA", (2, 2), (200, 30, 40, 255))
    probe.putpixel((0, 0), (0, 0, 0, 0))
    buffer = io.BytesIO()
    try:
        probe.save(buffer, format=fmt)
        buffer.seek(0)
        with Image.open(buffer) as back:
            return back.convert("RGBA").getpixel((0, 0))[3] < 128
    except Exception:  # noqa: BLE001 - a format Pillow writes but cannot read back: assume no alpha
        return False


def writable_extensions() -> list[str]:
    """Every file extension Pillow can write here (``.png``, ``.jpg``, ``.tif``, ``.webp``, ...)."""
    return sorted(ext for ext, fmt in Image.registered_extensions().items()
                  if fmt in Image.SAVE and writable_modes(fmt))


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format for ``path``'s extension (PNG when it has none).

    Raises ``ImageFormatError`` naming the extension and the common ones Pillow writes, when Pillow
    cannot write it (an unknown extension, a format Pillow only reads, a handler not installed).
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE or not writable_modes(fmt):
        common = [ext for ext in (".png", ".jpg", ".webp", ".tif", ".bmp", ".gif") if ext in writable_extensions()]
        why = "is not an image extension Pillow knows" if fmt is None else f"is {fmt}, which Pillow cannot write here"
        raise ImageFormatError(f"cannot write {Path(path).name}: {suffix} {why}; use one of {', '.join(common)} "
                               "(or any extension in PIL.Image.registered_extensions() that Pillow can save)")
    return fmt


def for_format(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` in a mode format ``fmt`` holds: its transparency kept where the format keeps alpha,
    else composited onto white (``to_rgb``); colour reduced only where the format holds none (a
    palette for Palm and BLP, 1-bit for XBM and MSP)."""
    modes = writable_modes(fmt)
    if has_alpha(image) and keeps_alpha(fmt):
        return image if image.mode == "RGBA" else image.convert("RGBA")
    rgb = to_rgb(image)
    if "RGB" in modes or not modes:
        return rgb
    if "P" in modes:
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert("L" if "L" in modes else "1")


def save_options(fmt: str) -> dict[str, Any]:
    """Keyword options for ``Image.save`` in ``fmt`` (high quality for the lossy formats)."""
    return dict(_SAVE_OPTIONS.get(fmt.upper(), {}))


def to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_sha256(image: Image.Image) -> str:
    """Content hash of the decoded pixels (mode, size and bytes), independent of file format.

    The bytes are hashed a band of rows at a time (a long row in pieces), in row order: the hash
    of ``tobytes()`` without holding a copy of the whole image."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    for box in _row_major_tiles(*image.size):
        digest.update(image.crop(box).tobytes())
    return digest.hexdigest()


def _row_major_tiles(width: int, height: int, pixels: int = _TILE_PIXELS):
    """Boxes whose bytes, one after another, are the image's bytes in row order."""
    rows = max(1, pixels // width)
    if rows > 1 or width <= pixels:
        yield from ((0, top, width, min(height, top + rows)) for top in range(0, height, rows))
        return
    for top in range(height):  # rows longer than a tile: each in pieces, left to right
        yield from ((left, top, min(width, left + pixels), top + 1) for left in range(0, width, pixels))


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
