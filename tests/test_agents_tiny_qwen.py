"""Decomposer and sequencer end to end on the transformers backend with the tiny Qwen2.5-VL.

Random weights never follow the format, so these runs take the repair path and must end in
the documented failure (or the configured fallback) with every raw output kept.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # the tiny Qwen2.5-VL on the CPU

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

from imageedit_r1.agents.decomposer import Decomposer, DecompositionError  # noqa: E402
from imageedit_r1.agents.sequencer import Sequencer, SequencingError, fallback_sub_requests  # noqa: E402
from imageedit_r1.backends import build_backend  # noqa: E402
from imageedit_r1.decomposition import Decomposition  # noqa: E402

IMAGE = Image.new("RGB", (64, 48), (120, 30, 200))


@pytest.fixture(scope="module")
def backend(tiny_qwen25vl):
    return build_backend("transformers", model=str(tiny_qwen25vl), device="cpu")


@pytest.fixture
def recorded(backend, monkeypatch):
    calls = []
    original = backend.chat_batch

    def chat_batch(conversations, **kwargs):
        replies = original(conversations, **kwargs)
        calls.extend((messages, kwargs, reply) for messages, reply in zip(conversations, replies, strict=True))
        return replies

    monkeypatch.setattr(backend, "chat_batch", chat_batch)
    return calls


def test_decomposer_reasks_once_then_fails_with_the_raw_outputs(backend, recorded):
    decomposer = Decomposer(backend, max_tokens=24)
    assert decomposer.repair_mode() == "reask"  # transformers cannot enforce a schema
    with pytest.raises(DecompositionError) as info:
        decomposer.run(IMAGE, "Remove the car and make the sky orange")
    assert len(recorded) == 2
    assert info.value.raw_outputs == [reply.text for _, _, reply in recorded]
    (first, _, first_reply), (second, _, _) = recorded
    assert first[0].images()[0].size == IMAGE.size
    assert [m.role for m in second] == ["user", "assistant", "user"]
    assert second[1].content == first_reply.text
    assert "could not be read" in second[2].text()


def test_sequencer_falls_back_only_when_configured(backend, recorded):
    decomposition = Decomposition(["Removal", "Recoloring"], ["car", "sky"], ["empty road", "orange"])
    with pytest.raises(SequencingError) as info:
        Sequencer(backend, max_tokens=16).run(IMAGE, decomposition, "Remove the car and make the sky orange")
    assert len(info.value.raw_outputs) == 2
    result = Sequencer(backend, max_tokens=16, fallback=True).run(IMAGE, decomposition, "Remove the car")
    assert result.fallback_used
    assert result.sub_requests == fallback_sub_requests(decomposition) == [
        "Removal car to empty road",
        "Recoloring sky to orange",
    ]
    assert len(recorded) == 4
