"""Bytes the benchmark loaders read from a local parquet copy, before and after column projection.

Writes a PSR-328 and an UltraEdit shard in the real layouts (the cards' columns and types, image
columns as ``Image`` features, row groups of 100 rows as ``datasets`` wrote image datasets), with
incompressible JPEG images, then counts the bytes the process reads (Linux ``/proc/self/io``
``rchar``) for each pass, side by side in one run:

- *all columns*: every column of every row streamed through ``datasets``, which is what the
  loaders did before (and what any reader that does not project does);
- the loaders' passes: the full pass (``records()``: id, request, image, allow-listed metadata),
  the id-only pass of a subset draw (``records(roles=("id",))``), and, for PSR, a pass restricted
  to the first 10 posts (an evaluation run over a few ids), which ends with those posts' rows.

PSR's rows: each post has ``--comments`` human edits x ``--models`` AI models rows (10,405 rows
for 328 posts in the real split, ~32 a post); every row of a post repeats its source image, a
human edit repeats over the models, and every AI edit is its own. How many bytes the repeats take
depends on the writer's dictionary encoding (pyarrow's default stores a repeated value once per
row group until the dictionary passes 1 MB, then writes every value), so each file is written
twice: with pyarrow's defaults, and plain (every value written), the two ends of the range.
Run: python benchmarks/loader_bytes_read.py [--posts 12] [--ultraedit-rows 400] [--side 256]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bytes_read() -> int:
    with open("/proc/self/io", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


def noise_jpeg(seed: int, side: int) -> dict:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return {"bytes": buffer.getvalue(), "path": None}


def write(path: Path, rows: list[dict], features, dictionary: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=features.arrow_schema)
    pq.write_table(table, path, row_group_size=100, use_dictionary=dictionary)


def write_psr(folder: Path, posts: int, comments: int, models: int, side: int, dictionary: bool) -> None:
    import datasets

    string, image = datasets.Value("string"), datasets.Image()
    features = datasets.Features(
        {"post_id": string, "instruction": string, "simplified_instruction": string, "model": string,
         "comment_id": string, "post_owner": string, "comment_owner": string, "creativity_index": string,
         "source_image": image, "ai_edited_image": image, "human_edited_image": image}  # fmt: skip
    )
    rows = []
    for post in range(posts):
        source = noise_jpeg(post, side)
        for comment in range(comments):
            human = noise_jpeg(10_000 + post * 100 + comment, side)
            for model in range(models):
                rows.append(
                    {"post_id": f"1a{post:04d}", "instruction": f"Please make the sky in photo {post} a sunset",
                     "simplified_instruction": "Sunset sky", "model": f"model-{model}", "comment_id": f"c{comment}",
                     "post_owner": f"user{post}", "comment_owner": f"editor{comment}", "creativity_index": "0.42",
                     "source_image": source, "human_edited_image": human,
                     "ai_edited_image": noise_jpeg(1_000_000 + len(rows), side)}  # fmt: skip
                )
    write(folder / "data" / "test-00000-of-00001.parquet", rows, features, dictionary)


def write_ultraedit(folder: Path, count: int, side: int, dictionary: bool) -> None:
    import datasets

    number = datasets.Value("float64")
    features = datasets.Features(
        {"clip_sim_dir": number, "clip_sim_image": number, "clip_sim_source": number, "clip_sim_target": number,
         "dinov2_sim": number, "edit_object": datasets.Value("null"), "edit_prompt": datasets.Value("string"),
         "edited_image": datasets.Image(), "idx": datasets.Value("int64"), "mask_image": datasets.Value("null"),
         "source_caption": datasets.Value("string"), "source_image": datasets.Image(), "ssim": number,
         "target_caption": datasets.Value("string")}  # fmt: skip
    )
    rows = [
        {"clip_sim_dir": 0.2, "clip_sim_image": 0.8, "clip_sim_source": 0.3, "clip_sim_target": 0.3,
         "dinov2_sim": 0.7, "edit_object": None, "edit_prompt": f"add a hat to horse {i}",
         "edited_image": noise_jpeg(2_000_000 + i, side), "idx": 5_000_000 + i, "mask_image": None,
         "source_caption": "a horse", "source_image": noise_jpeg(3_000_000 + i, side), "ssim": 0.6,
         "target_caption": "a horse with a hat"}  # fmt: skip
        for i in range(count)
    ]
    write(folder / "data" / "FreeForm_0-00000-of-00001.parquet", rows, features, dictionary)


def all_columns(folder: Path, split: str) -> int:
    """Every column of every row through ``datasets``, images not decoded: the loaders' old read."""
    import datasets

    shards = sorted(str(path) for path in folder.rglob(f"{split}-*.parquet"))
    rows = datasets.load_dataset("parquet", data_files=shards, split="train", streaming=True).decode(False)
    return sum(1 for _ in rows)


