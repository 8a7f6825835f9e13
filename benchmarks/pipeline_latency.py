"""Per-stage latency of ImageEdit-R1 and the agents' overhead: (decompose + sequence) / edit.

    python benchmarks/pipeline_latency.py                 # CPU: tiny random models, the real pipeline code
    python benchmarks/pipeline_latency.py --real-shapes   # CUDA: random weights at the real shapes, bf16

CPU mode runs ``ImageEditR1`` end to end (tiny Qwen2.5-VL agents through the transformers
backend, tiny FLUX.1-Kontext editor) and reads the stage timings from the traces; random agents
never write a parseable answer, so each agent stage includes its one repair call.

``--real-shapes`` (CUDA only, no downloads) builds Qwen2.5-VL-7B-Instruct and FLUX.1-Kontext-dev
(transformer, VAE, CLIP-L and T5-XXL encoders) from configs written here, with random bf16 weights
made directly on the GPU. The agents are timed as the transformers backend runs them (chat
template, image processor, ``generate``), with the answer lengths fixed by ``--agent-tokens``
(random weights would stop anywhere); the editor is timed through ``FluxKontextEditor.edit``
at the model card's 28 steps. Tokenizers are the tiny local ones (text token counts are close
to, not equal to, the real tokenizers'); image token counts are exact.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Qwen2.5-VL-7B-Instruct (config.json of the released checkpoint).
QWEN25VL_7B_TEXT = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
QWEN25VL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    hidden_act="silu",
)
# FLUX.1-Kontext-dev (transformer/config.json and vae/config.json of the released checkpoint).
FLUX_TRANSFORMER = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
FLUX_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, sample_size=1024,
)
T5_XXL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=32, vocab_size=32128)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              projection_dim=768, max_position_embeddings=77, hidden_act="quick_gelu", vocab_size=49408)

# --smoke: the same architectures and code path, narrowed so that a CPU can run them (a pre-flight check).
SMOKE = {
    "text": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
    "vision": dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=256,
                   fullatt_block_indexes=[1]),
    "flux": dict(num_layers=1, num_single_layers=1, num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=64),
    "vae": dict(block_out_channels=(32, 32, 32, 32), layers_per_block=1),
    "t5": dict(d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2),
    "clip": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, projection_dim=64),
}

REQUEST = "Change the color of her coat and possibly hair to scarlet or copper red"
SUB_REQUESTS = ["Recoloring coat to scarlet", "Recoloring hair to copper red"]


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    stages = sorted({key for row in rows for key in row})
    return {stage: statistics.median(row[stage] for row in rows if stage in row) for stage in stages}


def print_table(title: str, medians: dict[str, float], extra: dict | None = None) -> None:
    agents = medians.get("decompose", 0.0) + medians.get("sequence", 0.0)
    edit = medians.get("edit", float("nan"))
    print(f"\n{title}")
    print(f"{'stage':<12}{'median s':>12}")
    for stage in ("decompose", "sequence", "edit"):
        if stage in medians:
            print(f"{stage:<12}{medians[stage]:>12.3f}")
    print(f"{'agents':<12}{agents:>12.3f}")
    print(f"ratio (decompose + sequence) / edit = {agents / edit:.3f}")
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")


# ----------------------------------------------------------------------------- CPU, tiny models


def run_tiny(args) -> dict:
    from imageedit_r1.pipeline import ImageEditR1
    from imageedit_r1.sample_images import sample_image
    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    width, height = args.size
    pipe = ImageEditR1.from_config({
        "seed": 0,
        "decomposer": {"backend": "transformers", "model": str(build_tiny_qwen25vl()), "max_tokens": args.agent_tokens[0],
                       "options": {"device": "cpu", "dtype": "float32"}},
        "sequencer": {"backend": "transformers", "model": str(build_tiny_qwen25vl()), "max_tokens": args.agent_tokens[1],
                      "options": {"device": "cpu", "dtype": "float32"}},
        "editor": {"name": "flux-kontext", "options": {
            "model_id": str(build_tiny_flux_kontext()), "local_files_only": True, "device": "cpu", "dtype": "float32",
            "min_area": 0, "max_area": width * height, "num_inference_steps": args.steps, "max_sequence_length": 64}},
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    })
    image = sample_image("portrait", (width, height))
    rows = []
    for run in range(args.warmup + args.repeats):
        trace = pipe(image, REQUEST).trace
        if run >= args.warmup:
            rows.append({k: v for k, v in trace["seconds"].items() if k in ("decompose", "sequence", "edit")})
    medians = summarize(rows)
    print_table(f"CPU, tiny random models, {width}x{height}, {args.steps} steps (each agent stage = answer + 1 repair)",
                medians)
    return {"mode": "cpu-tiny", "size": [width, height], "steps": args.steps, "medians": medians, "runs": rows}


# ----------------------------------------------------------------------------- CUDA, real shapes


def _on_device(factory, dtype, device):
    """Build a model with random weights directly on ``device`` (no CPU init of billions of parameters)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return factory().eval()
    finally:
        torch.set_default_dtype(previous)


