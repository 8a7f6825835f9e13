"""Time one GRPO update step of the decomposition agent at real shapes (Qwen2.5-VL-7B, bf16, one GPU).

    python benchmarks/grpo_step.py                 # CUDA: Qwen2.5-VL-7B, random weights, ~3 minutes
    python benchmarks/grpo_step.py --smoke         # CPU: a tiny config, checks the script runs

What one update step is, per GPU, in the recipe's setting (8 GPUs, 32 prompts x 8 rollouts = 256
responses per update, micro-batch 1): the old-policy and reference log-prob forwards over its 32
responses, forward+backward of the clipped policy loss over the same 32, one optimizer step.
One GPU cannot hold FSDP's sharding, so this script measures the pieces on one GPU and scales:
  - forward (no grad) and forward+backward of one micro-batch, each timed over several repeats;
  - one AdamW step over 1/8 of the parameters: what each of 8 FSDP ranks steps.
The printed estimate = responses_per_gpu * (2 * forward + forward_backward) + optimizer shard step;
communication (FSDP all-gathers, reduce-scatters) and rollout generation are not included.

Shapes: one 896x896 image (4,096 patches -> 1,024 image tokens after 2x2 merging), a ~260-token
request prompt and a 192-token response: 1,480 tokens per sequence. Gradient checkpointing is on,
as in the recipe. Memory: bf16 weights and gradients of the 8.3B-parameter model (~33 GB) plus
AdamW states for the 1/8 shard, well inside 80 GB.
"""

from __future__ import annotations

import argparse
import time

import torch

IMAGE_TOKEN, VIDEO_TOKEN, VISION_START, VISION_END = 151655, 151656, 151652, 151653


def qwen25vl_7b_config(smoke: bool):
    from transformers import Qwen2_5_VLConfig

    if smoke:
        text = dict(vocab_size=152064, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2)
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      fullatt_block_indexes=[1])
        mrope = [2, 3, 3]
    else:  # Qwen/Qwen2.5-VL-7B-Instruct's config.json
        text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4)
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                      fullatt_block_indexes=[7, 15, 23, 31])
        mrope = [16, 24, 24]
    return Qwen2_5_VLConfig(
        text_config=dict(**text, max_position_embeddings=128000, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         hidden_act="silu", rope_scaling={"type": "mrope", "mrope_section": mrope},
                         bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=False),
        vision_config=dict(**vision, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           in_chans=3, hidden_act="silu"),
        image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN,
        vision_start_token_id=VISION_START, vision_end_token_id=VISION_END,
    )


def rollout_batch(batch: int, image_side: int, prompt_text: int, response: int, device: str):
    """What the processor would give for `batch` rollouts of one prompt with one image."""
    grid = image_side // 14
    patches = grid * grid
    image_tokens = patches // 4
    gen = torch.Generator().manual_seed(0)
    text_before = torch.randint(1000, 150000, (20,), generator=gen)
    text_after = torch.randint(1000, 150000, (prompt_text - 20,), generator=gen)
    prompt = torch.cat([text_before, torch.tensor([VISION_START]), torch.full((image_tokens,), IMAGE_TOKEN),
                        torch.tensor([VISION_END]), text_after])
    responses = torch.randint(1000, 150000, (batch, response), generator=gen)
    input_ids = torch.cat([prompt.expand(batch, -1), responses], dim=1)
    types = (input_ids == IMAGE_TOKEN).int()
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "mm_token_type_ids": types.to(device),  # without it transformers 5 skips the 3-D mRoPE positions
        "pixel_values": torch.randn(batch * patches, 3 * 2 * 14 * 14, generator=gen).to(device, torch.bfloat16),
        "image_grid_thw": torch.tensor([[1, grid, grid]] * batch).to(device),
    }, prompt.numel()


