"""``data export --format trl``: TRL's vision-language format, through the same exporter, budget and guard."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imageedit_r1.data import ManifestLoader
from imageedit_r1.data.export import (
    IMAGE_TOKEN,
    decomposition_prompt,
    export_labelled,
    iter_rows,
    write_items,
)
from imageedit_r1.data.labels import LabelIndex
from imageedit_r1.data.subsets import EvalGuard, LeakageError, draw_subset
from imageedit_r1.image_budget import DEFAULT_BUDGET
from tests.trl_fixtures import TRUTHS, write_trl_sources


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return write_trl_sources(tmp_path_factory.mktemp("trl_sources"))


def _text_of(content: list[dict]) -> str:
    return "".join(IMAGE_TOKEN if block["type"] == "image" else block["text"] for block in content)


def test_trl_rows_hold_the_same_prompt_image_and_truth_as_verl(sources, tmp_path):
    manifest, labels, subsets = sources
    report = export_labelled(
        [ManifestLoader(manifest)], LabelIndex.from_files([labels]), tmp_path / "out",
        guard=EvalGuard.from_paths([subsets]), formats=["trl", "verl"], val_fraction=0.0, progress=False,
    )
    assert report.stats.rows == {"train": len(TRUTHS), "val": 0}
    trl_rows = list(iter_rows(tmp_path / "out" / "trl" / "train.parquet"))
    verl_rows = list(iter_rows(tmp_path / "out" / "verl" / "train.parquet"))
    assert len(trl_rows) == len(verl_rows) == len(TRUTHS)
    for trl_row, verl_row in zip(trl_rows, verl_rows, strict=True):
        request = verl_row["extra_info"]["request"]
        assert set(trl_row) == {"prompt", "images", "ground_truth", "data_source", "id"}
        (turn,) = trl_row["prompt"]
        assert turn["role"] == "user"
        # One image block, where EasyR1 and verl put the image, inside the very same prompt text.
        assert [block["type"] for block in turn["content"]] == ["text", "image", "text"]
        assert turn["content"][1]["text"] is None
        assert _text_of(turn["content"]) == decomposition_prompt(request) == verl_row["prompt"][0]["content"]
        assert trl_row["ground_truth"] == verl_row["reward_model"]["ground_truth"] == TRUTHS[trl_row["id"]].to_json()
        assert trl_row["data_source"] == verl_row["data_source"] == "imageedit_r1/manifest"
        # The same image bytes, written at the size the image budget gives them.
        (image,) = trl_row["images"]
        assert image["bytes"] == verl_row["images"][0]["bytes"]
        with Image.open(io.BytesIO(image["bytes"])) as decoded:
            assert DEFAULT_BUDGET.resized_size(*decoded.size) == decoded.size
    sizes = {row["id"]: Image.open(io.BytesIO(row["images"][0]["bytes"])).size for row in trl_rows}
    assert sizes["photo-12mp"][0] * sizes["photo-12mp"][1] <= DEFAULT_BUDGET.max_pixels  # 12 MP came down
    assert sizes["portrait"][1] > sizes["portrait"][0] and sizes["panorama"][0] > 3 * sizes["panorama"][1]
    manifest_file = json.loads((tmp_path / "out" / "export_manifest.json").read_text())
    assert manifest_file["formats"] == ["trl", "verl"]


def test_trl_export_refuses_eval_overlap_and_jsonl(sources, tmp_path):
    manifest, labels, _ = sources
    leaked = tmp_path / "subsets"
    draw_subset(ManifestLoader(manifest), "psr", 1, progress=False).write(leaked)
    with pytest.raises(LeakageError, match="overlap"):
        export_labelled([ManifestLoader(manifest)], LabelIndex.from_files([labels]), tmp_path / "out",
                        guard=EvalGuard.from_paths([leaked]), formats=["trl"], progress=False)
    assert not list((tmp_path / "out").rglob("*.parquet*"))  # nothing half-written
    with pytest.raises(ValueError, match="trl reads parquet"):
        write_items([], tmp_path / "x", formats=["trl"], file_format="jsonl")


@pytest.mark.slow
@pytest.mark.slow
def test_trl_renders_the_exported_prompt_as_the_pipeline_does_at_inference(sources, tmp_path, tiny_qwen25vl):
    """TRL's own prompt preparation of an exported row gives the tokens the decomposer sends the model."""
    pytest.importorskip("trl")
    from transformers import AutoProcessor
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    from imageedit_r1.agents.decomposer import decomposition_messages
    from imageedit_r1.backends.transformers_backend import TransformersBackend

    manifest, labels, subsets = sources
    export_labelled([ManifestLoader(manifest)], LabelIndex.from_files([labels]), tmp_path / "out",
                    guard=EvalGuard.from_paths([subsets]), formats=["trl"], val_fraction=0.0, progress=False)
    import datasets

    row = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "trl" / "train.parquet"), split="train")[0]
    folder = tiny_qwen25vl
    processor = AutoProcessor.from_pretrained(folder)
    trl_prompt = prepare_multimodal_messages(row["prompt"], images=row["images"])  # what GRPOTrainer does
    trl_text = apply_chat_template({"prompt": trl_prompt}, processor)["prompt"]
    trl_ids = processor(text=[trl_text], images=row["images"], return_tensors="pt")["input_ids"]

    request = json.loads(manifest.read_text().splitlines()[0])["request"]
    backend = TransformersBackend(str(folder), device="cpu")
    chat, images = backend._template_messages(decomposition_messages(row["images"][0], request), None)
    inference_text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    inference_ids = processor(text=[inference_text], images=images, return_tensors="pt")["input_ids"]
    assert trl_text == inference_text
    assert inference_ids.tolist() == trl_ids.tolist()
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((trl_ids == image_pad).sum()) > 0
