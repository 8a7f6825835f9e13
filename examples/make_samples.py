"""Draw the sample images that examples/manifest.jsonl refers to (into examples/images/).

    python examples/make_samples.py
    python -m imageedit_r1.pipeline --config examples/configs/flux_kontext.yaml \
        --manifest examples/manifest.jsonl --out-dir runs/flux
"""

import argparse
import json
from pathlib import Path

from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=str(HERE / "images"))
    parser.add_argument("--size", default="768x576", help="WIDTHxHEIGHT of every sample")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_REQUESTS:
        path = out_dir / f"{name}.png"
        sample_image(name, (width, height)).save(path)
        print(f"wrote {path}")
    # The manifest is committed; check it still names every sample.
    listed = {json.loads(line)["id"] for line in (HERE / "manifest.jsonl").read_text().splitlines() if line.strip()}
    missing = set(SAMPLE_REQUESTS) - listed
    if missing:
        print(f"note: manifest.jsonl does not list {sorted(missing)}")


if __name__ == "__main__":
    main()