def response_log_probs(model, inputs, prompt_len: int) -> torch.Tensor:
    logits = model(**inputs, use_cache=False).logits[:, prompt_len - 1 : -1]
    targets = inputs["input_ids"][:, prompt_len:]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def grpo_loss(logp, old_logp, ref_logp, advantages, clip=0.2, kl_coef=0.01):
    ratio = torch.exp(logp - old_logp)
    pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1  # low-variance KL, as in the recipe
    return (pg + kl_coef * kl).mean()


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up: kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (checks the script, times nothing real)")
    parser.add_argument("--micro-batch", type=int, default=1, help="sequences per forward/backward (recipe: 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-side", type=int, default=896)
    parser.add_argument("--prompt-text-tokens", type=int, default=260)
    parser.add_argument("--response-tokens", type=int, default=192)
    parser.add_argument("--responses-per-gpu", type=int, default=32, help="32 prompts x 8 rollouts / 8 GPUs")
    parser.add_argument("--n-gpus", type=int, default=8)
    args = parser.parse_args()

    from transformers import Qwen2_5_VLForConditionalGeneration

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: run with --smoke for a CPU check of the script")
    if args.smoke:
        args.image_side, args.prompt_text_tokens, args.response_tokens = 56, 40, 16
    t0 = time.perf_counter()
    torch.manual_seed(0)
    config = qwen25vl_7b_config(args.smoke)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    params = sum(p.numel() for p in model.parameters())
    build_s = time.perf_counter() - t0
    # Each FSDP rank owns 1/n_gpus of the parameters and their optimizer states: step a shard that size.
    shard, owned = [], 0
    for p in model.parameters():
        if owned >= params / args.n_gpus:
            break
        shard.append(p)
        owned += p.numel()
    optimizer = torch.optim.AdamW(shard, lr=1e-6, weight_decay=1e-2, fused=device == "cuda")

    inputs, prompt_len = rollout_batch(args.micro_batch, args.image_side, args.prompt_text_tokens,
                                       args.response_tokens, device)
    seq_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        model.eval()
        old_logp = response_log_probs(model, inputs, prompt_len)
    ref_logp = old_logp + 0.01 * torch.randn_like(old_logp)
    advantages = torch.randn(args.micro_batch, 1, device=device).expand_as(old_logp)

    def forward_only():
        with torch.no_grad():
            response_log_probs(model, inputs, prompt_len)

    def forward_backward():
        model.train()
        loss = grpo_loss(response_log_probs(model, inputs, prompt_len), old_logp, ref_logp, advantages)
        loss.backward()

    forward_backward()  # gradients exist before the optimizer is timed (its states are created here)
    optimizer.step()
    fwd = timed(forward_only, args.repeats, device)
    fwd_bwd = timed(forward_backward, args.repeats, device)
    opt = timed(optimizer.step, args.repeats, device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")

    micro_batches = args.responses_per_gpu / args.micro_batch
    per_gpu_step = micro_batches * (2 * fwd + fwd_bwd) + opt
    tokens = args.micro_batch * seq_len
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke config)"
    print(f"device: {name}; model: {params / 1e9:.2f}B parameters, bf16, random weights (built in {build_s:.1f}s)")
    print(f"micro-batch: {args.micro_batch} x {seq_len} tokens ({args.image_side}px image -> "
          f"{(args.image_side // 14) ** 2 // 4} image tokens, {args.response_tokens} response tokens)")
    print(f"{'measured':<46}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'log-prob forward (old/ref policy), 1 micro-batch':<46}{fwd:>10.3f}{tokens / fwd:>12.0f}")
    print(f"{'policy loss forward+backward, 1 micro-batch':<46}{fwd_bwd:>10.3f}{tokens / fwd_bwd:>12.0f}")
    print(f"{f'AdamW step, 1/{args.n_gpus} shard ({owned / 1e9:.2f}B params)':<46}{opt:>10.3f}")
    print(f"peak GPU memory: {peak:.1f} GiB; fwd+bwd / fwd = {fwd_bwd / fwd:.2f}x")
    print(f"estimated GRPO update step per GPU ({args.responses_per_gpu} responses, {args.n_gpus}-way FSDP, "
          f"no communication): {per_gpu_step:.1f} s = {micro_batches:.0f} x (2 x {fwd:.3f} + {fwd_bwd:.3f}) "
          f"+ {opt:.3f}")


if __name__ == "__main__":
    main()
