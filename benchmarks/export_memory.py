"""Peak memory of the RL export against the number of rows: it should stay flat.

Exports N small synthetic samples (random 48x48 images, a request, a ground truth) to EasyR1 and
verl parquet with the streaming exporter, and prints the process's peak RSS at checkpoints
(1k, 5k, 10k, 25k, 50k rows), in a fresh process so nothing else counts. A second fresh process
builds the same rows as one in-memory table before writing (what a naive exporter does), for
comparison. Run: python benchmarks/export_memory.py [--rows 50000] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKPOINTS = (1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 200_000)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def synthetic_items(rows: int):
    import numpy as np
    from PIL import Image

    from imageedit_r1.data.edit_sample import EditSample
    from imageedit_r1.data.export import ExportItem
    from imageedit_r1.decomposition import Decomposition

    rng = np.random.default_rng(0)
    truth = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]).to_json()
    for index in range(rows):
        image = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), "RGB")
        sample = EditSample(
            id=f"synthetic/{index}", image=image, request=f"change the coat {index} to scarlet", source="synthetic"
        )
        yield ExportItem(sample, truth)


def run_streaming(rows: int, out: Path) -> dict:
    from imageedit_r1.data.export import Exporter

    marks = {}
    start = time.perf_counter()
    with Exporter(out, ("easyr1", "verl"), val_fraction=0.05, keep_ids=False) as exporter:
        for done, item in enumerate(synthetic_items(rows), start=1):
            exporter.add(item)
            if done in CHECKPOINTS or done == rows:
                marks[done] = peak_rss_mb()
        exporter.commit()
    return {"marks": marks, "seconds": time.perf_counter() - start}


def run_in_memory(rows: int, out: Path) -> dict:
    """The naive way: every row in one Python list, then one table per file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imageedit_r1.data.export import easyr1, verl
    from imageedit_r1.images import to_png_bytes

    start = time.perf_counter()
    easy, verl_rows = [], []
    for item in synthetic_items(rows):
        image = {"bytes": to_png_bytes(item.sample.image), "path": None}
        where = {"index": 0, "split": "train", "digest": item.sample.image_sha256()}
        easy.append(easyr1.row(item.sample, item.ground_truth, image, **where))
        verl_rows.append(verl.row(item.sample, item.ground_truth, image, **where))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(easy, schema=easyr1.features().arrow_schema), out / "easyr1.parquet")
    pq.write_table(pa.Table.from_pylist(verl_rows, schema=verl.features().arrow_schema), out / "verl.parquet")
    return {"marks": {rows: peak_rss_mb()}, "seconds": time.perf_counter() - start}


def child(mode: str, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_streaming if mode == "stream" else run_in_memory)(rows, Path(tmp) / "out")
    print(json.dumps(result))


def spawn(mode: str, rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--rows", str(rows)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["marks"] = {int(k): v for k, v in result["marks"].items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-memory comparison")
    parser.add_argument("--child", choices=["stream", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows)
        return

    stream = spawn("stream", args.rows)
    print(f"streaming export, EasyR1 + verl parquet, {args.rows:,} rows in {stream['seconds']:.1f} s")
    print(f"{'rows':>8}  {'peak RSS (MB)':>13}  {'vs first':>8}")
    first = next(iter(stream["marks"].values()))
    for rows, peak in stream["marks"].items():
        print(f"{rows:>8,}  {peak:>13.1f}  {peak / first:>7.2f}x")
    last = stream["marks"][max(stream["marks"])]
    if not args.no_baseline:
        memory = spawn("memory", args.rows)
        naive = memory["marks"][args.rows]
        print(f"in-memory export of the same {args.rows:,} rows: peak RSS {naive:.1f} MB ({memory['seconds']:.1f} s)")
        print(f"peak RSS, in-memory / streaming: {naive / last:.2f}x")


if __name__ == "__main__":
    main()
