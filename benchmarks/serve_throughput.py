"""The service's throughput on Ray Serve: requests/s and p50/p95 latency, as a fraction of ideal.

The service (``python -m imageedit_r1.serve``'s application) serves one pipeline whose agents ask a
fake OpenAI server on 127.0.0.1 (real plans, in milliseconds) and whose editor sleeps ``--seconds``
per edit (``imageedit_r1.testing.sleepy_editor``), so what is measured is the service itself: HTTP
through Serve's proxy and the front door, the multipart form, the planner's batches, the editor
deployment's routing and queue, and the answer's encoding. Clients are the real ``openai`` SDK,
``--concurrency`` threads each sending requests back to back.

With R editor replicas and C clients at most min(R, C) edits run at once, so the ideal is
min(R, C) / seconds requests a second; the figure is achieved / ideal. Target: >= 0.8 at 4
replicas. Ray runs locally with fake GPUs (one per replica; no CPU asked for), so this runs on any
machine; replicas are started and every client warmed before the clock starts. The planner's
batch sizes seen (``imageedit_r1.planning.batch_size`` of each answer) are counted per cell.

    python benchmarks/serve_throughput.py [--replicas 1,2,4] [--concurrency 1,4,16] [--seconds 0.5]
        [--per-client 6] [--repeats 2] [--json rows.json]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import json
import os
import socket
import statistics
import time
from pathlib import Path

from imageedit_r1.testing import sleepy_editor

SLEEPY_EDITOR = "imageedit_r1.testing.sleepy_editor:SleepyEditor"
MODEL = "bench"


def service_config(agents_url: str, replicas: int, gpus: int):
    from imageedit_r1.serve.config import load_serve_config

    agent = {"backend": "openai", "model": "fake-model", "base_url": agents_url, "retry": {"attempts": 1}}
    return load_serve_config(data={
        "pipelines": {MODEL: {"mode": "single-turn", "decomposer": agent, "editor": {"name": SLEEPY_EDITOR},
                              "on_decompose_failure": "keywords", "on_sequence_failure": "template"}},
        "editor": {"replicas": replicas, "max_queued_requests": 10_000},
        "ray": {"num_cpus": 2, "num_gpus": gpus},
    })


def image_bytes(size: int, seed: int) -> bytes:
    from imageedit_r1.sample_images import sample_image

    buffer = io.BytesIO()
    sample_image("portrait", (size, size * 3 // 4), seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (the clients and the fake agents' server) and by its
    descendants (the local Ray instance: GCS, raylet, Serve's proxy and controller, the replicas)."""
    import psutil

    def used(process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:  # a process that ended meanwhile
            return 0.0

    me = psutil.Process()
    return used(me), sum(used(child) for child in me.children(recursive=True))


def measure(url: str, replicas: int, concurrency: int, args) -> dict:
    import openai

    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    images = [image_bytes(args.size, seed) for seed in range(concurrency)]

    def client(index: int, count: int) -> list[tuple[float, int]]:
        out = []
        for turn in range(count):
            started = time.perf_counter()
            response = sdk.images.edit(model=MODEL, image=("a.png", images[index], "image/png"),
                                       prompt=f"Change the color of coat {index}.{turn} to scarlet")
            out.append((time.perf_counter() - started, response.model_extra["imageedit_r1"]["planning"]["batch_size"]))
        return out

    best = None
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency), [1] * concurrency))  # warm: every connection and replica
        for _ in range(args.repeats):  # other work on the machine only slows a run down: the best is kept
            started, cpu_before = time.perf_counter(), cpu_seconds()
            run = [item for chunk in pool.map(client, range(concurrency), [args.per_client] * concurrency)
                   for item in chunk]
            elapsed, cpu_after = time.perf_counter() - started, cpu_seconds()
            if best is None or elapsed < best[1]:
                best = (run, elapsed, cpu_before, cpu_after)
    results, elapsed, cpu_before, cpu_after = best
    latencies = [seconds for seconds, _ in results]
    rate, ideal = len(results) / elapsed, min(replicas, concurrency) / args.seconds
    return {"replicas": replicas, "concurrency": concurrency, "requests": len(results),
            "requests_per_s": round(rate, 2), "ideal_per_s": round(ideal, 2), "fraction": round(rate / ideal, 3),
            "p50_s": round(statistics.median(latencies), 3), "p95_s": round(percentile(latencies, 0.95), 3),
            "cpu_ms_per_request": {"clients": round(1000 * (cpu_after[0] - cpu_before[0]) / len(results)),
                                   "service": round(1000 * (cpu_after[1] - cpu_before[1]) / len(results))},
            "batch_sizes": dict(sorted(collections.Counter(size for _, size in results).items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=0.5, help="sleep per edit")
    parser.add_argument("--per-client", type=int, default=6, help="timed requests per client")
    parser.add_argument("--size", type=int, default=64, help="input width in pixels, height 3/4 of it")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per cell; the fastest is reported")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    counts = [int(part) for part in args.replicas.split(",")]
    clients = [int(part) for part in args.concurrency.split(",")]
    os.environ[sleepy_editor.SECONDS_VARIABLE] = str(args.seconds)  # inherited by the local Ray workers
    os.environ.pop(sleepy_editor.LOG_VARIABLE, None)

    from ray import serve

    from imageedit_r1.serve.deployments import APP_NAME, build_application
    from imageedit_r1.serve.server import running
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    load = os.getloadavg()
    rows = []
    with fake_openai_server(lambda request: reply_in_kind(openai_text(request))) as agents:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        first = service_config(f"{agents.url}/v1", counts[0], max(counts))
        with running(first, host="127.0.0.1", port=port) as url:
            for replicas in counts:
                if replicas != counts[0]:  # the same Serve instance, the editor deployment resized
                    serve.run(build_application(service_config(f"{agents.url}/v1", replicas, max(counts))),
                              name=APP_NAME, route_prefix="/")
                for concurrency in clients:
                    rows.append(measure(url, replicas, concurrency, args))
                    print(rows[-1], flush=True)
    after = os.getloadavg()
    print(f"\nload average (1, 5, 15 min) before {load}, after {after}; {os.cpu_count()} CPUs")
    print(f"{'replicas':>8} {'clients':>7} {'req/s':>6} {'ideal':>6} {'fraction':>8} {'p50 s':>6} {'p95 s':>6} "
          f"{'CPU ms/req':>10}  planner batch sizes (size: requests)")
    for row in rows:
        cpu = row["cpu_ms_per_request"]
        print(f"{row['replicas']:>8} {row['concurrency']:>7} {row['requests_per_s']:>6} {row['ideal_per_s']:>6} "
              f"{row['fraction']:>8} {row['p50_s']:>6} {row['p95_s']:>6} {cpu['service']:>5}+{cpu['clients']:<4}  "
              f"{row['batch_sizes']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": load, "load_after": after, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
