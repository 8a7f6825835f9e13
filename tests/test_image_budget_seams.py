"""One image budget from data to training to inference, proven across the seams with the real libraries.

Realistic photo sizes (640x480 up to a 12 MP 4032x3024, portrait and landscape), a 28-px-thin strip,
a 1:150 strip with sides under 28 px and a 4600x20 banner go through the real exporter. Then:
- verl 0.9.1's own ``RLHFDataset`` reads the verl file with the data settings of the verl recipe's
  own command line (its ``--dry-run`` output, composed with verl's hydra config; nothing retyped),
  and a processor with the released Qwen2.5-VL-7B bounds (3,136..12,845,056 px);
- this project's model of EasyR1's intake reads the EasyR1 file with the EasyR1 recipe's settings.
Every exported row is kept, and each row's image-token count equals what inference produces for
the original image from the exported checkpoint: through the transformers backend, and through
the OpenAI-compatible path (the client's resize, then the checkpoint's processor on the server side).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("verl")

from imageedit_r1.image_budget import DEFAULT_BUDGET  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QWEN_7B_BOUNDS = {"shortest_edge": 3_136, "longest_edge": 12_845_056}
# (width, height): phone and camera photos both ways round, a 28-px-thin strip, a 1:150 strip, a banner.
SIZES = [
    (640, 480), (480, 640), (1024, 768), (1280, 960), (1920, 1080), (1080, 1920),
    (2048, 1536), (3024, 4032), (4032, 3024), (28, 1400), (3000, 20), (4600, 20),
]
REQUEST = "Make the sky {i} look like a warm sunset and remove the car on the left"


def _photo(width: int, height: int, seed: int):
    """A photo-like image: smooth gradients and a few shapes (compresses like a photo, built by code)."""
    import numpy as np
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(1, width - 1)
    g = 255 * y / max(1, height - 1)
    b = 128 + 100 * np.sin((x + y + seed * 37) / 50.0)
    image = Image.fromarray(np.stack([r, g, b], axis=-1).clip(0, 255).astype("uint8"), "RGB")
    draw = ImageDraw.Draw(image)
    for k in range(3):
        x0, y0 = (seed * 97 + k * 211) % width, (seed * 53 + k * 131) % height
        draw.ellipse([x0, y0, x0 + width // 5, y0 + height // 5], fill=(20 * k, 200, 40))
    return image


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_qwen25vl):
    """The released base model (7B processor bounds), the exported agent, and the exported data."""
    from imageedit_r1.data import ManifestLoader
    from imageedit_r1.data.export import export_labelled
    from imageedit_r1.data.labels import LabelIndex
    from imageedit_r1.image_budget import write_budget
    from tests.test_data_subsets_export import _label_file

    root = tmp_path_factory.mktemp("seams")
    base = root / "base"  # what training starts from: the processor's own bounds, no budget recorded
    shutil.copytree(tiny_qwen25vl, base)
    config_path = base / "processor_config.json"
    config = json.loads(config_path.read_text())
    section = config["image_processor"]
    for key in ("min_pixels", "max_pixels", "imageedit_r1_image_budget"):
        section.pop(key, None)
    section["size"] = dict(QWEN_7B_BOUNDS)
    config_path.write_text(json.dumps(config))
    agent = root / "agent"  # what `train export-checkpoint` leaves: the merged model with the budget written
    shutil.copytree(base, agent)
    write_budget(agent, DEFAULT_BUDGET)

    photos = root / "photos"
    photos.mkdir()
    lines = []
    for i, (w, h) in enumerate(SIZES):
        name = f"p{i}.jpg" if min(w, h) >= 28 else f"p{i}.png"
        _photo(w, h, i).save(photos / name, quality=90)
        lines.append(json.dumps({"id": f"photo-{i}", "image": name, "request": REQUEST.format(i=i)}))
    (photos / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    samples = list(ManifestLoader(photos / "manifest.jsonl"))
    labels = _label_file(root / "labels.jsonl", samples)
    report = export_labelled([ManifestLoader(photos / "manifest.jsonl")], LabelIndex.from_files([labels]),
                             root / "rl", progress=False, val_fraction=0.0)
    assert report.stats.total == len(SIZES) and report.stats.dropped == {}
    originals = {s.id: s for s in samples}
    return {"root": root, "base": base, "agent": agent, "rl": root / "rl", "originals": originals}


# The world's 12 rows as one rollout batch: the preflight refuses a run that cannot make one step.
ONE_STEP = {"ROLLOUT_BATCH_SIZE": "12", "GLOBAL_BATCH_SIZE": "12"}


def _dry_run(recipe: str, env: dict, easyr1: str | None = None) -> list[str]:
    """The trainer overrides a recipe resolves (its --dry-run output), after its own preflight passed.
    ``easyr1``: a package laid out as EasyR1 installs, put first on the path (this environment
    holds upstream verl, and the EasyR1 recipe's preflight checks which trainer it would launch)."""
    import shlex

    full_env = {**os.environ, "PYTHON": sys.executable, "SKIP_GPU_CHECK": "1", **env}
    if easyr1:
        full_env["PYTHONPATH"] = os.pathsep.join([easyr1, full_env.get("PYTHONPATH", "")])
    result = subprocess.run(["bash", str(ROOT / "recipes" / recipe), "--dry-run"], capture_output=True, text=True,
                            env=full_env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    command = shlex.split(" ".join(line.rstrip("\\").strip() for line in lines))
    return command[3:]


def _image_tokens(processor, input_ids) -> int:
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return int((input_ids == image_pad).sum())


@pytest.fixture(scope="module")
def inference_tokens(world):
    """Image tokens per id at inference from the exported agent: transformers backend and OpenAI path."""
    from transformers import AutoProcessor

    from imageedit_r1.agents.decomposer import decomposition_messages
    from imageedit_r1.backends import build_backend
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_images

    local = build_backend("transformers", model=str(world["agent"]), device="cpu")  # image_budget "auto"
    served_processor = AutoProcessor.from_pretrained(world["agent"])  # what vLLM loads from the checkpoint
    received = []

    def reply(request_json):
        received.extend(openai_images(request_json))
        return "<think>ok</think><action>[\"Recoloring\"]</action><subjects>[\"sky\"]</subjects><goals>[\"sunset\"]</goals>"

    tokens: dict[str, dict[str, int]] = {}
    with fake_openai_server(reply) as server:
        served = build_backend("openai", model="imageedit-r1", base_url=server.url + "/v1", image_budget="auto")
        for item_id, sample in world["originals"].items():
            messages = decomposition_messages(sample.image, sample.request)
            inputs = local.prepare_inputs(messages)
            received.clear()
            served.chat(messages, max_tokens=16)
            (sent,) = received
            server_inputs = served_processor.image_processor(images=[sent], return_tensors="pt")
            tokens[item_id] = {
                "transformers": _image_tokens(local._processor, inputs["input_ids"]),
                "openai": int(server_inputs["image_grid_thw"].prod()) // 4,
            }
    return tokens


def test_verl_rlhf_dataset_keeps_every_row_at_the_inference_token_count(world, inference_tokens, tmp_path):
    from transformers import AutoProcessor
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from imageedit_r1.train import preflight

    train = world["rl"] / "verl" / "train.parquet"
    overrides = _dry_run("run_grpo_qwen25vl_verl.sh",
                         {"TRAIN_FILES": str(train), "VAL_FILES": str(train), "MODEL_PATH": str(world["base"]),
                          **ONE_STEP})
    with contextlib.redirect_stdout(sys.stderr):
        config = preflight.compose_verl_config(overrides)
    data = config.data
    assert data.filter_overlong_prompts is True  # the setting that used to drop photos silently
    from omegaconf import open_dict

    with open_dict(data):
        data.cache_dir = str(tmp_path / "cache")  # verl's copy of remote files; keep it out of $HOME
        # Filter in this process: a forked worker of a process that already ran torch kernels can
        # hang (OpenMP after fork). Which rows the filter keeps does not depend on the worker count.
        data.filter_overlong_prompts_workers = None
    processor = AutoProcessor.from_pretrained(world["base"])  # the 7B processor's own bounds
    assert processor.image_processor.size["longest_edge"] == QWEN_7B_BOUNDS["longest_edge"]
    dataset = RLHFDataset(str(train), processor.tokenizer, data, processor)
    assert len(dataset) == len(SIZES)  # every exported row survives verl's overlong filter

    seen = set()
    for position in range(len(dataset)):
        row = dataset[position]
        item_id = row["extra_info"]["id"]
        messages = row["raw_prompt"]
        images, _, _ = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size, data)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=images, return_tensors="pt")
        assert inputs["input_ids"].shape[1] <= data.max_prompt_length
        tokens = _image_tokens(processor, inputs["input_ids"])
        original = world["originals"][item_id].image
        assert tokens == DEFAULT_BUDGET.image_tokens(*original.size)
        assert tokens == inference_tokens[item_id]["transformers"] == inference_tokens[item_id]["openai"], item_id
        seen.add(item_id)
    assert seen == set(world["originals"])


