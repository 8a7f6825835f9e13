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
from collections.abc import Iterable
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


def write_parquet(path: Path, rows: list[dict], features, row_group_size: int | None = None) -> Path:
    """``rows`` as one parquet file with the ``datasets`` schema metadata (``row_group_size`` rows a group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), path, row_group_size=row_group_size)
    return path


# Reddit user names of the PSR fixture: they must never appear in anything the project writes.
PSR_POST_OWNER = "u_fixture_post_owner_{}"
PSR_COMMENT_OWNER = "u_fixture_comment_owner_{}_{}"


def write_psr(
    folder: Path,
    kinds: list[str],
    pairings: int = 3,
    multi_image: Iterable[int] = (),
    image_size: tuple[int, int] = (40, 24),
    row_group_size: int | None = None,
) -> Path:
    """PSR-328 layout, per its card: ``pairings`` rows per ``post_id`` (one per AI model x human edit).

    Columns in the card's order and types: ``post_id``, ``instruction``, ``simplified_instruction``,
    ``model``, ``comment_id``, ``post_owner``, ``comment_owner``, ``creativity_index`` (a string),
    ``source_image``, ``ai_edited_image``, ``human_edited_image``; split ``test``. Posts numbered in
    ``multi_image`` show a second source image from their second row on (a multi-image post).
    """
    import datasets

    features = datasets.Features(
        {
            "post_id": datasets.Value("string"),
            "instruction": datasets.Value("string"),
            "simplified_instruction": datasets.Value("string"),
            "model": datasets.Value("string"),
            "comment_id": datasets.Value("string"),
            "post_owner": datasets.Value("string"),
            "comment_owner": datasets.Value("string"),
            "creativity_index": datasets.Value("string"),
            "source_image": datasets.Image(),
            "ai_edited_image": datasets.Image(),
            "human_edited_image": datasets.Image(),
        }
    )
    multi_image = set(multi_image)
    rows = []
    for i, kind in enumerate(kinds):
        for j in range(pairings):
            source_seed = i + 500 if (i in multi_image and j > 0) else i
            rows.append(
                {
                    "post_id": f"p{i:03d}",
                    "instruction": f"Please change the color of the coat number {i} to scarlet or copper red",
                    "simplified_instruction": f"Recolor coat {i} red",
                    "model": ["gpt-image-1", "flux-kontext", "gemini"][j % 3],
                    "comment_id": f"c{i:03d}{j}",
                    "post_owner": PSR_POST_OWNER.format(i),
                    "comment_owner": PSR_COMMENT_OWNER.format(i, j),
                    "creativity_index": f"{0.5 + i / 100:.2f}",
                    "source_image": _img(image_bytes(kind, seed=source_seed, size=image_size)),
                    "ai_edited_image": _img(image_bytes("rgb", seed=100 + 10 * i + j, size=image_size)),
                    "human_edited_image": _img(image_bytes("rgb", seed=200 + 10 * i + j, size=image_size)),
                }
            )
    return write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows, features, row_group_size)


def write_realedit(folder: Path, split_kinds: dict[str, list[str]], repeats: dict[str, int] | None = None) -> Path:
    """RealEdit layout as the authors' format has it: ``input_image_name``, ``instruction``,
    ``input_image``, ``output_image``; train/test shards. ``repeats[split] = n`` writes each request
    ``n`` times with a different output (a split with one row per output, not per request)."""
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
    repeats = repeats or {}
    for split, kinds in split_kinds.items():
        rows = [
            {
                "input_image_name": f"{split}_{i:04d}.jpg",
                "instruction": f"remove the person on the left in photo {i}",
                "input_image": _img(image_bytes(kind, seed=20_000 + 1000 * (split == "test") + i)),
                "output_image": _img(image_bytes("rgb", seed=5000 + 10 * i + k)),
                "subreddit": "PhotoshopRequest",
            }
            for i, kind in enumerate(kinds)
            for k in range(repeats.get(split, 1))
        ]
        write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows, features)
    return folder


def ultraedit_idx(row: int) -> int:
    """The fixture's ``idx`` of a row: not the row index, as in the real splits."""
    return 100_000 + 7 * row


def write_ultraedit(
    folder: Path,
    kinds: list[str],
    split: str = "FreeForm_0",
    shards: int = 2,
    idx: list[int] | None = None,
    image_size: tuple[int, int] = (40, 24),
    row_group_size: int | None = None,
) -> Path:
    """UltraEdit layout, per the card: ``idx`` (int64), ``source_image``, ``edited_image``,
    ``edit_prompt``, captions, similarity scores, and the null-typed ``edit_object`` and
    ``mask_image`` of the free-form splits. ``idx`` defaults to ``ultraedit_idx(row)``."""
    import datasets

    features = datasets.Features(
        {
            "clip_sim_dir": datasets.Value("float64"),
            "clip_sim_image": datasets.Value("float64"),
            "clip_sim_source": datasets.Value("float64"),
            "clip_sim_target": datasets.Value("float64"),
            "dinov2_sim": datasets.Value("float64"),
            "edit_object": datasets.Value("null"),
            "edit_prompt": datasets.Value("string"),
            "edited_image": datasets.Image(),
            "idx": datasets.Value("int64"),
            "mask_image": datasets.Value("null"),
            "source_caption": datasets.Value("string"),
            "source_image": datasets.Image(),
            "ssim": datasets.Value("float64"),
            "target_caption": datasets.Value("string"),
        }
    )
    idx = idx if idx is not None else [ultraedit_idx(i) for i in range(len(kinds))]
    rows = [
        {
            "clip_sim_dir": 0.21,
            "clip_sim_image": 0.83,
            "clip_sim_source": 0.3,
            "clip_sim_target": 0.31,
            "dinov2_sim": 0.7,
            "edit_object": None,
            "edit_prompt": f"What if the horse {i} wears a hat?",
            "edited_image": _img(image_bytes("rgb", seed=7000 + i, size=image_size)),
            "idx": idx[i],
            "mask_image": None,
            "source_caption": f"a horse {i} in a field",
            "source_image": _img(image_bytes(kind, seed=3000 + i, size=image_size)),
            "ssim": 0.6,
            "target_caption": f"a horse {i} wearing a hat in a field",
        }
        for i, kind in enumerate(kinds)
    ]
    per = -(-len(rows) // shards)
    for shard in range(shards):
        name = f"{split}-{shard:05d}-of-{shards:05d}.parquet"
        write_parquet(folder / "data" / name, rows[shard * per : (shard + 1) * per], features, row_group_size)
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


def bytes_read() -> int | None:
    """Bytes this process has read so far through read calls (Linux ``/proc/self/io`` ``rchar``)."""
    try:
        with open("/proc/self/io", encoding="ascii") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))
    except OSError:
        return None
