"""Small benchmark fixtures in the real column layouts (parquet with embedded image bytes).

Each writer produces what the Hugging Face repository holds: parquet shards whose image columns
are ``Image`` features (``struct<bytes, path>`` with the ``huggingface`` schema metadata), named
``data/<split>-00000-of-00001.parquet``. Images cover the awkward cases: EXIF-rotated JPEG,
RGBA, palette with transparency, CMYK, 16-bit and 8-bit grayscale, and corrupt bytes.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CORRUPT = b"\x89PNG\r\n\x1a\n this is not an image"


def malformed_exif(orientation: int = 6) -> bytes:
    """An EXIF block (APP1 payload) with Orientation and XResolution stored as SRATIONAL(-1, 0).

    Cameras and editors write such blocks; Pillow reads them, but ``ImageOps.exif_transpose``
    raises ``struct.error`` when it re-serialises the block.
    """
    entries = 2
    data_offset = 8 + 2 + entries * 12 + 4
    ifd = struct.pack("<H", entries)
    ifd += struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", orientation, 0)  # SHORT
    ifd += struct.pack("<HHII", 0x011A, 10, 1, data_offset)  # SRATIONAL, value at data_offset
    ifd += struct.pack("<I", 0)  # no next IFD
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<ii", -1, 0)


def image_bytes(kind: str, seed: int = 0, size: tuple[int, int] = (40, 24)) -> bytes:
    """Encoded bytes of a small image of the given kind (``rgb``, ``exif``, ``bad_exif``, ``rgba``, ``p``, ``cmyk``, ``i16``, ``l``)."""
    rng = np.random.default_rng(seed)
    w, h = size
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    if kind == "rgb":
        rgb.save(buffer, "PNG")
    elif kind == "exif":  # stored sideways; orientation 6 = rotate 90° clockwise to view
        exif = Image.Exif()
        exif[0x0112] = 6
        rgb.save(buffer, "JPEG", exif=exif.tobytes())
    elif kind == "bad_exif":  # sideways like "exif", with a malformed XResolution beside the orientation
        rgb.save(buffer, "JPEG", exif=malformed_exif(6))
    elif kind == "rgba":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"))
        rgba.save(buffer, "PNG")
    elif kind == "p":
        pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        pal.info["transparency"] = 0
        pal.save(buffer, "PNG", transparency=0)
    elif kind == "cmyk":
        rgb.convert("CMYK").save(buffer, "JPEG")
    elif kind == "i16":
        arr = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        Image.fromarray(arr).save(buffer, "PNG")  # numpy uint16 -> mode I;16
    elif kind == "l":
        rgb.convert("L").save(buffer, "PNG")
    elif kind == "corrupt":
        return CORRUPT
    else:
        raise ValueError(kind)
    return buffer.getvalue()


def _img(data: bytes | None) -> dict | None:
    return None if data is None else {"bytes": data, "path": None}


def write_parquet(path: Path, rows: list[dict], features) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), path)
    return path


def write_psr(folder: Path, kinds: list[str], pairings: int = 3) -> Path:
    """PSR-328 layout: ``pairings`` rows per ``post_id`` (AI/human edit pairs), split ``test``."""
    import datasets

    features = datasets.Features(
        {
            "post_id": datasets.Value("string"),
            "instruction": datasets.Value("string"),
            "simplified_instruction": datasets.Value("string"),
            "source_image": datasets.Image(),
            "ai_edited_image": datasets.Image(),
            "human_edited_image": datasets.Image(),
            "ai_model": datasets.Value("string"),
            "creativity_index": datasets.Value("float64"),
        }
    )
    rows = []
    for i, kind in enumerate(kinds):
        for j in range(pairings):
            rows.append(
                {
                    "post_id": f"p{i:03d}",
                    "instruction": f"Please change the color of the coat number {i} to scarlet or copper red",
                    "simplified_instruction": f"Recolor coat {i} red",
                    "source_image": _img(image_bytes(kind, seed=i)),
                    "ai_edited_image": _img(image_bytes("rgb", seed=100 + i)),
                    "human_edited_image": _img(image_bytes("rgb", seed=200 + i)),
                    "ai_model": f"model-{j}",
                    "creativity_index": 0.5 + i / 100,
                }
            )
    return write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows, features)


def write_realedit(folder: Path, split_kinds: dict[str, list[str]]) -> Path:
    """RealEdit layout: ``input_image_name``, ``instruction``, ``input_image``, ``output_image``; train/test shards."""
    import datasets

    features = datasets.Features(
        {
            "input_image_name": datasets.Value("string"),
            "instruction": datasets.Value("string"),
            "input_image": datasets.Image(),
            "output_image": datasets.Image(),
            "subreddit": datasets.Value("string"),
        }
    )
    for split, kinds in split_kinds.items():
        rows = [
            {
                "input_image_name": f"{split}_{i:04d}.jpg",
                "instruction": f"remove the person on the left in photo {i}",
                "input_image": _img(image_bytes(kind, seed=20_000 + 1000 * (split == "test") + i)),
                "output_image": _img(image_bytes("rgb", seed=5000 + i)),
                "subreddit": "PhotoshopRequest",
            }
            for i, kind in enumerate(kinds)
        ]
        write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows, features)
    return folder


def write_ultraedit(folder: Path, kinds: list[str], split: str = "FreeForm_0", shards: int = 2) -> Path:
    """UltraEdit layout: ``source_image``, ``edited_image``, ``edit_prompt``, captions, optional ``mask_image``."""
    import datasets

    features = datasets.Features(
        {
            "clip_sim_source": datasets.Value("float64"),
            "edit_prompt": datasets.Value("string"),
            "edited_image": datasets.Image(),
            "mask_image": datasets.Image(),
            "source_caption": datasets.Value("string"),
            "source_image": datasets.Image(),
            "target_caption": datasets.Value("string"),
        }
    )
    rows = [
        {
            "clip_sim_source": 0.3,
            "edit_prompt": f"What if the horse {i} wears a hat?",
            "edited_image": _img(image_bytes("rgb", seed=7000 + i)),
            "mask_image": None,
            "source_caption": f"a horse {i} in a field",
            "source_image": _img(image_bytes(kind, seed=3000 + i)),
            "target_caption": f"a horse {i} wearing a hat in a field",
        }
        for i, kind in enumerate(kinds)
    ]
    per = -(-len(rows) // shards)
    for shard in range(shards):
        name = f"{split}-{shard:05d}-of-{shards:05d}.parquet"
        write_parquet(folder / "data" / name, rows[shard * per : (shard + 1) * per], features)
    return folder


def write_manifest(folder: Path, kinds: list[str]) -> Path:
    """A JSONL manifest with image files beside it (relative paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, kind in enumerate(kinds):
        suffix = {"exif": "jpg", "bad_exif": "jpg", "cmyk": "jpg"}.get(kind, "png")
        name = f"img_{i}.{suffix}"
        (folder / name).write_bytes(image_bytes(kind, seed=9000 + i))
        lines.append(json.dumps({"id": f"req-{i}", "image": name, "request": f"make sky {i} a sunset", "tag": "t"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
