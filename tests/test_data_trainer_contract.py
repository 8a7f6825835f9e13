"""Our exported files meet the trainers' dataset contracts, checked with a tiny Qwen2.5-VL processor.

verl 0.9.1: its own ``RLHFDataset`` loads our parquet (including its length filter, which runs the
processor on every row and silently drops rows it cannot process) and the messages it yields
tokenize into image tokens. EasyR1 (not installable beside verl): the file is read the way its
``RLHFDataset`` reads it: ``datasets`` parquet/json, ``data.format_prompt`` rendered with
``content=problem``, one image slot per ``<image>``, images as embedded bytes or paths under
``data.image_dir``, ``answer`` reaching the reward as ``ground_truth``.
"""

from __future__ import annotations

import json

import pytest

from imageedit_r1.data import ManifestLoader
from imageedit_r1.data.export import ExportItem, write_items
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.image_budget import DEFAULT_BUDGET
from imageedit_r1.rewards import score
from tests.data_fixtures import write_manifest
from tests.easyr1_intake import row_inputs

pytestmark = pytest.mark.slow

TRUTHS = [
    Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]),
    Decomposition(["Removal", "Background Change"], ["person on the left", "background"], ["empty street", "beach"]),
    Decomposition(["Tone Adjustment"], ["photo"], ["brighter, warmer colors"]),
]
EASYR1_MIN_PIXELS, EASYR1_MAX_PIXELS = 262_144, 4_194_304  # EasyR1's defaults


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
def tiny_qwen(tiny_qwen25vl):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen25vl)
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
            # No worker process: a forked filter worker can hang once torch has run in the test process.
            # The worker count does not change which rows the filter keeps.
            "filter_overlong_prompts_workers": None,
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
        assert len(images) == 1 and images[0]["image"].size == DEFAULT_BUDGET.fit(*sample.image.size).size
        # What verl's agent loop does next: vision info, chat template, processor.
        vision_images, _, _ = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size, config)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=vision_images, return_tensors="pt")
        expected = int(inputs["image_grid_thw"].prod()) // processor.image_processor.merge_size**2
        assert _image_token_count(processor, inputs["input_ids"]) == expected > 0
        assert sample.request in prompt and "<image>" not in prompt
        assert row["reward_model"]["ground_truth"] == truth.to_json()
        assert score(_answer(truth), row["reward_model"]["ground_truth"])["overall"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_easyr1_dataset_contract(exported, tiny_qwen, kind):
    import datasets

    root, samples = exported
    processor, _ = tiny_qwen
    folder = root / kind / "easyr1"
    path = folder / f"train.{kind}"
    dataset = datasets.load_dataset("json" if kind == "jsonl" else "parquet", data_files=str(path), split="train")
    assert {"problem", "answer", "images"} <= set(dataset.column_names)
    by_request = {s.request: (s, t) for s, t in zip(samples, TRUTHS, strict=True)}
    for example in dataset:
        inputs, content = row_inputs(processor, example, min_pixels=EASYR1_MIN_PIXELS, max_pixels=EASYR1_MAX_PIXELS,
                                     image_dir=str(folder) if kind == "jsonl" else None)
        slots = sum(part["type"] == "image" for part in content)
        assert slots == len(example["images"]) == 1
        expected = int(inputs["image_grid_thw"].prod()) // processor.image_processor.merge_size**2
        assert _image_token_count(processor, inputs["input_ids"][0]) == expected > 0

        request = example["problem"].removeprefix("<image>")
        sample, truth = by_request[request]
        # The stored image is our intake's: upright (the EXIF-rotated source is portrait) and RGB.
        stored = example["images"][0]
        if isinstance(stored, str):
            from PIL import Image

            stored = Image.open(folder / stored)
        assert stored.size == DEFAULT_BUDGET.fit(*sample.image.size).size and stored.mode == "RGB"
        ground_truth = example["answer"]  # what reaches compute_score
        assert json.loads(ground_truth) == truth.to_dict()
        assert score(_answer(truth), ground_truth)["overall"] == pytest.approx(1.0)
        assert score("<think>x</think><action>[]</action><subjects>[]</subjects><goals>[]</goals>", ground_truth)["overall"] < 0.5
