"""Scale-out on Ray: edit-stage throughput at 1, 2, 4 and 8 replicas as a fraction of ideal.

Each replica runs an editor that sleeps ``--seconds`` per edit (``imageedit_r1.testing.sleepy_editor``),
so what is measured is the orchestration alone: the runner's own edit stage (resume keys, loading
and saving images, one JSONL append with fsync per item, redaction) feeding Ray actors through the
replica pool (slots, object transfer, results back to the one writer). With R replicas the ideal
is R / seconds edits a second; the ratio achieved / ideal is the figure. Target: >= 0.9 at 8.

Ray runs locally with fake GPUs (``num_gpus=8``; replicas ask 1 GPU and 0 CPUs), so this runs on
any machine. Replicas are started and warmed before the clock starts (model loading is not
orchestration); every replica then gets ``--per-replica`` items, ``--repeats`` times over fresh
output folders, and the best run is reported (other work on the machine only slows a run down).

    python benchmarks/scale_out.py [--replicas 1,2,4,8] [--seconds 0.5] [--per-replica 16] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from imageedit_r1.eval.config import BenchmarkConfig, EvalConfig, MethodConfig
from imageedit_r1.eval.methods import build_edit_fn
from imageedit_r1.eval.records import Summary
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.testing import sleepy_editor


def make_manifest(folder: Path, n: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n):
        Image.effect_noise((size, size * 3 // 4), 40 + index % 50).convert("RGB").save(folder / f"{index}.png")
        lines.append(json.dumps({"id": f"s{index}", "image": f"{index}.png", "request": f"make item {index} red"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(replicas: int, args, root: Path) -> dict:
    from imageedit_r1.scale.eval_edits import RemoteEditFn
    from imageedit_r1.scale.replicas import ReplicaPool

    class KeepOpen(RemoteEditFn):
        def close(self) -> None:  # the pool serves every repeat; closed below
            pass

    n = replicas * args.per_replica
    manifest = make_manifest(root / f"r{replicas}" / "bench", n, args.size)
    method = MethodConfig(name="sleepy", kind="callable", target="imageedit_r1.testing.sleepy_editor:edit", seed=0)
    pool = ReplicaPool(functools.partial(build_edit_fn, method), replicas=replicas, num_gpus=1, num_cpus=0,
                       max_in_flight=args.in_flight)
    pool.info()  # every replica up and its edit function built: the clock measures editing only
    remote = KeepOpen(pool)
    runs = []
    try:
        for repeat in range(args.repeats):
            config = EvalConfig(out_dir=str(root / f"r{replicas}" / f"run{repeat}"), methods=[method],
                                benchmarks=[BenchmarkConfig(name="b", source="manifest", manifest=str(manifest))])
            runner = EvalRunner(config, edit_fn_factory=lambda _method: remote, progress=False)
            runner.samples()  # read the manifest before the clock starts, as a real run does once
            summary = Summary()
            started = time.perf_counter()
            runner.run_edits(summary)
            runs.append(time.perf_counter() - started)
            assert summary.edits["done"] == n, summary
    finally:
        pool.close()
    ideal = replicas / args.seconds
    fractions = [n / elapsed / ideal for elapsed in runs]
    best = min(runs)
    return {"replicas": replicas, "items": n, "seconds": round(best, 2), "edits_per_s": round(n / best, 2),
            "ideal_per_s": round(ideal, 2), "fraction": round(max(fractions), 3),
            "all_fractions": [round(f, 3) for f in fractions]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=0.5, help="sleep per edit")
    parser.add_argument("--per-replica", type=int, default=16, help="items per replica")
    parser.add_argument("--in-flight", type=int, default=2, help="ray.max_in_flight")
    parser.add_argument("--size", type=int, default=64,
                        help="input width in pixels, height 3/4 of it (larger: adds the driver's PNG work)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per replica count; the best is reported")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    counts = [int(part) for part in args.replicas.split(",")]
    os.environ[sleepy_editor.SECONDS_VARIABLE] = str(args.seconds)  # inherited by the local Ray workers
    os.environ.pop(sleepy_editor.LOG_VARIABLE, None)

    import ray

    ray.init(num_cpus=2, num_gpus=max(counts), include_dashboard=False, logging_level="ERROR")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for replicas in counts:
            rows.append(measure(replicas, args, Path(tmp)))
            print(rows[-1], flush=True)
    ray.shutdown()
    print(f"\n{'replicas':>8} {'items':>6} {'seconds':>8} {'edits/s':>8} {'ideal/s':>8} {'fraction':>8}  all runs")
    for row in rows:
        print(f"{row['replicas']:>8} {row['items']:>6} {row['seconds']:>8} {row['edits_per_s']:>8} "
              f"{row['ideal_per_s']:>8} {row['fraction']:>8}  {row['all_fractions']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