def _cfg(base: dict, key: str, smoke: bool) -> dict:
    return {**base, **SMOKE[key]} if smoke else dict(base)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def real_shapes_device(smoke: bool, needs_cuda: str) -> str:
    """``cpu`` for a smoke run, else ``cuda``; without CUDA, stop with ``needs_cuda`` and the smoke hint."""
    import torch

    if not smoke and not torch.cuda.is_available():
        raise SystemExit(f"{needs_cuda}; --smoke runs the same code narrowed on a CPU")
    return "cpu" if smoke else "cuda"


def build_real_agent(dtype, device="cuda", smoke=False):
    """Qwen2.5-VL-7B at its real shapes with random weights, and the tiny model's processor."""
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from imageedit_r1.image_budget import DEFAULT_BUDGET
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    processor = AutoProcessor.from_pretrained(build_tiny_qwen25vl())
    # The image budget the agent is trained and served with, so the image becomes as many vision
    # tokens as in real use (the backends fit every image to it).
    processor.image_processor.min_pixels = DEFAULT_BUDGET.min_pixels
    processor.image_processor.max_pixels = DEFAULT_BUDGET.max_pixels
    processor.image_processor.size = {"shortest_edge": DEFAULT_BUDGET.min_pixels, "longest_edge": DEFAULT_BUDGET.max_pixels}
    token = processor.tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=_cfg(QWEN25VL_7B_TEXT, "text", smoke), vision_config=_cfg(QWEN25VL_7B_VISION, "vision", smoke),
        image_token_id=token("<|image_pad|>"), video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"), vision_end_token_id=token("<|vision_end|>"),
    )
    config._attn_implementation = "sdpa"
    model = _on_device(lambda: Qwen2_5_VLForConditionalGeneration(config), dtype, device)
    return processor, model


def time_agent(processor, model, image, prompt: str, new_tokens: int, device: str) -> tuple[float, int]:
    """Seconds for one agent call as the transformers backend makes it, with a fixed answer length."""
    import torch

    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    _sync(device)
    start = time.perf_counter()
    inputs = processor(text=[text], images=[image], return_tensors="pt").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=processor.tokenizer.pad_token_id)
    _sync(device)
    return time.perf_counter() - start, int(inputs["input_ids"].shape[1])


