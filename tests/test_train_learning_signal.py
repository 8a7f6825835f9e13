"""Our reward gives GRPO a usable signal, through verl's own advantage and policy-loss math.

A tiny random-weight Qwen2.5-VL scores fixed candidate decompositions (good to bad) for a few
image+request prompts. Each step: reward every candidate with ``imageedit_r1.rewards.score``,
turn rewards into group-relative advantages with verl's ``compute_grpo_outcome_advantage``, take
verl's clipped policy loss (plus its low-variance KL to the initial policy, as in training) and an
optimizer step. The log-probability of the high-reward candidates must rise relative to the
low-reward ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # GRPO steps on the tiny Qwen2.5-VL

torch = pytest.importorskip("torch")
pytest.importorskip("verl")

from imageedit_r1.decomposition import Decomposition  # noqa: E402
from imageedit_r1.prompts import render_prompt  # noqa: E402
from imageedit_r1.rewards import score  # noqa: E402

PROMPTS = [
    ("Change the color of her coat and possibly hair to scarlet or copper red", (180, 30, 30),
     Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"])),
    ("Remove the person on the left and blur the background", (30, 160, 60),
     Decomposition(["Removal", "Blur"], ["person on the left", "background"], ["person gone", "blurred background"])),
    ("Make the sky look like a sunset", (40, 80, 200),
     Decomposition(["Tone Adjustment"], ["sky"], ["sunset colors"])),
]


def candidates(truth: Decomposition) -> list[str]:
    """From the exact answer to garbage: partial credit in between."""
    think = "the request names these edits"
    return [
        Decomposition(truth.actions, truth.subjects, truth.goals, think=think).render(),
        Decomposition(truth.actions, truth.subjects[:1], ["something else"], think=think).render(),
        Decomposition(["Addition"], ["dog"], ["a hat"], think=think).render(),
        "I would edit the picture nicely.",
    ]


def _batch(processor, request: str, color, responses: list[str]):
    from PIL import Image

    image = Image.new("RGB", (56, 56), color)
    prompt = render_prompt("decompose", content=request)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    prompt_text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_len = len(processor(text=[prompt_text], images=[image], return_tensors="pt")["input_ids"][0])
    eos = processor.tokenizer.eos_token
    texts = [prompt_text + r + eos for r in responses]
    processor.tokenizer.padding_side = "right"
    inputs = processor(text=texts, images=[image] * len(texts), return_tensors="pt", padding=True)
    return inputs, prompt_len


def response_log_probs(model, inputs, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the response part, and its mask: (batch, response_length)."""
    logits = model(**inputs).logits  # the processor's mm_token_type_ids give the mRoPE positions
    targets = inputs["input_ids"][:, prompt_len:]
    logp = torch.log_softmax(logits[:, prompt_len - 1 : -1].float(), dim=-1)
    token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = inputs["attention_mask"][:, prompt_len:].float()
    return token_logp, mask


def test_grpo_with_our_reward_raises_high_reward_decompositions(tmp_path, tiny_qwen25vl):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from verl.trainer.ppo.core_algos import (
        agg_loss,
        compute_grpo_outcome_advantage,
        get_policy_loss_fn,
        kl_penalty,
    )
    from verl.workers.config import FSDPActorConfig

    folder = tiny_qwen25vl
    processor = AutoProcessor.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    reference = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    actor_config = FSDPActorConfig(
        strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=4, rollout_n=4,
        use_dynamic_bsz=False, clip_ratio=0.2,
    )
    policy_loss = get_policy_loss_fn(actor_config.policy_loss.loss_mode)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)

    groups = []
    for group_id, (request, color, truth) in enumerate(PROMPTS):
        responses = candidates(truth)
        rewards = [score(r, json.dumps(truth.to_dict()))["overall"] for r in responses]
        assert rewards == sorted(set(rewards), reverse=True), rewards  # four distinct levels, good to bad
        inputs, prompt_len = _batch(processor, request, color, responses)
        assert "mm_token_type_ids" in inputs, "the processor must supply mRoPE token types"
        with torch.no_grad():
            ref_logp, mask = response_log_probs(reference, inputs, prompt_len)
        token_rewards = torch.zeros_like(mask)
        last = mask.sum(-1).long() - 1
        token_rewards[torch.arange(len(rewards)), last] = torch.tensor(rewards)
        advantages, _ = compute_grpo_outcome_advantage(
            token_level_rewards=token_rewards, response_mask=mask, index=np.array([group_id] * len(rewards))
        )
        groups.append((inputs, prompt_len, mask, ref_logp, advantages, np.array(rewards)))

    def reward_gap() -> float:
        """Mean per-token log-prob of each group's best candidate minus its worst."""
        gaps = []
        with torch.no_grad():
            for inputs, prompt_len, mask, _, _, rewards in groups:
                logp, _ = response_log_probs(model, inputs, prompt_len)
                mean = (logp * mask).sum(-1) / mask.sum(-1)
                gaps.append(float(mean[rewards.argmax()] - mean[rewards.argmin()]))
        return float(np.mean(gaps))

    before = reward_gap()
    for _ in range(4):
        optimizer.zero_grad()
        for inputs, prompt_len, mask, ref_logp, advantages, _ in groups:
            logp, _ = response_log_probs(model, inputs, prompt_len)
            old_logp = logp.detach()  # on-policy: one update per rollout, as with global batch == rollout batch
            pg_loss, _ = policy_loss(
                old_log_prob=old_logp, log_prob=logp, advantages=advantages, response_mask=mask,
                loss_agg_mode=actor_config.loss_agg_mode, config=actor_config,
            )
            kl = kl_penalty(logp, ref_logp, kl_penalty="low_var_kl")
            loss = pg_loss + 0.01 * agg_loss(kl, mask, loss_agg_mode=actor_config.loss_agg_mode)
            (loss / len(groups)).backward()
        optimizer.step()
    after = reward_gap()

    assert after > before + 0.5, (before, after)
    # In every group the better half of the candidates gained more log-probability than the worse
    # half, and across all groups the gain follows the reward (rank correlation).
    all_rewards, all_moved = [], []
    for inputs, prompt_len, mask, ref_logp, _, rewards in groups:
        with torch.no_grad():
            logp, _ = response_log_probs(model, inputs, prompt_len)
        moved = (((logp - ref_logp) * mask).sum(-1) / mask.sum(-1)).numpy()
        order = np.argsort(-rewards)
        assert moved[order[:2]].mean() > moved[order[2:]].mean(), (rewards, moved)
        assert moved[order[0]] > moved[order[-1]], (rewards, moved)
        all_rewards.extend(rewards)
        all_moved.extend(moved)
    rank_r, rank_m = (np.argsort(np.argsort(v)) for v in (np.array(all_rewards), np.array(all_moved)))
    assert np.corrcoef(rank_r, rank_m)[0, 1] > 0.6, (all_rewards, all_moved)