def test_easyr1_intake_keeps_every_row_at_the_inference_token_count(world, inference_tokens, easyr1_layout):
    import datasets
    from transformers import AutoProcessor

    from imageedit_r1.train import preflight
    from tests.easyr1_intake import row_inputs

    train = world["rl"] / "easyr1" / "train.parquet"
    overrides = _dry_run("run_grpo_qwen25vl.sh",
                         {"TRAIN_FILES": str(train), "VAL_FILES": str(train), "MODEL_PATH": str(world["base"]),
                          **ONE_STEP},
                         easyr1=easyr1_layout)
    data = preflight.load_easyr1_config(overrides)["data"]
    assert data["filter_overlong_prompts"] is True
    processor = AutoProcessor.from_pretrained(world["base"])
    rows = datasets.load_dataset("parquet", data_files=str(train), split="train")
    assert len(rows) == len(SIZES)
    by_request = {s.request: item_id for item_id, s in world["originals"].items()}
    for example in rows:
        inputs, _ = row_inputs(processor, example, min_pixels=data["min_pixels"], max_pixels=data["max_pixels"])
        assert inputs["input_ids"].shape[1] <= data["max_prompt_length"]  # EasyR1's overlong filter keeps it
        item_id = by_request[example["problem"].removeprefix("<image>")]
        tokens = _image_tokens(processor, inputs["input_ids"])
        assert tokens == inference_tokens[item_id]["transformers"] == inference_tokens[item_id]["openai"], item_id


def test_inference_without_the_budget_would_see_other_token_counts(world, inference_tokens):
    """The fault the budget removes: the processor's own bounds give a 12 MP photo ~12x the trained tokens."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(world["base"])
    photo = world["originals"]["photo-8"].image  # 4032x3024
    own = int(processor.image_processor(images=[photo], return_tensors="pt")["image_grid_thw"].prod()) // 4
    assert own == 15_552 and inference_tokens["photo-8"]["transformers"] == 1_230
