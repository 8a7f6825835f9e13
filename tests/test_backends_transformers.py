"""The transformers backend on the tiny Qwen2.5-VL, loaded offline through from_pretrained."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # the tiny Qwen2.5-VL on the CPU

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

from imageedit_r1.backends import BackendError, ChatMessage, build_backend  # noqa: E402
from imageedit_r1.backends.transformers_backend import TransformersBackend  # noqa: E402


@pytest.fixture(scope="module")
def backend(tiny_qwen25vl):
    return build_backend("transformers", model=str(tiny_qwen25vl), device="cpu")


def spy_generate(monkeypatch, backend):
    calls = []
    network = backend._network
    original = network.generate

    def recording(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(network, "generate", recording)
    return calls


def test_chat_with_an_image_passes_every_processor_output_to_generate(backend, monkeypatch):
    calls = spy_generate(monkeypatch, backend)
    image = Image.new("RGB", (80, 56), (10, 200, 30))
    reply = backend.chat([ChatMessage("user", [image, "What should change?"])], max_tokens=6)
    (kwargs,) = calls
    # mm_token_type_ids drives Qwen2.5-VL's 3-D mRoPE positions; image tensors must arrive too.
    assert {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"} <= set(kwargs)
    n_image_tokens = int((kwargs["input_ids"] == backend._network.config.image_token_id).sum())
    assert n_image_tokens == int(kwargs["image_grid_thw"][0].prod()) // 4
    assert isinstance(reply.text, str)
    assert 1 <= reply.completion_tokens <= 6
    assert reply.prompt_tokens == kwargs["input_ids"].shape[1]
    assert reply.finish_reason in ("stop", "length")


def test_greedy_is_deterministic_and_seeded_sampling_reproducible(backend):
    messages = [ChatMessage("user", [Image.new("RGB", (40, 40), (250, 0, 0)), "Describe."])]
    assert backend.chat(messages, max_tokens=8).text == backend.chat(messages, max_tokens=8).text
    first = backend.chat(messages, temperature=1.0, seed=11, max_tokens=8).text
    second = backend.chat(messages, temperature=1.0, seed=11, max_tokens=8).text
    assert first == second


def test_json_schema_is_described_in_the_prompt(backend, monkeypatch):
    calls = spy_generate(monkeypatch, backend)
    backend.chat([ChatMessage("user", "Decompose.")], json_schema={"type": "object", "title": "Zebra42"}, max_tokens=2)
    prompt = backend._processor.decode(calls[0]["input_ids"][0])
    assert "JSON schema" in prompt and "Zebra42" in prompt
    assert backend.supports_json_schema is False


def test_model_is_loaded_once_per_process(backend, tiny_qwen25vl):
    again = TransformersBackend(str(tiny_qwen25vl), device="cpu")
    assert again._network is backend._network and again._processor is backend._processor


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load a vision-language model"):
        TransformersBackend(str(tmp_path / "no-such-model"), device="cpu")



def _image_tokens(backend, image) -> int:
    inputs = backend.prepare_inputs([ChatMessage("user", [image, "Edit."])])
    return int((inputs["input_ids"] == backend._network.config.image_token_id).sum())


def test_image_budget_comes_from_the_checkpoint_else_the_default(tmp_path, tiny_qwen25vl):
    import json
    import shutil

    from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget
    from imageedit_r1.testing.tiny_qwen import MAX_PIXELS, MIN_PIXELS

    tiny = tiny_qwen25vl
    recorded = TransformersBackend(str(tiny), device="cpu")  # the tiny checkpoint records a small budget
    assert recorded.image_budget == ImageBudget(MIN_PIXELS, MAX_PIXELS)
    photo = Image.new("RGB", (4032, 3024), (30, 120, 200))
    assert _image_tokens(recorded, photo) == ImageBudget(MIN_PIXELS, MAX_PIXELS).image_tokens(4032, 3024) == 12

    plain = tmp_path / "plain"  # a checkpoint that records none (the released model): the project's default
    shutil.copytree(tiny, plain)
    config = json.loads((plain / "processor_config.json").read_text())
    config["image_processor"].pop("imageedit_r1_image_budget")
    (plain / "processor_config.json").write_text(json.dumps(config))
    default = TransformersBackend(str(plain), device="cpu")
    assert default.image_budget == DEFAULT_BUDGET
    assert _image_tokens(default, Image.new("RGB", (400, 300))) == 352

    # A banner the processor refuses on its own (aspect ratio 230) is padded into the budget.
    banner = Image.new("RGB", (4600, 20), (200, 30, 30))
    assert _image_tokens(recorded, banner) == ImageBudget(MIN_PIXELS, MAX_PIXELS).image_tokens(4600, 20)
    off = TransformersBackend(str(plain), device="cpu", image_budget="off")
    assert off.image_budget is None
    with pytest.raises(ValueError, match="aspect ratio"):
        _image_tokens(off, banner)
