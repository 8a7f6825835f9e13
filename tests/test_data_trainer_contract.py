"""Our exported files meet the trainers' dataset contracts, checked with a tiny Qwen2.5-VL processor.

verl 0.9.1: its own ``RLHFDataset`` loads our parquet (including its length filter, which runs the
processor on every row and silently drops rows it cannot process) and the messages it yields
tokenize into image tokens. EasyR1 (not installable beside verl): the file is read the way its
``RLHFDataset`` reads it: ``datasets`` parquet/json, ``data.format_prompt`` rendered with
``content=problem``, one image slot per ``<image>``, images as embedded bytes or paths under
``data.image_dir``, ``answer`` reaching the reward as ``ground_truth``.
"""

from __future__ import annotations

import io
import json
import math
import os

import jinja2
import pytest

from imageedit_r1.data import ManifestLoader
from imageedit_r1.data.export import ExportItem, write_items
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.prompts import template_path
from imageedit_r1.rewards import score
from tests.data_fixtures import write_manifest

pytestmark = pytest.mark.slow

TRUTHS = [
    Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]),
    Decomposition(["Removal", "Background Change"], ["person on the left", "background"], ["empty street", "beach"]),
    Decomposition(["Tone Adjustment"], ["photo"], ["brighter, warmer colors"]),
]
EASYR1_MIN_PIXELS, EASYR1_MAX_PIXELS = 262_144, 4_194_304


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    manifest = write_manifest(root / "m", ["rgb", "exif", "cmyk"])
    samples = list(ManifestLoader(manifest))
    items = [ExportItem(s, t.to_json()) for s, t in zip(samples, TRUTHS, strict=True)]
    write_items(items, root / "parquet", val_fraction=0.0)
    write_items(items, root / "jsonl", formats=["easyr1"], file_format="jsonl", val_fraction=0.0)
    return root, samples


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from transformers import AutoProcessor

    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    path = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny_qwen"))
    processor = AutoProcessor.from_pretrained(path)
    return processor, processor.tokenizer


def _answer(truth: Decomposition) -> str:
    """A perfect policy answer for this ground truth."""
    return Decomposition(truth.actions, truth.subjects, truth.goals, think="The request asks for this.").render()


def _image_token_count(processor, input_ids) -> int:
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((input_ids == image_pad).sum())


def test_verl_rlhf_dataset_loads_our_parquet_and_yields_image_tokens(exported, tiny_qwen, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    root, samples = exported
    processor, tokenizer = tiny_qwen
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 4096,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "truncation": "error",
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    dataset = RLHFDataset(str(root / "parquet" / "verl" / "train.parquet"), tokenizer, config, processor)
    assert len(dataset) == len(samples)  # the filter drops any row the processor cannot handle

    by_id = {s.id: (s, t) for s, t in zip(samples, TRUTHS, strict=True)}
    for position in range(len(dataset)):
        row = dataset[position]
        sample, truth = by_id[row["extra_info"]["id"]]
        messages = row["raw_prompt"]
        images = [part for part in messages[0]["content"] if part["type"] == "image"]
        assert len(images) == 1 and images[0]["image"].size == sample.image.size
        # What verl's agent loop does next: vision info, chat template, processor.
        vision_images, _, _ = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size, config)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=vision_images, return_tensors="pt")
        expected = int(inputs["image_grid_thw"].prod()) // processor.image_processor.merge_size**2
        assert _image_token_count(processor, inputs["input_ids"]) == expected > 0
        assert sample.request in prompt and "<image>" not in prompt
        assert row["reward_model"]["ground_truth"] == truth.to_json()
        assert score(_answer(truth), row["reward_model"]["ground_truth"])["overall"] == pytest.approx(1.0)


def _easyr1_process_image(image, image_dir=None):
    """EasyR1's image intake, from its documented behaviour: path/dict/bytes/PIL, min/max pixels, RGB."""
    from PIL import Image

    if isinstance(image, str):
        image = Image.open(os.path.join(image_dir, image) if image_dir else image)
    elif isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"]))
    elif isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    image.load()
    for limit, grow in ((EASYR1_MAX_PIXELS, False), (EASYR1_MIN_PIXELS, True)):
        area = image.width * image.height
        if (area > limit and not grow) or (area < limit and grow):
            factor = math.sqrt(limit / area)
            image = image.resize((int(image.width * factor), int(image.height * factor)))
    return image.convert("RGB") if image.mode != "RGB" else image


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_easyr1_dataset_contract(exported, tiny_qwen, kind):
    import datasets

    root, samples = exported
    processor, _ = tiny_qwen
    folder = root / kind / "easyr1"
    path = folder / f"train.{kind}"
    dataset = datasets.load_dataset("json" if kind == "jsonl" else "parquet", data_files=str(path), split="train")
    assert {"problem", "answer", "images"} <= set(dataset.column_names)
    format_prompt = jinja2.Template(template_path("decompose").read_text(encoding="utf-8").strip())
    by_request = {s.request: (s, t) for s, t in zip(samples, TRUTHS, strict=True)}
    for example in dataset:
        prompt_str = format_prompt.render(content=example["problem"])
        content = []
        for i, piece in enumerate(prompt_str.split("<image>")):
            if i:
                content.append({"type": "image"})
            if piece:
                content.append({"type": "text", "text": piece})
        slots = sum(part["type"] == "image" for part in content)
        assert slots == len(example["images"]) == 1
        images = [_easyr1_process_image(im, str(folder) if kind == "jsonl" else None) for im in example["images"]]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        inputs = processor(images, [prompt], add_special_tokens=False, return_tensors="pt")
        expected = int(inputs["image_grid_thw"].prod()) // processor.image_processor.merge_size**2
        assert _image_token_count(processor, inputs["input_ids"][0]) == expected > 0

        request = example["problem"].removeprefix("<image>")
        sample, truth = by_request[request]
        # The stored image is our intake's: upright (the EXIF-rotated source is portrait) and RGB.
        stored = example["images"][0]
        if isinstance(stored, str):
            from PIL import Image

            stored = Image.open(folder / stored)
        assert stored.size == sample.image.size and stored.mode == "RGB"
        ground_truth = example["answer"]  # what reaches compute_score
        assert json.loads(ground_truth) == truth.to_dict()
        assert score(_answer(truth), ground_truth)["overall"] == pytest.approx(1.0)
        assert score("<think>x</think><action>[]</action><subjects>[]</subjects><goals>[]</goals>", ground_truth)["overall"] < 0.5
