"""The verify stage's candidates: N edits in one batched pipeline call vs N single calls.

    python benchmarks/verify_candidates.py                          # CPU: tiny FLUX.1-Kontext, the real editor code
    python benchmarks/verify_candidates.py --real-shapes            # CUDA: FLUX.1-Kontext-dev shapes, random bf16
    python benchmarks/verify_candidates.py --real-shapes --smoke    # CPU: the real-shapes code, narrowed

Both ways go through ``FluxKontextEditor``: ``edit_batch(image, instruction, seeds)`` (one call,
``num_images_per_prompt=N``, one generator per seed) and ``edit(image, instruction, seed)`` per seed.
Rounds are interleaved (batched, then single, repeated) and the best round of each is kept. The
script also checks that candidate i of the batch equals the single edit with seed i.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS_STRIDE = 1000


def _editor(args):
    from imageedit_r1.agents.editors.diffusion import FluxKontextEditor

    width, height = args.size
    options = dict(min_area=0, max_area=width * height, num_inference_steps=args.steps, max_sequence_length=64)
    if not args.real_shapes:
        from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext

        return FluxKontextEditor(str(build_tiny_flux_kontext()), local_files_only=True, device="cpu", dtype="float32",
                                 **options), "cpu"
    import torch
    from pipeline_latency import build_real_flux

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    pipe = build_real_flux(torch.bfloat16 if device == "cuda" else torch.float32, device=device, smoke=args.smoke)
    pipe.set_progress_bar_config(disable=True)
    return FluxKontextEditor.from_pipeline(pipe, device=device), device


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-shapes", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="with --real-shapes: narrowed models on the CPU")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (default 1024x768 real, 96x64 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 28 real, 2 tiny)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    real = args.real_shapes and not args.smoke
    args.size = tuple(int(v) for v in (args.size or ("1024x768" if real else "96x64")).split("x"))
    args.steps = args.steps or (28 if real else 2)

    import numpy as np
    from PIL import Image

    editor, device = _editor(args)
    image = Image.new("RGB", args.size, (120, 90, 60))
    instruction = "Recoloring coat to scarlet. Recoloring hair to copper red."
    seeds = [SEEDS_STRIDE * k for k in range(args.candidates)]
    editor.edit(image, instruction, seed=0)  # warm-up: loading, kernels
    best = {"batched": float("inf"), "single": float("inf")}
    batched = singles = None
    for _ in range(args.rounds):
        _sync(device)
        start = time.perf_counter()
        batched = editor.edit_batch(image, instruction, seeds=seeds)
        _sync(device)
        best["batched"] = min(best["batched"], time.perf_counter() - start)
        start = time.perf_counter()
        singles = [editor.edit(image, instruction, seed=seed) for seed in seeds]
        _sync(device)
        best["single"] = min(best["single"], time.perf_counter() - start)
    diff = max(int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
               for a, b in zip(batched, singles, strict=True))
    where = f"{device}, {'real shapes' if real else 'tiny' if not args.real_shapes else 'smoke'}"
    print(f"{where}, {args.size[0]}x{args.size[1]}, {args.steps} steps, {args.candidates} candidates")
    print(f"{'one batched call (s)':>22} {'N single calls (s)':>20} {'speed-up':>10} {'max pixel diff':>16}")
    print(f"{best['batched']:>22.3f} {best['single']:>20.3f} {best['single'] / best['batched']:>9.2f}x {diff:>16}")


if __name__ == "__main__":
    main()
