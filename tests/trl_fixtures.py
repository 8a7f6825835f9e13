"""TRL training data made the way a user makes it: images drawn in code, a manifest, teacher labels,
eval subsets for the leakage guard, and ``python -m imageedit_r1.data export --format trl``."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from imageedit_r1.data import ManifestLoader
from imageedit_r1.data.labels import sample_key
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.store import append_jsonl

# (id, request, size, background, shape colour, ground truth): a 12 MP photo, a portrait, a panorama.
SCENES = [
    ("photo-12mp", "Change the color of her coat and possibly hair to scarlet or copper red",
     (4032, 3024), (70, 90, 140), (180, 30, 30),
     Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"])),
    ("portrait", "Remove the person on the left and blur the background",
     (900, 1600), (30, 160, 60), (240, 220, 200),
     Decomposition(["Removal", "Blur"], ["person on the left", "background"], ["person gone", "blurred background"])),
    ("panorama", "Make the sky look like a sunset",
     (2400, 600), (40, 80, 200), (250, 250, 250),
     Decomposition(["Tone Adjustment"], ["sky"], ["sunset colors"])),
    ("street", "Add a red hat to the dog",
     (640, 480), (120, 120, 120), (90, 60, 30),
     Decomposition(["Addition"], ["dog"], ["red hat"])),
]
TRUTHS = {scene[0]: scene[5] for scene in SCENES}


def draw_scene(size: tuple[int, int], background, shape) -> Image.Image:
    """A picture with some structure: a vertical gradient, a figure and a horizon line."""
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for y in range(0, height, max(1, height // 64)):
        shade = int(60 * y / height)
        draw.rectangle([0, y, width, y + height // 64], fill=tuple(min(255, c + shade) for c in background))
    draw.ellipse([width // 5, height // 4, width // 2, height * 3 // 4], fill=shape)
    draw.line([0, height * 2 // 3, width, height * 2 // 3], fill=(20, 20, 20), width=max(1, height // 100))
    return image


def write_trl_sources(folder: Path) -> tuple[Path, Path, Path]:
    """(manifest, labels JSONL, eval subsets folder) for the scenes; the eval subset holds another image."""
    from imageedit_r1.data.subsets import draw_subset

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for scene_id, request, size, background, shape, _ in SCENES:
        name = f"{scene_id}.jpg"
        draw_scene(size, background, shape).save(folder / name, quality=90)
        lines.append(json.dumps({"id": scene_id, "image": name, "request": request}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    labels = folder / "labels.jsonl"
    for sample in ManifestLoader(manifest):
        append_jsonl(labels, {
            "key": sample.id, "sample_key": sample_key(sample.image_sha256(), sample.request), "id": sample.id,
            "status": "ok", "ground_truth": TRUTHS[sample.id].to_json(), "model": "teacher-test",
        })

    held_out = folder / "eval"
    held_out.mkdir(exist_ok=True)
    draw_scene((320, 240), (10, 10, 10), (200, 200, 0)).save(held_out / "held.png")
    (held_out / "m.jsonl").write_text(json.dumps({"id": "held-1", "image": "held.png", "request": "brighten"}) + "\n")
    draw_subset(ManifestLoader(held_out / "m.jsonl"), "psr", None, progress=False).write(folder / "subsets")
    return manifest, labels, folder / "subsets"


def export_trl(folder: Path, *extra: str) -> Path:
    """Run ``data export --format trl`` (leakage guard on, every sample in train); returns ``<out>/trl``."""
    from imageedit_r1.data.__main__ import main

    manifest, labels, subsets = write_trl_sources(folder / "sources")
    out = folder / "rl"
    code = main([
        "--quiet", "export", "--source", f"manifest:{manifest}", "--labels", str(labels), "--subsets", str(subsets),
        "--out", str(out), "--format", "trl", "--val-fraction", "0", *extra,
    ])
    assert code == 0
    return out / "trl"


def write_trl_rows(path: Path, rows: int) -> Path:
    """A parquet file with the TRL export's schema and ``rows`` placeholder rows (what preflight reads:
    the schema and the row count; no image in it decodes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imageedit_r1.data.export import trl

    row = {"prompt": [{"role": "user", "content": [{"type": "text", "text": "Change the coat to red"}]}],
           "images": [{"bytes": b"", "path": "a.png"}], "ground_truth": "{}", "data_source": "d", "id": "a"}
    pq.write_table(pa.Table.from_pylist([row] * rows, schema=trl.features().arrow_schema), path)
    return path