def build_real_flux(dtype, device="cuda", smoke=False):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from imageedit_r1.testing.tiny_diffusion import train_clip_tokenizer, train_t5_tokenizer

    tokenizer, tokenizer_2 = train_clip_tokenizer(), train_t5_tokenizer()
    transformer = _on_device(lambda: FluxTransformer2DModel(**_cfg(FLUX_TRANSFORMER, "flux", smoke)), dtype, device)
    vae = _on_device(lambda: AutoencoderKL(**_cfg(FLUX_VAE, "vae", smoke)), dtype, device)
    text_encoder = _on_device(lambda: CLIPTextModel(CLIPTextConfig(
        **_cfg(CLIP_L, "clip", smoke), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)), dtype, device)
    text_encoder_2 = _on_device(lambda: T5EncoderModel(T5Config(**_cfg(T5_XXL, "t5", smoke))), dtype, device)
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15, use_dynamic_shifting=True,
        shift=3.0)
    return FluxKontextPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                               text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def run_real_shapes(args) -> dict:
    import torch

    from imageedit_r1.agents.editors.diffusion import FluxKontextEditor
    from imageedit_r1.pipeline import join_sub_requests
    from imageedit_r1.prompts import render_prompt
    from imageedit_r1.sample_images import sample_image

    smoke = args.smoke
    device = real_shapes_device(smoke, "--real-shapes needs CUDA (random-weight Qwen2.5-VL-7B + FLUX.1-Kontext-dev, "
                                       "bf16, ~55 GB)")
    dtype = torch.float32 if smoke else torch.bfloat16
    width, height = args.size
    image = sample_image("portrait", (width, height))
    started = time.perf_counter()
    processor, agent = build_real_agent(dtype, device, smoke)
    editor = FluxKontextEditor.from_pipeline(build_real_flux(dtype, device, smoke),
                                             model_id="FLUX.1-Kontext-dev (random weights)",
                                             num_inference_steps=args.steps, device=device, min_area=0)
    editor.load().set_progress_bar_config(disable=True)
    build_seconds = time.perf_counter() - started
    decompose_prompt = render_prompt("decompose", content=REQUEST)
    sequence_prompt = render_prompt("sequence", request=REQUEST, actions='["Recoloring"]', subjects='["coat", "hair"]',
                                    goals='["scarlet or copper red"]', max_steps=8, as_object=True)
    rows, prompt_tokens = [], {}
    for run in range(args.warmup + args.repeats):
        row = {}
        row["decompose"], prompt_tokens["decompose"] = time_agent(
            processor, agent, image, decompose_prompt, args.agent_tokens[0], device)
        row["sequence"], prompt_tokens["sequence"] = time_agent(
            processor, agent, image, sequence_prompt, args.agent_tokens[1], device)
        _sync(device)
        start = time.perf_counter()
        out = editor.edit(image, join_sub_requests(SUB_REQUESTS), seed=run)
        _sync(device)
        row["edit"] = time.perf_counter() - start
        assert out.size == (width, height)
        if run >= args.warmup:
            rows.append(row)
        print(f"run {run}: " + ", ".join(f"{k} {v:.3f}s" for k, v in row.items()), flush=True)
    medians = summarize(rows)
    extra = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (--smoke: narrowed shapes)",
        "build seconds (random init on the device)": round(build_seconds, 1),
        "agent prompt tokens (decompose, sequence)": [prompt_tokens["decompose"], prompt_tokens["sequence"]],
        "agent answer tokens (decompose, sequence)": list(args.agent_tokens),
        "decode tokens/s (decompose)": round(args.agent_tokens[0] / medians["decompose"], 1),
        "peak GPU memory GiB": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None,
    }
    title = ("CPU smoke run of the real-shapes code (narrowed models, fp32)" if smoke
             else "CUDA, real shapes, random bf16 weights")
    print_table(f"{title}, {width}x{height}, {args.steps} steps, transformers generate", medians, extra)
    return {"mode": "cuda-real-shapes", "size": [width, height], "steps": args.steps, "medians": medians,
            "runs": rows, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-shapes", action="store_true", help="CUDA: random weights at the released models' shapes")
    parser.add_argument("--smoke", action="store_true",
                        help="with --real-shapes: run that code path on the CPU with narrowed models (a pre-flight check)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT of the input (default 1024x768 real, 96x64 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="editor steps (default 28 real, 2 tiny)")
    parser.add_argument("--agent-tokens", default=None,
                        help="answer tokens of the decomposer and the sequencer, e.g. 160,80 (default 160,80 real, 16,16 tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    real = args.real_shapes and not args.smoke
    args.size = tuple(int(v) for v in (args.size or ("1024x768" if real else "96x64")).lower().split("x"))
    args.steps = args.steps or (28 if real else 2)
    args.agent_tokens = tuple(int(v) for v in (args.agent_tokens or ("160,80" if real else "16,16")).split(","))
    result = run_real_shapes(args) if args.real_shapes else run_tiny(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