def measure(label: str, run) -> tuple[str, int, float, int]:
    start_bytes, start = bytes_read(), time.perf_counter()
    rows = run()
    return label, bytes_read() - start_bytes, time.perf_counter() - start, rows


def print_table(title: str, results: list[tuple[str, int, float, int]]) -> None:
    base = results[0][1]
    print(f"\n{title}")
    print(f"  {'pass':<44} {'read (MB)':>10} {'vs all':>8} {'seconds':>8} {'yielded':>8}")
    for label, read, seconds, rows in results:
        print(f"  {label:<44} {read / 1e6:>10.1f} {read / base:>8.3f} {seconds:>8.2f} {rows:>8}")


def run(args: argparse.Namespace, dictionary: bool) -> None:
    from imageedit_r1.data import PSRLoader, UltraEditLoader

    encoding = "pyarrow defaults (dictionary)" if dictionary else "plain (no dictionary)"
    with tempfile.TemporaryDirectory() as tmp:
        psr, ultra = Path(tmp) / "psr", Path(tmp) / "ultraedit"
        write_psr(psr, args.posts, args.comments, args.models, args.side, dictionary)
        write_ultraedit(ultra, args.ultraedit_rows, args.side, dictionary)
        size = sum(path.stat().st_size for path in psr.rglob("*.parquet"))
        rows = args.comments * args.models
        print(f"\n=== {encoding}\nPSR copy: {args.posts} posts x {rows} rows, {size / 1e6:.1f} MB on disk")
        first_posts = {f"psr/1a{post:04d}" for post in range(min(3, args.posts))}
        all_columns(psr, "test")  # warm the page cache and the imports: every pass below is measured alike
        print_table(
            "PSR (one request per post)",
            [
                measure("all columns (before)", lambda: all_columns(psr, "test")),
                measure("full pass: records()", lambda: sum(1 for _ in PSRLoader(psr).records())),
                measure("id pass: records(roles=('id',))", lambda: sum(1 for _ in PSRLoader(psr).records(["id"]))),
                measure(
                    f"full pass, ids = the first {len(first_posts)} posts",
                    lambda: sum(1 for _ in PSRLoader(psr, ids=first_posts).records()),
                ),
            ],
        )
        size = sum(path.stat().st_size for path in ultra.rglob("*.parquet"))
        print(f"UltraEdit copy: {args.ultraedit_rows} rows, {size / 1e6:.1f} MB on disk")
        all_columns(ultra, "FreeForm_0")
        print_table(
            "UltraEdit (FreeForm_0)",
            [
                measure("all columns (before)", lambda: all_columns(ultra, "FreeForm_0")),
                measure(
                    "full pass: records()", lambda: sum(1 for _ in UltraEditLoader(ultra, "FreeForm_0").records())
                ),
                measure(
                    "id pass: records(roles=('id',))",
                    lambda: sum(1 for _ in UltraEditLoader(ultra, "FreeForm_0").records(["id"])),
                ),
            ],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=12, help="PSR posts (default 12)")
    parser.add_argument("--comments", type=int, default=8, help="human edits a post (default 8)")
    parser.add_argument("--models", type=int, default=4, help="AI models a post (default 4)")
    parser.add_argument("--ultraedit-rows", type=int, default=400, help="UltraEdit rows (default 400)")
    parser.add_argument("--side", type=int, default=256, help="image side in pixels (default 256, ~90 KB a JPEG)")
    args = parser.parse_args()

    for dictionary in (True, False):
        run(args, dictionary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
