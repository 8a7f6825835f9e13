"""Warm-start a tiny Qwen2.5-VL on exported ground truth, so a GRPO smoke run has something to learn.

A random-weight policy scores 0 on the decomposition reward for every sample, so every group of
rollouts has the same reward, every advantage is 0 and the policy loss is 0: a trainer's policy
gradient path runs on zeros. A few supervised steps on the answers of a verl export (the rendered
ground truth after the very prompt and image the trainer shows) make the model answer in the
format, but not yet reliably: sampled at temperature 1.0, its answers earn different rewards.

Training stops at the first step whose loss (mean negative log-likelihood per answer token) is at
or below ``target_loss``, or after ``max_steps``: a model trained to a near-zero loss would answer
perfectly every time, and the rewards would be equal again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from imageedit_r1.data.export import IMAGE_TOKEN, image_of, iter_rows
from imageedit_r1.decomposition import Decomposition

# Measured on the tiny Qwen2.5-VL and the test's data: 24 answers sampled at temperature 1.0 then
# scored 0, 0.25, 0.5 and 0.75 (3, 9, 9 and 3 of them); stopped at 0.6, 20 of 24 scored 0.
TARGET_LOSS = 0.1


@dataclass(frozen=True)
class WarmStart:
    out_dir: Path
    steps: int
    losses: list[float]


def chat_content(text: str) -> list[dict]:
    """A verl prompt message's text as chat content blocks, the image where ``<image>`` stands."""
    blocks: list[dict] = []
    for index, piece in enumerate(text.split(IMAGE_TOKEN)):
        if index:
            blocks.append({"type": "image"})
        if piece:
            blocks.append({"type": "text", "text": piece})
    return blocks


def row_prompt(processor, row: dict) -> tuple[str, list]:
    """A verl export row as verl's dataset renders it: the chat-templated prompt (generation prompt
    added) and its images."""
    messages = [{"role": m["role"], "content": chat_content(m["content"])} for m in row["prompt"]]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt, [image_of(ref).convert("RGB") for ref in row["images"]]


def warm_start(
    model_dir: str | os.PathLike,
    train_files: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    target_loss: float = TARGET_LOSS,
    max_steps: int = 200,
    lr: float = 2e-3,
    seed: int = 0,
) -> WarmStart:
    """Train ``model_dir`` on the rows of a verl parquet export into a copy of it at ``out_dir``
    (tokenizer, processor and recorded image budget as they were)."""
    import shutil

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    rows = list(iter_rows(train_files))
    if not rows:
        raise ValueError(f"{train_files}: no rows to train on")
    processor = AutoProcessor.from_pretrained(model_dir)
    tokenizer = processor.tokenizer
    texts, images, prompt_lengths = [], [], []
    for row in rows:
        prompt, row_images = row_prompt(processor, row)
        answer = Decomposition.from_dict(json.loads(row["reward_model"]["ground_truth"])).render()
        texts.append(prompt + answer + tokenizer.eos_token)
        images.append(row_images)
        prompt_lengths.append(len(processor(text=[prompt], images=row_images, return_tensors="pt")["input_ids"][0]))

    tokenizer.padding_side = "right"
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    for index, length in enumerate(prompt_lengths):
        labels[index, :length] = -100  # only the answer is learned

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(max_steps):
        loss = model(**inputs, labels=labels).loss
        losses.append(round(loss.item(), 4))
        if loss.item() <= target_loss:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    out = Path(out_dir)
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    model.save_pretrained(out)
    return WarmStart(out_dir=out, steps=len(losses) - 1, losses=losses)
