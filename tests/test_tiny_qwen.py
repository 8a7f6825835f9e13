"""The tiny Qwen2.5-VL fixture loads offline like a hub checkpoint and generates from image + text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # builds and runs the tiny Qwen2.5-VL

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

from imageedit_r1.testing.tiny_qwen import SPECIAL_TOKENS, build_tiny_qwen25vl, fingerprint  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _load(model_dir):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    return AutoProcessor.from_pretrained(model_dir), Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)


def test_folder_holds_a_complete_checkpoint():
    model_dir = build_tiny_qwen25vl()
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "processor_config.json"} <= names
    processor_config = json.loads((model_dir / "processor_config.json").read_text())
    assert processor_config["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    config = json.loads((model_dir / "config.json").read_text())
    text = config["text_config"]
    # vLLM's CPU attention kernels accept only some head sizes; 64 is one.
    assert text["hidden_size"] // text["num_attention_heads"] == 64


def test_special_tokens_and_config_agree():
    from transformers import AutoConfig

    model_dir = build_tiny_qwen25vl()
    processor, _ = _load(model_dir)
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    for token, token_id in ids.items():
        assert tokenizer.decode([token_id]) == token
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    config = AutoConfig.from_pretrained(model_dir)
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert config.text_config.vocab_size >= len(tokenizer)
    text = "Recoloring coat to scarlet — «copper» 红"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_chat_template_places_the_image_and_generation_prompt():
    processor, _ = _load(build_tiny_qwen25vl())
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Remove the car."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Remove the car.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_generates_from_an_image_and_text_chat_on_cpu():
    import torch

    processor, model = _load(build_tiny_qwen25vl())
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the edit."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.new("RGB", (90, 60), (200, 30, 30))
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    # The image placeholder expands to one token per merged 28x28 patch.
    grid = inputs["image_grid_thw"][0]
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(grid.prod()) // 4 > 0
    assert "mm_token_type_ids" in inputs
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        again = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1]:]
    assert 1 <= len(new_tokens) <= 8
    assert torch.equal(out, again)
    assert isinstance(processor.decode(new_tokens, skip_special_tokens=True), str)


def test_cached_per_process_and_reused_from_disk(tmp_path):
    first = build_tiny_qwen25vl(tmp_path / "m")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_qwen25vl(tmp_path / "m") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert build_tiny_qwen25vl() == build_tiny_qwen25vl()
    # A half-written folder (no completion stamp) is rebuilt, not trusted.
    (first / "tiny_qwen_build.json").unlink()
    (first / "model.safetensors").write_bytes(b"torn")
    rebuilt = build_tiny_qwen25vl(tmp_path / "m")
    assert (rebuilt / "model.safetensors").stat().st_size > 1000


def test_build_is_identical_across_processes(tmp_path):
    here = fingerprint(build_tiny_qwen25vl(tmp_path / "here"))
    code = (
        "import sys; from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl, fingerprint; "
        "print(fingerprint(build_tiny_qwen25vl(sys.argv[1])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "there")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == here
