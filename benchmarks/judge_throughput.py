"""Judge throughput: 1,000 judgments against a loopback OpenAI-compatible server with 1 s latency.

With latency L and concurrency C the ideal is C / L judgments a second; the ratio achieved / ideal
shows what the runner's own work costs (image loads, request encoding, JSONL appends with fsync,
scheduling). Target: >= 0.8. Two rows: bare ``Judge`` calls in a thread pool, and the full runner's
judge stage (cache keys, records, redaction, progress) over the same number of items.

    python benchmarks/judge_throughput.py [--n 1000] [--concurrency 32] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from imageedit_r1.agents.judge import build_judge
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import BenchmarkConfig, EvalConfig, MethodConfig
from imageedit_r1.eval.runner import EvalRunner

REQUEST_RE = re.compile(r'\*\*Edit Request:\*\* "(.*)"')


def reply(body) -> str:
    from imageedit_r1.testing.fake_servers import openai_text

    digest = sum(map(ord, REQUEST_RE.search(openai_text(body)).group(1)))
    return f'{{"reasoning": "ok", "fulfillment": {digest % 5}, "quality": {digest % 4}, "preservation": 3}}'


def make_manifest(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n):
        Image.new("RGB", (64, 64), (index % 256, 80, 160)).save(folder / f"{index}.png")
        lines.append(f'{{"id": "s{index}", "image": "{index}.png", "request": "[s{index}] add a red hat"}}')
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "manifest.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    from imageedit_r1.testing.fake_servers import fake_openai_server

    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-key")
    ideal = args.concurrency / args.latency
    rows = []
    with tempfile.TemporaryDirectory() as tmp, fake_openai_server(reply, latency=args.latency) as server:
        tmp = Path(tmp)
        judge_cfg = JudgeConfig(name="J", backend="openai", model="bench-judge", base_url=server.url + "/v1",
                                timeout=30.0)

        # Bare judge calls.
        judge = build_judge(judge_cfg)
        original = Image.new("RGB", (64, 64), (10, 80, 160))
        edited = Image.new("RGB", (64, 64), (200, 80, 160))
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda i: judge(original, edited, f"[b{i}] add a red hat"), range(args.n)))
        rows.append(("Judge calls, thread pool", args.n / (time.perf_counter() - started)))

        # The runner's judge stage over n items (edits made beforehand, not timed).
        manifest = make_manifest(tmp / "bench", args.n)
        config = EvalConfig(out_dir=str(tmp / "run"), concurrency=args.concurrency,
                            benchmarks=[BenchmarkConfig(name="B", source="manifest", manifest=str(manifest))],
                            methods=[MethodConfig(name="id", label="Identity", kind="identity")], judges=[judge_cfg])
        EvalRunner(config, progress=False).run(stage="edit")
        runner = EvalRunner(config, progress=False)
        started = time.perf_counter()
        summary = runner.run(stage="judge")
        elapsed = time.perf_counter() - started
        assert summary.judgments["scored"] == args.n, summary.judgments
        rows.append(("Runner judge stage (records, fsync)", args.n / elapsed))

    print(f"{args.n} judgments, fake server latency {args.latency:g} s, concurrency {args.concurrency}; "
          f"ideal {ideal:.1f} judgments/s")
    print(f"{'path':<40} {'judgments/s':>12} {'achieved/ideal':>15}")
    for name, rate in rows:
        print(f"{name:<40} {rate:>12.2f} {rate / ideal:>15.3f}")
    print("target: achieved/ideal >= 0.8")


if __name__ == "__main__":
    main()
